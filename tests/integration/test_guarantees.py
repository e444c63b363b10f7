"""Each reliability and security promise of docs/guarantees.rst, checked end to end.

One gunicorn web process and one worker process run against a fake Slack.
The callbacks defined at the bottom of this module run inside that worker,
which imports them as ``tests.integration.test_guarantees:NAME``.
"""

import json
import os
import subprocess
import sys
import threading
import time
import types
import uuid

import pytest
import requests

from omnibot.config.model import CallbackSpec
from omnibot.errors import CallbackError
from omnibot.fake_slack import FakeSlack
from omnibot.processing import callbacks
from tests import recorders
from tests.integration.stack import Stack
from tests.support import BASE_CONFIG, LEGACY_TOKEN, REPO, message_event, signed, wait_until

SLASH = "/api/v1/slack/slash_command"
FORM = "application/x-www-form-urlencoded"

MAX_ATTEMPTS = 3
CALLBACK_TIMEOUT = 1
SLOW_FIRST_SECONDS = 2.5

HANDLERS = """
handlers:
  message_handlers:
    - match: "ping"
      match_type: "command"
      bots: {"test-team": ["testbot"]}
      callbacks: [{module: "tests.recorders:record_and_reply", kwargs: {text: "pong"}}]
    - match: "flaky"
      match_type: "command"
      bots: {"test-team": ["testbot"]}
      callbacks: [{module: "tests.recorders:fail_times", kwargs: {times: 2, text: "flaky done"}}]
    - match: "doomed"
      match_type: "command"
      bots: {"test-team": ["testbot"]}
      callbacks:
        - {module: "tests.recorders:record_and_reply", kwargs: {text: "doomed first step"}}
        - {module: "tests.integration.test_guarantees:needs_flag", kwargs: {flag: "FLAG_PATH"}}
    - match: "slowpoke"
      match_type: "command"
      bots: {"test-team": ["testbot"]}
      callbacks: [{module: "tests.integration.test_guarantees:slow_first"}]
    - match: "react"
      match_type: "command"
      bots: {"test-team": ["testbot"]}
      callbacks: [{module: "tests.integration.test_guarantees:react_then_reply"}]
  slash_command_handlers:
    - command: "/oncall"
      bots: {"test-team": ["testbot"]}
      callbacks: [{module: "tests.recorders:record", kwargs: {tag: "oncall"}}]
"""


@pytest.fixture(scope="module")
def slack():
    fake = FakeSlack().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def stack(slack, tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("guarantees"))
    config = BASE_CONFIG + HANDLERS.replace("FLAG_PATH", os.path.join(folder, "fixed.flag"))
    env = {
        "QUEUE_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
        "CALLBACK_TIMEOUT": str(CALLBACK_TIMEOUT),
        # Longer than the slack_sdk retries of one Slack call (about 4 s after two 5xx responses),
        # so a message is never leased twice while its first worker still handles it.
        "QUEUE_VISIBILITY_TIMEOUT": "15",
    }
    stack = Stack(folder, config, slack.api_url, env=env)
    # A start that fails half-way still stops the processes it started.
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


@pytest.fixture(autouse=True)
def _no_faults_left(slack):
    yield
    slack.clear_faults()


def new_ts():
    time.sleep(0.002)
    return f"{time.time():.6f}"


def thread_posts(slack, ts, text=None, status=None):
    """Return the chat.postMessage calls that reply in the thread of message ``ts``."""
    return [
        call
        for call in slack.calls("chat.postMessage")
        if call["args"].get("thread_ts") == ts
        and (text is None or call["args"].get("text") == text)
        and (status is None or call["status"] == status)
    ]


def calls_for(stack, callback, ts):
    return [call for call in stack.calls(callback) if call["payload"].get("ts") == ts]


def log_of(stack, name):
    with open(os.path.join(stack.tmp_path, name), encoding="utf-8", errors="replace") as log:
        return log.read()


def run_dlq(stack, *arguments):
    """Run ``omnibot dlq ARGUMENTS`` as an operator would, against the stack's queue."""
    return subprocess.run(
        [sys.executable, "-m", "omnibot", "dlq", *arguments],
        env=stack.env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )


def dead_letters_of(stack, event_id):
    listing = run_dlq(stack, "list", "--format", "json")
    assert listing.returncode == 0, listing.stderr
    return [letter for letter in json.loads(listing.stdout)["dead_letters"] if letter["event_id"] == event_id]


# -- exactly-once effect for Slack retries ----------------------------------------


def test_slack_retry_posts_once(stack, slack):
    ts = new_ts()
    body = message_event("<@U0BOT0001> ping", ts=ts)

    first = stack.post_event(body)
    retry = stack.post_event(body, headers={"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"})

    assert first.status_code == 200
    assert retry.status_code == 200
    assert retry.json()["duplicate"] is True
    wait_until(lambda: thread_posts(slack, ts, "pong"))
    stack.settle()
    assert len(thread_posts(slack, ts, "pong")) == 1
    assert f"duplicate delivery of event {body['event_id']} (retry 1, reason http_timeout)" in log_of(stack, "web.log")


def test_slash_command_retry_runs_once(stack):
    trigger_id = f"1.2.{uuid.uuid4().hex}"
    form = (
        f"token={LEGACY_TOKEN}&team_id=T0TEST001&api_app_id=A0TEST001&channel_id=C0TEST001"
        f"&user_id=U0TEST001&command=%2Foncall&text=&response_url=http%3A%2F%2F127.0.0.1%3A9%2Fhooks%2Funused"
        f"&trigger_id={trigger_id}"
    )

    first = stack.post(SLASH, form, content_type=FORM)
    retry = stack.post(SLASH, form, content_type=FORM, headers={"X-Slack-Retry-Num": "1"})

    assert first.status_code == 200
    assert retry.status_code == 200
    def calls():
        return [call for call in stack.calls("record") if call["payload"].get("trigger_id") == trigger_id]

    wait_until(calls)
    stack.settle()
    assert len(calls()) == 1


# -- replay and forgery protection -------------------------------------------------


def _stale(body):
    raw, headers = signed(body, timestamp=int(time.time()) - 6 * 60)
    return raw, headers


def _future(body):
    raw, headers = signed(body, timestamp=int(time.time()) + 6 * 60)
    return raw, headers


def _changed_after_signing(body):
    raw, headers = signed(body)
    return raw.replace(b"ping", b"pong"), headers


def _other_secret(body):
    return signed(body, secret="not-the-signing-secret")


def _unsigned_retry(body):
    raw = json.dumps(body).encode()
    return raw, {"Content-Type": "application/json", "X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}


@pytest.mark.parametrize(
    "forge",
    [
        _stale,  # signed 6 minutes ago: beyond the 5-minute window
        _future,  # signed 6 minutes ahead
        _changed_after_signing,  # body edited after the signature was made
        _other_secret,  # signed with a secret omnibot does not hold
        _unsigned_retry,  # no signature, only the legacy token and a retry header
    ],
)
def test_forged_request_gets_nothing(stack, slack, forge):
    ts = new_ts()
    body = message_event("<@U0BOT0001> ping", ts=ts)
    raw, headers = forge(body)

    response = stack.session.post(stack.url + "/api/v1/slack/event", data=raw, headers=headers, timeout=10)

    assert response.status_code == 403
    assert response.json()["status"] == "failure"
    stack.settle()
    assert calls_for(stack, "record_and_reply", ts) == []
    assert thread_posts(slack, ts) == []


def test_rejected_request_claims_no_dedup_key(stack, slack):
    """A forged delivery of an event id does not stop Slack's real delivery of it."""
    ts = new_ts()
    body = message_event("<@U0BOT0001> ping", ts=ts)

    forged = stack.post_event(body, sign=False, headers={"X-Slack-Retry-Num": "1"})
    real = stack.post_event(body)

    assert forged.status_code == 403
    assert real.status_code == 200
    assert "duplicate" not in real.json()
    wait_until(lambda: thread_posts(slack, ts, "pong"))


def test_oversized_body_413_before_parsing(stack):
    # Neither JSON nor signed: a 413 here shows the size check runs first.
    raw = b"\xff" * (1024 * 1024 + 1)

    # A connection of its own: gunicorn closes it after the 413 because the body was not read.
    response = requests.post(
        stack.url + "/api/v1/slack/event", data=raw, headers={"Content-Type": "application/json"}, timeout=10
    )

    assert response.status_code == 413
    assert response.json()["status"] == "failure"


# -- Slack Web API faults ----------------------------------------------------------


def test_rate_limit_waits_retry_after(stack, slack):
    slack.add_fault("chat.postMessage", status=429, retry_after=1, times=1)
    ts = new_ts()

    stack.post_event(message_event("<@U0BOT0001> ping", ts=ts))

    wait_until(lambda: thread_posts(slack, ts, "pong", status=200))
    stack.settle()
    calls = thread_posts(slack, ts, "pong")
    assert [call["status"] for call in calls] == [429, 200]
    # A lower bound only: the retry may come later, never before Retry-After.
    assert calls[1]["time"] - calls[0]["time"] >= 1.0


def test_server_error_is_retried(stack, slack):
    slack.add_fault("chat.postMessage", status=500, times=2)
    ts = new_ts()

    stack.post_event(message_event("<@U0BOT0001> ping", ts=ts))

    wait_until(lambda: thread_posts(slack, ts, "pong", status=200))
    stack.settle()
    assert [call["status"] for call in thread_posts(slack, ts, "pong")] == [500, 500, 200]


def test_failed_action_lets_next_run(stack, slack):
    slack.add_fault("reactions.add", error="invalid_name", times=1)
    ts = new_ts()

    stack.post_event(message_event("<@U0BOT0001> react", ts=ts))

    wait_until(lambda: thread_posts(slack, ts, "after the failed action"))
    reactions = [call for call in slack.calls("reactions.add") if call["args"].get("timestamp") == ts]
    assert [call["error"] for call in reactions] == ["invalid_name"]
    stack.settle()
    assert len(thread_posts(slack, ts, "after the failed action")) == 1
    assert "Slack API reactions.add failed: invalid_name" in log_of(stack, "worker0.log")


# -- callback faults and dead letters -----------------------------------------------


def test_flaky_callback_applied_once(stack, slack):
    ts = new_ts()

    stack.post_event(message_event("<@U0BOT0001> flaky", ts=ts))

    wait_until(lambda: thread_posts(slack, ts, "flaky done"))
    stack.settle()
    assert len(calls_for(stack, "fail_times", ts)) == 3
    assert len(thread_posts(slack, ts, "flaky done")) == 1


def test_timed_out_callback_result_discarded(stack, slack):
    ts = new_ts()

    stack.post_event(message_event("<@U0BOT0001> slowpoke", ts=ts))

    wait_until(lambda: thread_posts(slack, ts, "on time"))
    # The abandoned first attempt returns later, and its result must not reach Slack.
    wait_until(lambda: calls_for(stack, "slow_first_returned", ts), timeout=SLOW_FIRST_SECONDS + 10)
    stack.settle()
    assert thread_posts(slack, ts, "late result") == []
    assert len(thread_posts(slack, ts, "on time")) == 1
    assert len(calls_for(stack, "slow_first", ts)) == 2
    worker_log = log_of(stack, "worker0.log")
    assert f"timed out after {CALLBACK_TIMEOUT} s" in worker_log
    assert "its result is discarded" in worker_log


def test_dead_letter_replayed_once_fixed(stack, slack):
    ts = new_ts()
    body = message_event("<@U0BOT0001> doomed", ts=ts)

    stack.post_event(body)

    letters = wait_until(lambda: dead_letters_of(stack, body["event_id"]), timeout=20)
    assert len(calls_for(stack, "needs_flag", ts)) == MAX_ATTEMPTS
    assert letters[0]["attempts"] == MAX_ATTEMPTS
    assert "fixed.flag is missing" in letters[0]["error"]
    assert len(thread_posts(slack, ts, "doomed first step")) == 1

    with open(os.path.join(stack.tmp_path, "fixed.flag"), "w", encoding="utf-8"):
        pass
    replay = run_dlq(stack, "replay", letters[0]["id"])

    assert replay.returncode == 0, replay.stderr
    wait_until(lambda: thread_posts(slack, ts, "doomed fixed"))
    stack.settle()
    assert len(thread_posts(slack, ts, "doomed fixed")) == 1
    # The callback that finished before the message was dead-lettered is not run again.
    assert len(thread_posts(slack, ts, "doomed first step")) == 1
    assert dead_letters_of(stack, body["event_id"]) == []


# -- the deadline itself, in this process ----------------------------------------------


def _spec(function):
    return CallbackSpec(module=f"tests.integration.test_guarantees:{function.__name__}", kwargs={}, function=function)


def test_deadline_discards_late_result():
    release = threading.Event()
    finished = threading.Event()
    baseline = callbacks.abandoned_count()

    def late(container):
        release.wait(10)
        finished.set()
        return {"actions": [{"action": "chat.postMessage", "kwargs": {"text": "late"}}]}

    with pytest.raises(CallbackError, match="timed out after 0.05 s"):
        callbacks.call(_spec(late), types.SimpleNamespace(event_trace={}), timeout=0.05)

    assert callbacks.abandoned_count() == baseline + 1
    release.set()
    assert finished.wait(10)
    wait_until(lambda: callbacks.abandoned_count() == baseline)


def test_deadline_passes_result_and_errors():
    def quick(container):
        return {"thread": threading.current_thread().name}

    def broken(container):
        raise KeyError("user")

    container = types.SimpleNamespace(event_trace={})

    assert callbacks.call(_spec(quick), container, timeout=5) == {"thread": "omnibot-callback"}
    assert callbacks.call(_spec(quick), container) == {"thread": threading.current_thread().name}
    with pytest.raises(CallbackError, match="raised KeyError") as raised:
        callbacks.call(_spec(broken), container, timeout=5)
    assert isinstance(raised.value.__cause__, KeyError)


# -- callbacks that the worker imports from this module ------------------------------


def needs_flag(container, flag):
    """Raise until the file ``flag`` exists, then reply."""
    recorders._append("needs_flag", container)
    if not os.path.exists(flag):
        raise RuntimeError(f"flag file {flag} is missing")
    return {"actions": [{"action": "chat.postMessage", "kwargs": {"text": "doomed fixed"}}]}


def slow_first(container, seconds=SLOW_FIRST_SECONDS):
    """On the first call for a message, sleep past CALLBACK_TIMEOUT and return a late result; later calls reply at once."""
    ts = container.payload.get("ts")
    earlier = [call for call in recorders.read_calls(os.environ["OMNIBOT_TEST_RECORD_FILE"], "slow_first") if call["payload"].get("ts") == ts]
    recorders._append("slow_first", container)
    if earlier:
        return {"actions": [{"action": "chat.postMessage", "kwargs": {"text": "on time"}}]}

    time.sleep(seconds)
    recorders._append("slow_first_returned", container)
    return {"actions": [{"action": "chat.postMessage", "kwargs": {"text": "late result"}}]}


def react_then_reply(container):
    """Return a reaction (which the test makes Slack reject) followed by a reply."""
    return {
        "actions": [
            {"action": "reactions.add", "kwargs": {"name": "eyes", "channel": container.channel_id, "timestamp": container.payload["ts"]}},
            {"action": "chat.postMessage", "kwargs": {"text": "after the failed action"}},
        ]
    }
