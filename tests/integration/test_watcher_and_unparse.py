"""The watcher process and omnibot_parse end to end: gunicorn, a worker, ``omnibot watcher`` and a fake Slack.

The watcher fills the SQLite cache that the web app and the worker share.
A message handler's callback then posts text with ``omnibot_parse``, and the
test reads the converted text from the fake's ``chat.postMessage`` calls.
"""

import os
import signal
import subprocess
import sys
import time

import pytest

from omnibot.backends.sqlite_cache import SqliteCache
from omnibot.config import load_config_text
from omnibot.containers import Message
from omnibot.fake_slack import FakeSlack, default_workspace
from omnibot.processing.results import ResultApplier
from omnibot.runtime import Runtime
from omnibot.settings import Settings
from omnibot.slack import directory
from omnibot.watcher import Outcome, Watcher
from tests.integration.stack import Stack
from tests.support import BASE_CONFIG, REPO, credentials_env, fresh_event, message_event, wait_until

# The backend fixtures run each test on SQLite and, when Redis replies to PING, on Redis.
from tests.unit.backends.conftest import backend, make_cache, redis_namespace, redis_url  # noqa: F401

ALL_KINDS = ["specials", "channels", "users"]

HANDLERS = """
handlers:
  message_handlers:
    - match: "announce"
      match_type: "command"
      bots: {"test-team": ["testbot"]}
      callbacks: [{module: "tests.integration.test_watcher_and_unparse:post_with_omnibot_parse"}]
    - match: "broadcast"
      match_type: "command"
      bots: {"test-team": ["testbot"]}
      callbacks:
        - module: "tests.integration.test_watcher_and_unparse:post_with_omnibot_parse"
          kwargs: {kinds: ["specials"]}
    - match: "mentions"
      match_type: "command"
      bots: {"test-team": ["testbot"]}
      callbacks: [{module: "tests.recorders:record"}]
"""

# (text after the command, the text that reaches chat.postMessage)
ANNOUNCE_CASES = [
    # A user by display name.
    pytest.param("@alice", "<@U0TEST001>", id="user"),
    # An Enterprise Grid user.
    pytest.param("@bob", "<@W0TEST002>", id="grid-user"),
    # A public and a private channel.
    pytest.param("#general and #ops-private", "<#C0TEST001|general> and <#G0TEST001|ops-private>", id="channels"),
    # The three broadcasts.
    pytest.param("@here @channel @everyone", "<!here> <!channel> <!everyone>", id="specials"),
    # A user whose name starts with a broadcast is that user, not @channel.
    pytest.param("@channel-ops", "<@U0OPS0001>", id="user-named-like-special"),
    # An unknown name that starts with a broadcast stays whole.
    pytest.param("@channel-x", "@channel-x", id="unknown-like-special"),
    # An unknown channel that starts with a known one stays whole.
    pytest.param("#general-chat", "#general-chat", id="unknown-like-channel"),
    # An email address is not a user, even with a user named "example".
    pytest.param("mail bob@example.com", "mail bob@example.com", id="email"),
    # Unknown and deleted users stay as written.
    pytest.param("@nobody @gone", "@nobody @gone", id="unknown-and-deleted"),
    # Punctuation around a name.
    pytest.param("(@alice), #general.", "(<@U0TEST001>), <#C0TEST001|general>.", id="punctuation"),
    # A user id after # is not turned into the IM with that user.
    pytest.param("#U0TEST001", "#U0TEST001", id="user-id-as-channel"),
]


def post_with_omnibot_parse(container, kinds=None):
    """Post the command's arguments with ``omnibot_parse`` for ``kinds`` (all three by default)."""
    return {
        "actions": [
            {
                "action": "chat.postMessage",
                "kwargs": {"text": container.payload["args"], "omnibot_parse": {"text": kinds or ALL_KINDS}},
            }
        ]
    }


def unparse_workspace():
    workspace = default_workspace()
    workspace["users"] += [
        {"id": "U0OPS0001", "name": "ops", "profile": {"display_name": "channel-ops", "email": "ops@example.com"}},
        {"id": "U0EXAMPL1", "name": "example", "profile": {"display_name": "example", "email": "example@example.org"}},
        {"id": "U0GONE001", "name": "gone", "deleted": True, "profile": {"display_name": "gone", "email": "gone@example.com"}},
    ]
    return workspace


# -- end to end with processes ---------------------------------------------------------


@pytest.fixture(scope="module")
def slack():
    fake = FakeSlack(unparse_workspace()).start()
    yield fake
    fake.stop()


def start_watcher(env, log_path, *extra):
    log = open(log_path, "ab")
    return subprocess.Popen(
        [sys.executable, "-m", "omnibot", "watcher", *extra],
        env=env,
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def stop_process(process):
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


def wait_for_refresh(data_dir):
    """Wait until every directory kind of the test team was listed into the SQLite cache in ``data_dir``."""
    path = os.path.join(data_dir, "cache.db")
    wait_until(lambda: os.path.exists(path), timeout=30, message=f"the watcher to create {path}")
    cache = SqliteCache(path)
    keys = [directory.cache_key("T0TEST001", "directory", kind) for kind in directory.KINDS]
    try:
        wait_until(lambda: all(cache.get_many(keys)), timeout=30, message="the watcher's first refresh")
    finally:
        cache.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, slack):
    tmp_path = tmp_path_factory.mktemp("watcher-stack")
    stack = Stack(str(tmp_path), BASE_CONFIG + HANDLERS, slack.api_url)
    watcher = None
    try:
        stack.start()
        watcher = start_watcher(stack.env, os.path.join(tmp_path, "watcher.log"))
        wait_for_refresh(os.path.join(tmp_path, "data"))
        yield stack
    finally:
        if watcher is not None:
            stop_process(watcher)
        stack.stop()


def post_command(stack, text):
    """Post a message that mentions the bot and return its ts."""
    ts = f"{time.time():.6f}"
    body = fresh_event(message_event(f"<@U0BOT0001> {text}", ts=ts), ts=ts)
    response = stack.post_event(body)
    assert response.status_code == 200, response.text
    return ts


def reply_to(slack, ts):
    """Wait for the bot's chat.postMessage in the thread of ``ts`` and return its arguments."""
    return wait_until(
        lambda: next((call["args"] for call in slack.calls("chat.postMessage") if call["args"].get("thread_ts") == ts), None),
        timeout=15,
        message=f"a chat.postMessage in the thread of {ts}",
    )


@pytest.mark.parametrize("text, expected", ANNOUNCE_CASES)
def test_announce_unparses_through_cache(stack, slack, text, expected):
    ts = post_command(stack, f"announce {text}")

    args = reply_to(slack, ts)

    assert args["text"] == expected
    assert "omnibot_parse" not in args


def test_only_requested_kinds_unparsed(stack, slack):
    ts = post_command(stack, "broadcast @here from @alice in #general")

    args = reply_to(slack, ts)

    assert args["text"] == "<!here> from @alice in #general"


def test_worker_parses_mentions_from_cache(stack, slack):
    ts = post_command(stack, "mentions <@U0OPS0001> in <#G0TEST001>")

    calls = stack.wait_calls("record")
    payload = next(call["payload"] for call in calls if call["payload"]["ts"] == ts)

    assert payload["command_text"] == "mentions @channel-ops in #ops-private"
    assert not [call for call in slack.calls("users.info") if call["args"].get("user") == "U0OPS0001"]
    assert not [call for call in slack.calls("conversations.info") if call["args"].get("channel") == "G0TEST001"]


# -- the watcher command ----------------------------------------------------------------


def watcher_env(tmp_path, slack_api_url):
    config_path = tmp_path / "omnibot.yaml"
    config_path.write_text(BASE_CONFIG, encoding="utf-8")
    env = {key: value for key, value in os.environ.items() if not key.startswith("CREDENTIALS_SLACK_") and key not in ("QUEUE_URL", "CACHE_URL", "LOG_CONFIG_FILE")}
    env.update(credentials_env())
    env.update(
        CONFIG_FILE=str(config_path),
        OMNIBOT_DATA_DIR=str(tmp_path / "data"),
        SLACK_API_URL=slack_api_url,
        PYTHONPATH=REPO,
        LOG_FORMAT="text",
    )
    return env


def test_watcher_command_stops_on_sigterm(tmp_path, slack):
    log_path = tmp_path / "watcher.log"
    process = start_watcher(watcher_env(tmp_path, slack.api_url), log_path)
    try:
        wait_for_refresh(str(tmp_path / "data"))
    finally:
        status = stop_process(process)

    log = log_path.read_text(encoding="utf-8")
    assert status == 0, log
    assert f"omnibot watcher {process.pid} started" in log
    assert "refreshed users" in log
    assert f"omnibot watcher {process.pid} stopped" in log


def test_watcher_command_once_exits(tmp_path, slack):
    log_path = tmp_path / "watcher.log"
    process = start_watcher(watcher_env(tmp_path, slack.api_url), log_path, "--once")

    status = process.wait(timeout=30)

    log = log_path.read_text(encoding="utf-8")
    assert status == 0, log
    assert "finished one pass: test-team/users refreshed, test-team/conversations refreshed, test-team/emoji refreshed" in log


# -- in one process, on each cache backend ---------------------------------------------------


def test_unparse_action_on_each_backend(make_cache, slack, tmp_path):
    environ = credentials_env()
    settings = Settings(slack_api_url=slack.api_url, data_dir=str(tmp_path / "data"), environ=environ)
    runtime = Runtime(settings, load_config_text(BASE_CONFIG, environ=environ), cache=make_cache())
    bot = runtime.config.bot("test-team", "testbot")
    assert set(Watcher(runtime).run_once().values()) == {Outcome.REFRESHED}
    container = Message(bot, message_event("hi")["event"], bot.trace, runtime.slack_data)
    action = {
        "action": "chat.postMessage",
        "kwargs": {
            "channel": "C0TEST001",
            "text": "@here @alice @channel-ops see #ops-private, not #U0TEST001 or bob@example.com",
            "omnibot_parse": {"text": ALL_KINDS},
        },
    }

    answer = ResultApplier(runtime).perform_action(container, action)

    assert answer["ok"] is True
    assert answer["message"]["text"] == (
        "<!here> <@U0TEST001> <@U0OPS0001> see <#G0TEST001|ops-private>, not #U0TEST001 or bob@example.com"
    )
