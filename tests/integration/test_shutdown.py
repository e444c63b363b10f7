"""SIGTERM to gunicorn, a worker, the watcher and ``omnibot serve``: work in hand finishes, then the process exits.

A SIGKILLed worker loses nothing either; that case is
``test_killed_worker_leaves_message_for_next_worker`` in test_events.py.
"""

import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import requests

from omnibot.backends.sqlite_queue import SqliteQueue
from omnibot.fake_slack import FakeSlack
from tests.integration.stack import Stack
from tests import recorders
from tests.support import BASE_CONFIG, REPO, credentials_env, free_port, message_event, signed, wait_until

SLOW_SECONDS = 2

HANDLERS = f"""
handlers:
  message_handlers:
    - match: "slow"
      match_type: "command"
      bots: {{"test-team": ["testbot"]}}
      callbacks: [{{module: "tests.recorders:slow_reply", kwargs: {{seconds: {SLOW_SECONDS}, text: "slow done"}}}}]
    - match: "sleepy"
      match_type: "command"
      bots: {{"test-team": ["testbot"]}}
      callbacks: [{{module: "tests.recorders:slow_reply", kwargs: {{seconds: 2.5, text: "sleepy done"}}}}]
"""


@pytest.fixture(scope="module")
def slack():
    fake = FakeSlack().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def stack(slack, tmp_path_factory):
    # Leases outlast every callback here, so only a stopped worker makes the queue deliver a message again.
    env = {"QUEUE_VISIBILITY_TIMEOUT": "5"}
    stack = Stack(str(tmp_path_factory.mktemp("shutdown")), BASE_CONFIG + HANDLERS, slack.api_url, env=env, workers=0)
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


def thread_posts(slack, ts, text):
    return [
        call
        for call in slack.calls("chat.postMessage")
        if call["args"].get("thread_ts") == ts and call["args"].get("text") == text and call["status"] == 200
    ]


def started(stack, ts):
    return [call for call in stack.calls("slow_reply_started") if call["payload"]["ts"] == ts]


def start_worker(stack, grace_period):
    """Start ``omnibot worker`` with its own grace period; its log is the stack's ``grace<N>.log``."""
    log = open(os.path.join(stack.tmp_path, f"grace{len(stack.workers)}.log"), "ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "omnibot", "worker", "--concurrency", "2", "--grace-period", str(grace_period)],
        env=stack.env,
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    stack.workers.append(process)
    return process


def test_worker_sigterm_finishes_message(stack, slack):
    worker = stack.start_worker()
    ts = new_ts()
    stack.post_event(message_event("<@U0BOT0001> slow", ts=ts))
    wait_until(lambda: started(stack, ts))

    worker.send_signal(signal.SIGTERM)

    assert worker.wait(timeout=20) == 0
    assert len(thread_posts(slack, ts, "slow done")) == 1
    assert len(started(stack, ts)) == 1
    # Acknowledged before the exit, so the queue contains nothing to deliver again.
    queue = SqliteQueue(os.path.join(stack.tmp_path, "data", "queue.db"))
    try:
        assert queue.depth() == 0
    finally:
        queue.close()


def test_worker_past_grace_period_loses_nothing(stack, slack):
    worker = start_worker(stack, grace_period=1)
    ts = new_ts()
    stack.post_event(message_event("<@U0BOT0001> sleepy", ts=ts))
    wait_until(lambda: started(stack, ts))

    worker.send_signal(signal.SIGTERM)

    # The message outlives the grace period, so the worker exits 1 without acknowledging it.
    assert worker.wait(timeout=20) == 1
    assert thread_posts(slack, ts, "sleepy done") == []

    replacement = stack.start_worker()
    wait_until(lambda: thread_posts(slack, ts, "sleepy done"), timeout=30)
    stack.settle()
    assert len(thread_posts(slack, ts, "sleepy done")) == 1
    replacement.send_signal(signal.SIGTERM)
    assert replacement.wait(timeout=20) == 0


def test_gunicorn_sigterm_finishes_request(stack, slack):
    # The Slack call behind this internal API request takes 2 s.
    slack.add_fault("chat.postMessage", delay=2, times=1)
    outcome = {}

    def send():
        outcome["response"] = requests.post(
            stack.url + "/api/v2/slack/action/test-team/testbot",
            json={"action": "chat.postMessage", "kwargs": {"channel": "C0TEST001", "text": "during shutdown"}},
            timeout=20,
        )

    sender = threading.Thread(target=send)
    sender.start()
    wait_until(lambda: [c for c in slack.calls("chat.postMessage") if c["args"].get("text") == "during shutdown"])

    stack.web.send_signal(signal.SIGTERM)

    sender.join(20)
    assert outcome["response"].status_code == 200
    assert outcome["response"].json()["ok"] is True
    assert stack.web.wait(timeout=20) == 0
    with pytest.raises(requests.ConnectionError):
        requests.get(stack.url + "/healthcheck", timeout=2)

    stack.start_web()


def test_watcher_sigterm_finishes_page(stack, slack):
    # The first users.list page takes 2 s, so SIGTERM arrives while it is in flight.
    slack.add_fault("users.list", delay=2, times=1)
    log_path = os.path.join(stack.tmp_path, "watcher.log")
    with open(log_path, "ab") as log:
        watcher = subprocess.Popen(
            [sys.executable, "-m", "omnibot", "watcher"], env=stack.env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        wait_until(lambda: slack.calls("users.list"), timeout=30, message="the watcher's users.list call")

        watcher.send_signal(signal.SIGTERM)

        assert watcher.wait(timeout=20) == 0
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait()
    with open(log_path, encoding="utf-8", errors="replace") as log:
        text = log.read()
    assert f"omnibot watcher {watcher.pid} stopped" in text
    assert "still running" not in text


def test_serve_sigterm_finishes_message(slack, tmp_path):
    config_path = tmp_path / "omnibot.yaml"
    config_path.write_text(BASE_CONFIG + HANDLERS, encoding="utf-8")
    record_file = tmp_path / "calls.jsonl"
    port = free_port()
    env = dict(os.environ)
    env.update(credentials_env())
    env.update(
        CONFIG_FILE=str(config_path),
        SLACK_API_URL=slack.api_url,
        OMNIBOT_TEST_RECORD_FILE=str(record_file),
        PYTHONPATH=REPO,
    )
    with open(tmp_path / "serve.log", "ab") as log:
        serve = subprocess.Popen(
            [sys.executable, "-m", "omnibot", "serve", "--port", str(port), "--data-dir", str(tmp_path / "data"), "--concurrency", "2"],
            env=env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _answers(url), timeout=30, message=f"omnibot serve on port {port}")
        ts = new_ts()
        raw, headers = signed(message_event("<@U0BOT0001> slow", ts=ts))
        assert requests.post(url + "/api/v1/slack/event", data=raw, headers=headers, timeout=10).status_code == 200
        wait_until(lambda: [c for c in recorders.read_calls(str(record_file), "slow_reply_started") if c["payload"]["ts"] == ts])

        serve.send_signal(signal.SIGTERM)

        assert serve.wait(timeout=40) == 0
        assert len(thread_posts(slack, ts, "slow done")) == 1
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait()


def _answers(url):
    try:
        return requests.get(url + "/healthcheck", timeout=1).status_code == 200
    except requests.RequestException:
        return False
