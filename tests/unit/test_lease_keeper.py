"""LeaseKeeper: a worker renews the leases of the messages it is processing, so a slow message runs once."""

import logging
import time

import pytest

from omnibot.backends.sqlite_cache import SqliteCache
from omnibot.backends.sqlite_queue import SqliteQueue
from omnibot.config import load_config_text
from omnibot.errors import BackendUnavailable
from omnibot.fake_slack import FakeSlack
from omnibot.lease_keeper import LeaseKeeper
from omnibot.runtime import Runtime
from omnibot.settings import Settings
from omnibot.worker import Worker
from tests import recorders
from tests.support import BASE_CONFIG, credentials_env, message_event, wait_until

SLOW_HANDLER = """
handlers:
  message_handlers:
    - match: "slow"
      match_type: "command"
      bots: {"test-team": ["testbot"]}
      callbacks: [{module: "tests.recorders:slow_reply", kwargs: {seconds: 2.5, text: "slow done"}}]
"""


@pytest.fixture
def slack():
    with FakeSlack() as fake:
        yield fake


def test_held_lease_stays_hidden(tmp_path):
    path = str(tmp_path / "queue.db")
    mine, other = SqliteQueue(path, visibility_timeout=0.6), SqliteQueue(path, visibility_timeout=0.6)
    mine.put({"n": 1})
    delivery = mine.get(timeout=5)
    keeper = LeaseKeeper(lambda: mine).start()
    try:
        with keeper.hold(delivery):
            taken_by_other = other.get(timeout=1.5)
        mine.ack(delivery)
    finally:
        keeper.stop()

    assert keeper.interval == pytest.approx(0.1)
    assert taken_by_other is None
    assert mine.depth() == 0


def test_lease_keeper_lets_a_released_lease_expire(tmp_path):
    path = str(tmp_path / "queue.db")
    mine, other = SqliteQueue(path, visibility_timeout=0.6), SqliteQueue(path, visibility_timeout=0.6)
    message_id = mine.put({"n": 1})
    delivery = mine.get(timeout=5)
    keeper = LeaseKeeper(lambda: mine).start()
    try:
        with keeper.hold(delivery):
            pass
        redelivered = other.get(timeout=5)
    finally:
        keeper.stop()

    assert redelivered.id == message_id
    assert redelivered.attempts == 2


def test_lease_keeper_logs_a_lost_lease(tmp_path, caplog):
    path = str(tmp_path / "queue.db")
    mine, other = SqliteQueue(path, visibility_timeout=0.3), SqliteQueue(path, visibility_timeout=0.3)
    message_id = mine.put({"n": 1})
    delivery = mine.get(timeout=5)
    keeper = LeaseKeeper(lambda: mine, visibility_timeout=600)
    taken_over = other.get(timeout=5)

    with caplog.at_level(logging.WARNING, logger="omnibot.lease_keeper"), keeper.hold(delivery):
        keeper.renew()

    assert taken_over.id == message_id
    assert f"the lease of message {message_id} (attempt 1) passed to another worker" in caplog.text


def test_lease_keeper_survives_an_unavailable_backend(tmp_path, caplog, monkeypatch):
    queue = SqliteQueue(str(tmp_path / "queue.db"), visibility_timeout=0.3)
    queue.put({"n": 1})
    delivery = queue.get(timeout=5)
    keeper = LeaseKeeper(lambda: queue, visibility_timeout=600)

    def unavailable(deliveries):
        raise BackendUnavailable("queue file is locked")

    monkeypatch.setattr(queue, "extend_leases", unavailable)
    with caplog.at_level(logging.WARNING, logger="omnibot.lease_keeper"), keeper.hold(delivery):
        keeper.renew()

    assert "could not renew the leases of 1 messages in hand (queue file is locked)" in caplog.text


def test_slow_message_runs_once_with_two_workers(tmp_path, slack, monkeypatch):
    # The callback takes 2.5 s and the visibility timeout is 1 s: without
    # renewal the second worker would take the message over and post again.
    record_file = str(tmp_path / "calls.jsonl")
    monkeypatch.setenv("OMNIBOT_TEST_RECORD_FILE", record_file)
    environ = credentials_env()
    config = load_config_text(BASE_CONFIG + SLOW_HANDLER, environ=environ)
    settings = Settings(slack_api_url=slack.api_url, data_dir=str(tmp_path), environ=environ)
    path = str(tmp_path / "queue.db")
    runtimes = [
        Runtime(settings, config, SqliteQueue(path, visibility_timeout=1.0), SqliteCache(str(tmp_path / "cache.db")))
        for _ in range(2)
    ]
    runtimes[0].queue.put(
        {"kind": "event", "app_id": "A0TEST001", "team_id": "T0TEST001", "payload": message_event("<@U0BOT0001> slow")}
    )
    workers = [Worker(runtime, concurrency=2, poll_timeout=0.1).start() for runtime in runtimes]
    try:
        wait_until(lambda: slack.calls("chat.postMessage"), timeout=15, message="the slow reply")
        time.sleep(1.5)
    finally:
        for worker in workers:
            worker.stop(grace_period=10)
        for runtime in runtimes:
            runtime.close()

    assert len(recorders.read_calls(record_file, "slow_reply_started")) == 1
    assert [call["args"]["text"] for call in slack.calls("chat.postMessage")] == ["slow done"]


def test_lease_keeper_starts_while_the_backend_is_down():
    def unreachable():
        raise BackendUnavailable("Redis Cluster at redis://127.0.0.1:1/0 is unavailable")

    keeper = LeaseKeeper(unreachable).start()
    keeper.stop(timeout=5)

    assert keeper.interval is None
    assert not keeper._thread.is_alive()
