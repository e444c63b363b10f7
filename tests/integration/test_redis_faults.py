"""Redis faults while omnibot runs: gunicorn and a worker process on a Redis server this module owns.

The module starts its own ``redis-server`` on a free port, so it can stop,
crash and restart it without touching the machine's shared Redis. It is
skipped when ``redis-server`` is not on PATH, unless ``OMNIBOT_REQUIRE_REDIS=1``.
"""

import copy
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.parse
import uuid

import pytest
import redis

from omnibot.backends import open_queue
from omnibot.backends.redis_cache import RedisCache
from omnibot.backends.redis_connection import create_client
from omnibot.backends.sqlite_queue import SqliteQueue
from omnibot.config import load_config_text
from omnibot.fake_slack import FakeSlack
from omnibot.runtime import Runtime
from omnibot.settings import Settings
from omnibot.worker import Worker
from tests.integration.stack import Stack
from tests.support import BASE_CONFIG, LEGACY_TOKEN, case_json, credentials_env, free_port, message_event, wait_until

pytestmark = [pytest.mark.redis, pytest.mark.slow]

EVENT = "/api/v1/slack/event"
SLASH = "/api/v1/slack/slash_command"
INTERACTIVE = "/api/v1/slack/interactive"
FORM = "application/x-www-form-urlencoded"

HANDLERS = """
handlers:
  message_handlers:
    - match: "echo"
      match_type: "command"
      bots: {"test-team": ["testbot"]}
      callbacks: [{module: "omnibot.callbacks.message_callbacks:echo_callback"}]
    - match: "slow"
      match_type: "command"
      bots: {"test-team": ["testbot"]}
      callbacks: [{module: "tests.recorders:slow_reply", kwargs: {seconds: 2, text: "slow done"}}]
  slash_command_handlers:
    - command: "/deploy"
      bots: {"test-team": ["testbot"]}
      callbacks: [{module: "tests.recorders:record"}]
    - command: "/pick"
      bots: {"test-team": ["testbot"]}
      callbacks: [{module: "tests.recorders:suggest_options", synchronous: true}]
  interactive_component_handlers:
    - action_id: "ack_alert"
      no_message_response: true
      bots: {"test-team": ["testbot"]}
      callbacks: [{module: "tests.recorders:record_ack"}]
"""


class RedisServer:
    """A ``redis-server`` child process on a loopback port, without persistence unless asked.

    Args:
        binary: Path of ``redis-server``.
        port: TCP port on 127.0.0.1.
        directory: Working directory of the server (its AOF files go there).
    """

    def __init__(self, binary, port, directory):
        self.binary = binary
        self.port = port
        self.directory = directory
        self.url = f"redis://127.0.0.1:{port}/0"
        self.process = None
        self._log_path = os.path.join(directory, "redis.log")

    def start(self, *extra_args):
        """Start the server and wait until it replies to PING; ``extra_args`` override the defaults."""
        command = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--dir", self.directory,
            *extra_args,
        ]
        with open(self._log_path, "ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        wait_until(self._answers, timeout=10, message=f"redis-server on port {self.port} (see {self._log_path})")
        return self

    def stop(self, signum=signal.SIGTERM):
        """Stop the server with ``signum`` (SIGKILL simulates a crash) and wait for it to exit."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signum)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def client(self):
        return redis.Redis(port=self.port, socket_timeout=5, socket_connect_timeout=5, decode_responses=True)

    def _answers(self):
        if self.process.poll() is not None:
            raise AssertionError(f"redis-server exited with {self.process.returncode}; see {self._log_path}")
        try:
            with self.client() as client:
                return client.ping()
        except redis.exceptions.ConnectionError:
            return False


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    binary = shutil.which("redis-server")
    if binary is None:
        message = "redis-server is not on PATH; install Redis to run the Redis fault tests"
        if os.environ.get("OMNIBOT_REQUIRE_REDIS") == "1":
            pytest.fail(f"{message} (OMNIBOT_REQUIRE_REDIS=1 forbids skipping)")
        pytest.skip(message)

    server = RedisServer(binary, free_port(), str(tmp_path_factory.mktemp("redis"))).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def slack():
    fake = FakeSlack().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def stack(redis_server, slack, tmp_path_factory):
    stack = Stack(
        str(tmp_path_factory.mktemp("redis-faults")),
        BASE_CONFIG + HANDLERS,
        slack.api_url,
        queue_url=redis_server.url,
        cache_url=redis_server.url,
        # Long enough that the slow handler's message is never delivered twice on a busy machine.
        env={"QUEUE_VISIBILITY_TIMEOUT": "10"},
    )
    stack.start()
    yield stack
    stack.stop()


@pytest.fixture
def stopped_redis(redis_server):
    """Stop the module's Redis for one test and start it again, empty, afterwards."""
    redis_server.stop()
    yield redis_server
    redis_server.start()


def unique_text():
    return f"fault-{uuid.uuid4().hex}"


def echo_event(text):
    time.sleep(0.002)
    return message_event(f"<@U0BOT0001> echo {text}", ts=f"{time.time():.6f}")


def posts_with(slack, text):
    return [call for call in slack.calls("chat.postMessage") if call["args"].get("text") == text]


def wait_posted(slack, text, timeout=45):
    """Wait for a chat.postMessage with ``text``; the worker may be backing off after a Redis outage."""
    return wait_until(lambda: posts_with(slack, text), timeout=timeout, interval=0.1, message=f"a post of {text!r}")


def slash_form(command="/deploy", trigger=True):
    fields = {
        "token": LEGACY_TOKEN,
        "team_id": "T0TEST001",
        "team_domain": "test-team",
        "channel_id": "C0TEST001",
        "user_id": "U0TEST001",
        "command": command,
        "text": "now",
        "api_app_id": "A0TEST001",
        "response_url": "http://127.0.0.1:9/hooks/unused",
    }
    if trigger:
        fields["trigger_id"] = f"1.2.{uuid.uuid4().hex}"
    return urllib.parse.urlencode(fields)


def interactive_form():
    payload = copy.deepcopy(case_json("C15-block-actions-routing", "payload_two_actions.json"))
    payload["trigger_id"] = f"1.2.{uuid.uuid4().hex}"
    payload["response_url"] = "http://127.0.0.1:9/hooks/unused"
    return urllib.parse.urlencode({"payload": json.dumps(payload)})


@pytest.mark.parametrize(
    "path, body, content_type",
    [
        (EVENT, lambda: echo_event(unique_text()), "application/json"),  # Events API: de-dup key, then queue
        (SLASH, slash_form, FORM),  # slash command with a queued callback
        # No trigger_id, so no de-dup key: the synchronous callback's user lookup meets the cache first.
        (SLASH, lambda: slash_form("/pick", trigger=False), FORM),
        (INTERACTIVE, interactive_form, FORM),  # block_actions routed by action_id
    ],
    ids=["event", "slash_command", "slash_command_synchronous", "interactive"],
)
def test_redis_down_answers_503(stack, stopped_redis, path, body, content_type):
    response = stack.post(path, body(), content_type=content_type)

    assert response.status_code == 503, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json()["status"] == "failure"
    assert "unavailable" in response.json()["error"]


def test_event_after_redis_restart_is_processed(stack, slack, redis_server):
    text = unique_text()
    event = echo_event(text)

    redis_server.stop()
    try:
        rejected = stack.post_event(event)
    finally:
        redis_server.start()
    retried = stack.post_event(event, headers={"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_error"})

    assert rejected.status_code == 503, rejected.text
    assert retried.status_code == 200, retried.text
    assert retried.json() == {"status": "success"}
    assert len(wait_posted(slack, text)) == 1


def test_worker_reconnects_after_client_kill(stack, slack, redis_server):
    before = unique_text()
    after = unique_text()

    assert stack.post_event(echo_event(before)).status_code == 200
    wait_posted(slack, before)
    with redis_server.client() as client:
        killed = client.execute_command("CLIENT", "KILL", "TYPE", "normal")
    response = stack.post_event(echo_event(after))

    assert killed >= 1
    assert response.status_code == 200, response.text
    assert len(wait_posted(slack, after)) == 1
    assert all(worker.poll() is None for worker in stack.workers)


def test_ack_after_client_kill_mid_message(stack, slack, redis_server):
    event = echo_event("unused")
    event["event"]["text"] = "<@U0BOT0001> slow"
    started_before = len(stack.calls("slow_reply_started"))
    finished_before = len(stack.calls("slow_reply"))

    assert stack.post_event(event).status_code == 200
    stack.wait_calls("slow_reply_started", started_before + 1)
    with redis_server.client() as client:
        killed = client.execute_command("CLIENT", "KILL", "TYPE", "normal")
    stack.wait_calls("slow_reply", finished_before + 1)
    # The ack deletes the message from the stream; a lost ack would leave it there.
    queue = open_queue(redis_server.url, stack.env["OMNIBOT_DATA_DIR"])
    try:
        wait_until(lambda: queue.depth() == 0, timeout=10, message="the ack of the slow message")
    finally:
        queue.close()

    assert killed >= 1
    assert len([call for call in stack.calls("slow_reply_started") if call["payload"]["ts"] == event["event"]["ts"]]) == 1
    assert len([call for call in slack.calls("chat.postMessage") if call["args"].get("thread_ts") == event["event"]["ts"]]) == 1


def test_worker_keeps_message_when_cache_is_down(tmp_path, slack):
    # A SQLite queue beside a Redis cache that nothing listens on: building the
    # message's container looks the user up in the cache and fails. The long
    # backoff keeps a message that was failed (not left leased) away for 30 s.
    environ = credentials_env()
    queue = SqliteQueue(str(tmp_path / "queue.db"), visibility_timeout=0.5, backoff_base=30)
    cache = RedisCache(create_client(f"redis://127.0.0.1:{free_port()}/0", retries=0))
    settings = Settings(slack_api_url=slack.api_url, data_dir=str(tmp_path), environ=environ)
    runtime = Runtime(settings, load_config_text(BASE_CONFIG + HANDLERS, environ=environ), queue, cache)
    worker = Worker(runtime, concurrency=1)
    message_id = queue.put({"kind": "event", "app_id": "A0TEST001", "team_id": "T0TEST001", "payload": echo_event("x")})

    try:
        handled = worker.handle(queue.get(timeout=1))
        leased = queue.get(timeout=0)
        redelivered = queue.get(timeout=5)
        dead_letters = queue.dead_letters()
    finally:
        runtime.close()

    assert handled is False
    assert leased is None
    assert redelivered.id == message_id
    assert redelivered.attempts == 2
    assert dead_letters == []


def test_accepted_event_survives_crash_with_aof(stack, slack, redis_server):
    # Runs last: it stops the stack's workers and leaves one new worker.
    text = unique_text()
    with redis_server.client() as client:
        client.config_set("appendfsync", "always")
        client.config_set("appendonly", "yes")
        wait_until(lambda: client.info("persistence")["aof_rewrite_in_progress"] == 0, message="the first AOF rewrite")
    for worker in stack.workers:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=15)

    accepted = stack.post_event(echo_event(text))
    redis_server.stop(signal.SIGKILL)
    redis_server.start("--appendonly", "yes", "--appendfsync", "always")
    stack.start_worker()

    assert accepted.status_code == 200, accepted.text
    assert len(wait_posted(slack, text)) == 1
