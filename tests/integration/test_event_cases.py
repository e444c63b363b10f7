"""The real-world message cases (tests/cases/C03, C04, C05, C09, C10, C17) end to end."""

import json
import subprocess
import sys
import time

import pytest

from omnibot.fake_slack import FakeSlack, default_workspace
from tests.integration.stack import Stack
from tests.support import BASE_CONFIG, case_bytes, case_file, case_json, fresh_event, wait_until

HANDLERS = """
handlers:
  message_handlers:
    - match: "status"
      match_type: "command"
      bots: {"test-team": ["testbot"]}
      callbacks: [{module: "tests.recorders:record", kwargs: {tag: "status"}}]
    - match: "deploy"
      match_type: "command"
      bots: {"test-team": ["testbot"]}
      callbacks: [{module: "tests.recorders:record", kwargs: {tag: "deploy"}}]
    - match: ".*staging.*"
      match_type: "regex"
      bots: {"test-team": ["testbot"]}
      callbacks: [{module: "tests.recorders:record_regex"}]
    - match: "whois"
      match_type: "command"
      bots: {"test-team": ["testbot"]}
      callbacks: [{module: "tests.recorders:record", kwargs: {tag: "whois"}}]
    - match: "notify"
      match_type: "command"
      bots: {"test-team": ["testbot"]}
      callbacks: [{module: "tests.recorders:record", kwargs: {tag: "notify"}}]
    - match: "echo"
      match_type: "command"
      bots: {"test-team": ["testbot"]}
      callbacks: [{module: "tests.recorders:record", kwargs: {tag: "echo"}}]
    - match: "logs"
      match_type: "command"
      match_reply: true
      bots: {"test-team": ["testbot"]}
      callbacks: [{module: "tests.recorders:record_and_reply", kwargs: {text: "ok"}}]
"""


def grid_workspace():
    """The C05 workspace: the bot's own user id is a grid id, W0BOT0001."""
    workspace = default_workspace()
    workspace["bot"]["user_id"] = "W0BOT0001"
    for user in workspace["users"]:
        if user["id"] == "U0BOT0001":
            user["id"] = "W0BOT0001"
    for channel in workspace["channels"]:
        if channel["id"] == "G0TEST001":
            channel["name"] = "ops-private"
    return workspace


@pytest.fixture(scope="module")
def slack():
    fake = FakeSlack().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def stack(slack, tmp_path_factory):
    # No case here needs a redelivery, and a lease longer than the Stack's
    # default 3 s keeps a slow run on a busy machine from processing the
    # 40 KB message twice.
    env = {"QUEUE_VISIBILITY_TIMEOUT": "30"}
    stack = Stack(str(tmp_path_factory.mktemp("cases")), BASE_CONFIG + HANDLERS, slack.api_url, env=env)
    stack.start()
    yield stack
    stack.stop()


def tagged(stack, tag, ts):
    return [c for c in stack.calls("record") if c["kwargs"].get("tag") == tag and c["payload"]["ts"] == ts]


def unique_ts():
    time.sleep(0.002)
    return f"{time.time():.6f}"


@pytest.mark.parametrize("first, second", [("body_message.json", "body_app_mention.json"), ("body_app_mention.json", "body_message.json")])
def test_c03_mention_delivered_twice_runs_once(stack, first, second):
    ts = unique_ts()
    responses = [
        stack.post_event(fresh_event(case_json("C03-app-mention-and-message-dup", name), ts=ts))
        for name in (first, second)
    ]

    assert [r.status_code for r in responses] == [200, 200]
    calls = wait_until(lambda: tagged(stack, "status", ts))
    stack.settle()
    assert len(tagged(stack, "status", ts)) == 1
    assert calls[0]["payload"]["command"] == "status"
    assert calls[0]["payload"]["args"] == "web"


def test_c03_slack_retry_of_same_event_runs_once(stack):
    body = fresh_event(case_json("C03-app-mention-and-message-dup", "body_message.json"), ts=unique_ts())

    first = stack.post_event(body)
    retry = stack.post_event(body, headers={"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"})

    assert first.status_code == 200
    assert retry.status_code == 200
    wait_until(lambda: tagged(stack, "status", body["event"]["ts"]))
    stack.settle()
    assert len(tagged(stack, "status", body["event"]["ts"])) == 1


def test_c04_nbsp_after_mention(stack):
    body = fresh_event(case_json("C04-nbsp-after-mention", "body.json"), ts=unique_ts())

    assert stack.post_event(body).status_code == 200

    payload = wait_until(lambda: tagged(stack, "deploy", body["event"]["ts"]))[0]["payload"]
    assert payload["directed"] is True
    assert payload["command"] == "deploy"
    assert payload["args"] == "api --env staging"
    assert payload["parsed_text"].startswith("@testbot deploy")
    assert payload["text"] == body["event"]["text"]
    assert "\u00a0" in payload["text"]
    # Regex handlers run independently of the command match, as in omnibot.
    wait_until(lambda: [c for c in stack.calls("record_regex") if c["payload"]["ts"] == body["event"]["ts"]])


def test_c10_markup_parsing(stack):
    body = fresh_event(case_json("C10-markup-parsing", "body.json"), ts=unique_ts())
    expected = case_json("C10-markup-parsing", "expected_payload_subset.json")

    assert stack.post_event(body).status_code == 200

    payload = wait_until(lambda: tagged(stack, "notify", body["event"]["ts"]))[0]["payload"]
    for key, value in expected.items():
        assert payload[key] == value, key
    assert payload["text"] == body["event"]["text"]


def test_c09_thread_reply_with_match_reply(stack, slack):
    body = fresh_event(case_json("C09-thread-replies-and-subtypes", "body_thread_reply.json"))

    assert stack.post_event(body).status_code == 200

    call = wait_until(lambda: [c for c in stack.calls("record_and_reply") if c["payload"]["ts"] == body["event"]["ts"]])[0]
    assert call["payload"]["thread_ts"] == "1764870000.000100"
    assert call["payload"]["command"] == "logs"
    assert call["payload"]["args"] == "api"
    post = wait_until(lambda: [c for c in slack.calls("chat.postMessage") if c["args"].get("thread_ts") == "1764870000.000100"])[0]
    assert post["args"]["channel"] == "C0TEST001"


@pytest.mark.parametrize(
    "name",
    [
        "body_message_replied.json",  # hidden bookkeeping event
        "body_thread_broadcast.json",  # subtype: ignored as omnibot does
        "body_file_share.json",  # subtype: ignored as omnibot does
    ],
)
def test_c09_subtypes_are_ignored(stack, name):
    body = fresh_event(case_json("C09-thread-replies-and-subtypes", name))

    assert stack.post_event(body).status_code == 200

    stack.settle()
    assert [c for c in stack.calls("record_and_reply") if c["payload"]["ts"] == body["event"].get("ts")] == []


def test_c17_largest_slack_message_is_processed(stack):
    body = fresh_event(case_json("C17-malformed-and-oversized-bodies", "body_40k_text.json"), ts=unique_ts())

    assert stack.post_event(body).status_code == 200

    wait_until(lambda: tagged(stack, "echo", body["event"]["ts"]))
    stack.settle()
    assert len(tagged(stack, "echo", body["event"]["ts"])) == 1


def test_c17_oversized_body_gets_413(stack, tmp_path):
    subprocess.run([sys.executable, case_file("C17-malformed-and-oversized-bodies", "make_oversized.py")], cwd=tmp_path, check=True)
    raw = (tmp_path / "body_oversized.json").read_bytes()

    response = stack.post_event(raw)

    assert response.status_code == 413
    assert response.json()["status"] == "failure"


def test_c17_unsigned_ssl_check_on_event_route_is_rejected(stack):
    response = stack.post_event(case_bytes("C17-malformed-and-oversized-bodies", "body_text_plain.txt"), sign=False, content_type="text/plain")

    assert response.status_code == 400


# -- C05 needs a workspace whose bot user is a grid user ----------------------------


@pytest.fixture(scope="module")
def grid_stack(tmp_path_factory):
    fake = FakeSlack(workspace=grid_workspace()).start()
    stack = Stack(str(tmp_path_factory.mktemp("grid")), BASE_CONFIG + HANDLERS, fake.api_url)
    stack.start()
    yield stack
    stack.stop()
    fake.stop()


def test_c05_grid_users_and_private_channel(grid_stack):
    body = fresh_event(case_json("C05-grid-W-users-G-D-channels", "body_private_channel.json"))

    assert grid_stack.post_event(body).status_code == 200

    payload = wait_until(lambda: tagged(grid_stack, "whois", body["event"]["ts"]))[0]["payload"]
    assert payload["directed"] is True
    assert payload["command"] == "whois"
    assert payload["users"]["<@W0BOT0001>"] == "testbot"
    assert payload["users"]["<@W0TEST002>"] == "bob"
    assert payload["users"]["<@U0TEST001|alice>"] == "alice"
    assert payload["channels"]["<#G0TEST001>"] == "ops-private"
    assert payload["parsed_text"] == "@testbot whois @bob and @alice in #ops-private"
    assert payload["parsed_user"]["id"] == "W0TEST002"


def test_c05_dm_is_directed_without_mention(grid_stack):
    body = fresh_event(case_json("C05-grid-W-users-G-D-channels", "body_dm.json"))

    assert grid_stack.post_event(body).status_code == 200

    payload = wait_until(lambda: tagged(grid_stack, "whois", body["event"]["ts"]))[0]["payload"]
    assert payload["directed"] is True
    assert payload["command"] == "whois"
    assert payload["args"] == "@bob"
    assert json.dumps(payload)
