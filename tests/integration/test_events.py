"""Message and reaction events end to end: gunicorn, a worker process and a fake Slack."""

import json
import signal
import time

import pytest

from omnibot.fake_slack import FakeSlack
from tests.integration.stack import Stack
from tests.support import BASE_CONFIG, case_json, credentials_env, fresh_event, message_event, wait_until

HANDLERS = """
handlers:
  message_handlers:
    - match: "status"
      match_type: "command"
      description: "service status"
      bots: {"test-team": ["testbot"]}
      callbacks: [{module: "tests.recorders:record", kwargs: {tag: "status"}}]
    - match: "deploy"
      match_type: "command"
      bots: {"test-team": ["testbot"]}
      callbacks: [{module: "tests.recorders:record", kwargs: {tag: "deploy"}}]
    - match: ".*staging.*"
      match_type: "regex"
      bots: {"test-team": ["testbot"]}
      callbacks: [{module: "tests.recorders:record", kwargs: {tag: "staging-regex"}}]
    - match: "notify"
      match_type: "command"
      bots: {"test-team": ["testbot"]}
      callbacks: [{module: "tests.recorders:record", kwargs: {tag: "notify"}}]
    - match: "ping"
      match_type: "command"
      description: "answer pong"
      bots: {"test-team": ["testbot"]}
      callbacks: [{module: "tests.recorders:record_and_reply", kwargs: {text: "pong"}}]
    - match: "logs"
      match_type: "command"
      match_reply: true
      bots: {"test-team": ["testbot"]}
      callbacks: [{module: "tests.recorders:record_and_reply", kwargs: {text: "logs"}}]
    - match: "toplevel"
      match_type: "command"
      bots: {"test-team": ["testbot"]}
      callbacks: [{module: "tests.recorders:reply_in_channel", kwargs: {text: "to the channel"}}]
    - match: "explode"
      match_type: "command"
      bots: {"test-team": ["testbot"]}
      callbacks:
        - module: "tests.recorders:explode"
        - module: "tests.recorders:record_and_reply"
          kwargs: {text: "after the explosion"}
    - match: "junk"
      match_type: "command"
      bots: {"test-team": ["testbot"]}
      callbacks: [{module: "tests.recorders:not_a_dict"}, {module: "tests.recorders:malformed_actions"}]
    - match: "slow"
      match_type: "command"
      bots: {"test-team": ["testbot"]}
      callbacks: [{module: "tests.recorders:slow_reply", kwargs: {seconds: 2, text: "slow done"}}]
    - match: "replyreact"
      match_type: "command"
      bots: {"test-team": ["testbot"]}
      callbacks: [{module: "tests.recorders:reply_then_react", kwargs: {text: "before the kill"}}]
    - match: "hey"
      match_type: "command"
      match_mention: true
      bots: {"test-team": ["testbot"]}
      callbacks: [{module: "tests.recorders:record", kwargs: {tag: "mention"}}]
    - match: "shush"
      match_type: "regex"
      regex_type: "absence"
      bots: {"test-team": ["otherbot"]}
      callbacks: [{module: "tests.recorders:record", kwargs: {tag: "absence"}}]
    - match: "thumbsup|\\\\+1"
      match_type: "reaction"
      bots: {"test-team": ["testbot"]}
      callbacks: [{module: "tests.recorders:record_and_reply", kwargs: {text: "thanks"}}]
"""


@pytest.fixture(scope="module")
def slack():
    fake = FakeSlack().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def stack(slack, tmp_path_factory):
    config = BASE_CONFIG.replace('"testbot": "A0TEST001"', '"testbot": "A0TEST001"\n    "otherbot": "A0TEST002"')
    stack = Stack(
        str(tmp_path_factory.mktemp("events")),
        config + HANDLERS,
        slack.api_url,
        env=credentials_env(app_id="A0TEST002"),
    )
    stack.start()
    yield stack
    stack.stop()


def tagged(stack, tag, ts=None):
    return [
        call
        for call in stack.calls("record")
        if call["kwargs"].get("tag") == tag and (ts is None or call["payload"]["ts"] == ts)
    ]


def posts_with(slack, text):
    return [call for call in slack.calls("chat.postMessage") if call["args"].get("text") == text]


def new_ts():
    time.sleep(0.002)
    return f"{time.time():.6f}"


def test_directed_command_reply_in_thread(stack, slack):
    ts = new_ts()
    response = stack.post_event(message_event("<@U0BOT0001> ping", ts=ts))

    assert response.status_code == 200
    assert response.json() == {"status": "success"}
    post = wait_until(lambda: [c for c in posts_with(slack, "pong") if c["args"].get("thread_ts") == ts])[0]
    assert post["args"]["channel"] == "C0TEST001"
    payload = stack.calls("record_and_reply")[-1]["payload"]
    assert payload["command"] == "ping"
    assert payload["args"] == ""
    assert payload["directed"] is True
    assert payload["omnibot_payload_type"] == "message"
    assert payload["bot"] == {"name": "testbot", "bot_id": "A0TEST001"}
    assert payload["team"] == {"name": "test-team", "team_id": "T0TEST001"}
    assert payload["parsed_user"]["id"] == "U0TEST001"


def test_dm_reply_has_no_thread(stack, slack):
    ts = new_ts()
    stack.post_event(message_event("ping", channel="D0TEST001", ts=ts))

    wait_until(lambda: [c for c in stack.calls("record_and_reply") if c["payload"]["ts"] == ts])
    post = wait_until(lambda: [c for c in posts_with(slack, "pong") if c["args"].get("channel") == "D0TEST001"])[-1]
    assert "thread_ts" not in post["args"]


def test_explicit_null_thread_posts_to_channel(stack, slack):
    stack.post_event(message_event("<@U0BOT0001> toplevel", ts=new_ts()))

    post = wait_until(lambda: posts_with(slack, "to the channel"))[0]
    assert post["args"]["channel"] == "C0TEST001"
    assert "thread_ts" not in post["args"]


def test_regex_handler_searches_parsed_text(stack):
    ts = new_ts()
    stack.post_event(message_event("rolling out to staging now", ts=ts))

    calls = wait_until(lambda: tagged(stack, "staging-regex", ts))
    assert calls[0]["payload"]["match_type"] == "regex"
    assert calls[0]["payload"]["regex"] == ".*staging.*"


def test_absence_regex_runs_when_pattern_is_missing(stack):
    quiet_ts = new_ts()
    loud_ts = new_ts()
    stack.post_event(dict(message_event("an ordinary message", ts=quiet_ts), api_app_id="A0TEST002"))
    stack.post_event(dict(message_event("please shush", ts=loud_ts), api_app_id="A0TEST002"))

    wait_until(lambda: tagged(stack, "absence", quiet_ts))
    stack.settle()
    assert tagged(stack, "absence", loud_ts) == []


def test_match_mention_accepts_mention_anywhere(stack):
    ts = new_ts()
    stack.post_event(message_event("hey <@U0BOT0001> look", ts=ts))

    calls = wait_until(lambda: tagged(stack, "mention", ts))
    assert calls[0]["payload"]["mentioned"] is True
    assert calls[0]["payload"]["directed"] is False


def test_undirected_command_is_ignored(stack):
    ts = new_ts()
    stack.post_event(message_event("status web", ts=ts))

    stack.settle()
    assert tagged(stack, "status", ts) == []


def test_thread_reply_needs_match_reply(stack, slack):
    parent = new_ts()
    reply_ts = new_ts()
    stack.post_event(message_event("<@U0BOT0001> logs api", ts=reply_ts, thread_ts=parent))
    ignored_ts = new_ts()
    stack.post_event(message_event("<@U0BOT0001> status web", ts=ignored_ts, thread_ts=parent))

    call = wait_until(lambda: [c for c in stack.calls("record_and_reply") if c["payload"]["ts"] == reply_ts])[0]
    assert call["payload"]["thread_ts"] == parent
    post = wait_until(lambda: posts_with(slack, "logs"))[0]
    assert post["args"]["thread_ts"] == parent
    stack.settle()
    assert tagged(stack, "status", ignored_ts) == []


def test_unmatched_directed_message_gets_help(stack, slack):
    ts = new_ts()
    stack.post_event(message_event("<@U0BOT0001> what can you do", ts=ts))

    post = wait_until(lambda: [c for c in slack.calls("chat.postMessage") if c["args"].get("thread_ts") == ts])[0]
    shown = json.dumps(post["args"])
    assert "ping" in shown
    assert "answer pong" in shown


def test_reaction_on_own_message(stack, slack):
    event = {
        "type": "reaction_added",
        "user": "U0TEST001",
        "reaction": "thumbsup",
        "item_user": "U0BOT0001",
        "item": {"type": "message", "channel": "C0TEST001", "ts": "1764870000.000900"},
        "event_ts": new_ts(),
    }
    body = dict(message_event("unused"), event=event, event_id=f"EvR{time.time_ns()}")
    stack.post_event(body)

    call = wait_until(lambda: [c for c in stack.calls("record_and_reply") if c["payload"].get("emoji_name") == "thumbsup"])[0]
    assert call["payload"]["match_type"] == "reaction"
    assert call["payload"]["reaction"] == "thumbsup|\\+1"


def test_reaction_on_other_users_message_is_ignored(stack):
    event = {
        "type": "reaction_added",
        "user": "U0TEST001",
        "reaction": "+1",
        "item_user": "W0TEST002",
        "item": {"type": "message", "channel": "C0TEST001", "ts": "1764870000.000901"},
        "event_ts": new_ts(),
    }
    stack.post_event(dict(message_event("unused"), event=event, event_id=f"EvR{time.time_ns()}"))

    stack.settle()
    assert [c for c in stack.calls("record_and_reply") if c["payload"].get("emoji_name") == "+1"] == []


def test_raising_callback_does_not_block_next_message(stack, slack):
    stack.post_event(message_event("<@U0BOT0001> explode", ts=new_ts()))
    ts = new_ts()
    stack.post_event(message_event("<@U0BOT0001> ping", ts=ts))

    wait_until(lambda: [c for c in posts_with(slack, "pong") if c["args"].get("thread_ts") == ts])
    # The callback after the raising one in the same handler still ran, once.
    wait_until(lambda: posts_with(slack, "after the explosion"))
    stack.settle()
    assert len(posts_with(slack, "after the explosion")) == 1


def test_bad_results_are_skipped(stack, slack):
    stack.post_event(message_event("<@U0BOT0001> junk", ts=new_ts()))

    wait_until(lambda: posts_with(slack, "the valid one"))
    assert len(stack.calls("not_a_dict")) == 1


# -- error responses -----------------------------------------------------------


def test_url_verification_echoes_challenge(stack):
    body = case_json("C01-url-verification", "body.json")

    response = stack.post_event(body)

    assert response.status_code == 200
    assert response.json() == {"challenge": body["challenge"]}


def test_url_verification_with_wrong_secret(stack):
    body = case_json("C01-url-verification", "body.json")

    response = stack.post_event(body, secret="wrong-secret")

    assert response.status_code == 403
    assert response.json() == {"status": "failure", "error": "url_verification failed."}


def _without(body, *path):
    body = fresh_event(body)
    target = body
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return body


@pytest.mark.parametrize(
    "change, sign, status, expected",
    [
        # Neither a signature nor a legacy token.
        (lambda b: _without(b, "token"), False, 403, {"status": "failure", "error": "No verification token in event."}),
        (lambda b: _without(b, "api_app_id"), True, 403, {"status": "failure", "error": "No api_app_id in event."}),
        (lambda b: _without(b, "team_id"), True, 403, {"status": "failure", "error": "No team_id in event."}),
        (lambda b: dict(fresh_event(b), team_id="T0OTHER01"), True, 403, {"status": "failure", "error": "Unsupported team"}),
        # A known team but an app omnibot does not proxy.
        (lambda b: dict(fresh_event(b), api_app_id="A0UNKNOWN"), True, 200, {"status": "ignored", "warning": "Unsupported bot"}),
        (lambda b: _without(b, "event"), True, 403, {"status": "failure", "error": "Request does not have an event. Processing will not proceed!"}),
    ],
)
def test_event_error_answers(stack, change, sign, status, expected):
    body = change(message_event("<@U0BOT0001> status x"))

    response = stack.post_event(body, sign=sign)

    assert response.status_code == status
    assert response.json() == expected


def test_wrong_signature_is_rejected(stack):
    response = stack.post_event(message_event("<@U0BOT0001> status x"), secret="not-the-secret")

    assert response.status_code == 403
    assert response.json()["status"] == "failure"


def test_unsigned_token_rejected_with_secret(stack):
    response = stack.post_event(message_event("<@U0BOT0001> status x"), sign=False)

    assert response.status_code == 403


@pytest.mark.parametrize(
    "raw, content_type",
    [
        (b"hello, not json", "text/plain"),  # C17 C
        (b"[1, 2, 3]", "application/json"),  # C17 D: JSON but not an object
        (b"{\"truncated\": ", "application/json"),
        (b"\xff\xfe\x00", "application/json"),  # not UTF-8
    ],
)
def test_malformed_bodies_get_400(stack, raw, content_type):
    response = stack.post_event(raw, content_type=content_type)

    assert response.status_code == 400
    assert response.json()["status"] == "failure"


def test_get_on_event_route_is_405(stack):
    response = stack.session.get(stack.url + "/api/v1/slack/event", timeout=5)

    assert response.status_code == 405
    assert response.json()["status"] == "failure"


def test_oversized_body_gets_413(stack):
    body = message_event("<@U0BOT0001> status " + "y" * (2 * 1024 * 1024))

    response = stack.post_event(body)

    assert response.status_code == 413
    assert response.json()["status"] == "failure"


# -- worker death --------------------------------------------------------------


def test_killed_worker_leaves_message_for_next_worker(stack, slack):
    ts = new_ts()
    stack.post_event(message_event("<@U0BOT0001> slow", ts=ts))
    wait_until(lambda: [c for c in stack.calls("slow_reply_started") if c["payload"]["ts"] == ts])

    victim = next(w for w in stack.workers if w.poll() is None)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    stack.start_worker()

    post = wait_until(lambda: posts_with(slack, "slow done"), timeout=30)
    assert post[0]["args"]["thread_ts"] == ts
    stack.settle(1)
    assert len(posts_with(slack, "slow done")) == 1


def test_worker_killed_after_post_posts_once(stack, slack):
    # The reaction, the action after the post, hangs, so the worker is killed
    # after Slack accepted the post and before the queue heard of it.
    slack.add_fault("reactions.add", delay=8, times=1)
    ts = new_ts()
    stack.post_event(message_event("<@U0BOT0001> replyreact", ts=ts))
    wait_until(lambda: posts_with(slack, "before the kill"))

    victim = next(w for w in stack.workers if w.poll() is None)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    stack.start_worker()

    wait_until(lambda: len([c for c in stack.calls("reply_then_react") if c["payload"]["ts"] == ts]) == 2, timeout=30)
    wait_until(lambda: [c for c in slack.calls("reactions.add") if c["args"].get("timestamp") == ts and c["status"] == 200])
    stack.settle(1)
    assert len(posts_with(slack, "before the kill")) == 1
    replies = [c for c in slack.calls("conversations.replies") if c["args"].get("ts") == ts]
    assert len(replies) == 1
    assert "Slack already has it from an earlier delivery" in stack.logs()
