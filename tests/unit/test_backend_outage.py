"""OutageLog: one ERROR line when a backend goes away, one INFO line when it is back."""

import logging
import threading
import time

from omnibot.backend_outage import REPEAT_INTERVAL, OutageLog
from omnibot.backends.sqlite_cache import SqliteCache
from omnibot.backends.sqlite_queue import SqliteQueue
from omnibot.config import load_config_text
from omnibot.errors import BackendUnavailable
from omnibot.runtime import Runtime
from omnibot.settings import Settings
from omnibot.worker import Worker
from tests.support import BASE_CONFIG, FakeClock, credentials_env, wait_until

LOGGER = "tests.outage"


def records(caplog, level):
    return [record.getMessage() for record in caplog.records if record.name == LOGGER and record.levelno == level]


def test_outage_log_first_failure_and_recovery(caplog):
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    clock = FakeClock()
    outage = OutageLog(logging.getLogger(LOGGER), "queue backend", clock=clock)
    error = BackendUnavailable("Redis at 127.0.0.1:6379/0 is unavailable")

    outage.failed(error, 0.5)
    clock.advance(1)
    outage.failed(error, 1.0)
    outage.failed(error, 0.5)
    clock.advance(2.5)
    outage.reached()
    outage.reached()

    assert records(caplog, logging.ERROR) == [
        "queue backend unavailable (Redis at 127.0.0.1:6379/0 is unavailable); retrying in 0.5 s"
    ]
    assert len(records(caplog, logging.DEBUG)) == 2
    assert records(caplog, logging.INFO) == ["queue backend available again after 3.5 s (3 failed attempts)"]


def test_outage_log_long_outage(caplog):
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    clock = FakeClock()
    outage = OutageLog(logging.getLogger(LOGGER), "cache backend", clock=clock)
    error = BackendUnavailable("down")

    outage.failed(error, 0.5)
    clock.advance(REPEAT_INTERVAL - 1)
    outage.failed(error, 30.0)
    clock.advance(1)
    outage.failed(error, 30.0)

    assert records(caplog, logging.ERROR) == [
        "cache backend unavailable (down); retrying in 0.5 s",
        f"cache backend still unavailable after {REPEAT_INTERVAL:.0f} s and 3 failed attempts (down); retrying in 30.0 s",
    ]


def test_outage_log_second_outage(caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    clock = FakeClock()
    outage = OutageLog(logging.getLogger(LOGGER), "queue backend", clock=clock)

    outage.failed(BackendUnavailable("first"), 0.5)
    outage.reached()
    clock.advance(5)
    outage.failed(BackendUnavailable("second"), 0.5)

    assert records(caplog, logging.ERROR) == [
        "queue backend unavailable (first); retrying in 0.5 s",
        "queue backend unavailable (second); retrying in 0.5 s",
    ]


class FlakyQueue(SqliteQueue):
    """A SQLite queue whose first ``failures`` gets raise BackendUnavailable."""

    def __init__(self, path, failures):
        super().__init__(path)
        self.failures = failures
        self.lock = threading.Lock()

    def get(self, timeout=1.0):
        with self.lock:
            fail = self.failures > 0
            self.failures -= 1
        if fail:
            raise BackendUnavailable("queue file is locked")
        return super().get(timeout=min(timeout, 0.05))


def test_worker_outage_with_four_threads(tmp_path, caplog, monkeypatch):
    caplog.set_level(logging.INFO, logger="omnibot.worker")
    # Short pauses, so the threads meet the outage several times each within the test.
    monkeypatch.setattr("omnibot.worker._next_backoff", lambda backoff: 0.01)
    environ = credentials_env()
    queue = FlakyQueue(str(tmp_path / "queue.db"), failures=20)
    cache = SqliteCache(str(tmp_path / "cache.db"))
    settings = Settings(data_dir=str(tmp_path), environ=environ)
    runtime = Runtime(settings, load_config_text(BASE_CONFIG, environ=environ), queue, cache)
    worker = Worker(runtime, concurrency=4, poll_timeout=0.05).start()
    try:
        wait_until(lambda: any("available again" in record.getMessage() for record in caplog.records), message="the recovery line")
        time.sleep(0.1)
    finally:
        worker.stop(grace_period=5)
        runtime.close()

    lines = [record.getMessage() for record in caplog.records if record.name == "omnibot.worker"]
    assert [line for line in lines if "unavailable" in line] == ["queue backend unavailable (queue file is locked); retrying in 0.0 s"]
    recovered = [line for line in lines if "available again" in line]
    assert len(recovered) == 1
    assert recovered[0].startswith("queue backend available again after ")
    assert recovered[0].endswith(" s (20 failed attempts)")
