"""The logging helpers of omnibot.logs: repeat suppression, token removal, trace fields."""

import json
import logging

import pytest

from omnibot.logs import JsonFormatter, RepeatFilter, TextFormatter, configure_logging, without_tokens
from tests.support import FakeClock


def make_record(message="backend unavailable", level=logging.WARNING, name="omnibot.worker", args=(), **extra):
    record = logging.LogRecord(name, level, __file__, 1, message, args, None)
    record.__dict__.update(extra)
    return record


def test_repeat_filter_passes_limit_then_drops():
    repeats = RepeatFilter(limit=3, period=60, clock=FakeClock())

    passed = [repeats.filter(make_record()) for _ in range(10)]

    assert passed == [True, True, True] + [False] * 7


def test_repeat_filter_reports_dropped_count_next_period():
    clock = FakeClock()
    repeats = RepeatFilter(limit=2, period=60, clock=clock)
    for _ in range(5):
        repeats.filter(make_record("queue %s unavailable", args=("redis",)))

    clock.now += 60
    record = make_record("queue %s unavailable", args=("redis",))
    passed = repeats.filter(record)

    assert passed
    assert record.getMessage() == "queue redis unavailable (3 identical messages suppressed before this one)"


def test_repeat_filter_starts_clean_after_quiet_period():
    clock = FakeClock()
    repeats = RepeatFilter(limit=2, period=60, clock=clock)
    repeats.filter(make_record())

    clock.now += 61
    record = make_record()

    assert repeats.filter(record)
    assert record.getMessage() == "backend unavailable"


@pytest.mark.parametrize(
    "other",
    [
        # Another message text.
        make_record("cache unavailable"),
        # The same text from another logger.
        make_record(name="omnibot.watcher"),
        # The same text at another level.
        make_record(level=logging.ERROR),
        # The same template with other arguments formats to another message.
        make_record("backend %s", args=("unavailable again",)),
    ],
)
def test_repeat_filter_keys_on_logger_level_and_message(other):
    repeats = RepeatFilter(limit=1, period=60, clock=FakeClock())
    repeats.filter(make_record())

    assert repeats.filter(other)


def test_repeat_filter_never_drops_info():
    repeats = RepeatFilter(limit=1, period=60, clock=FakeClock())

    passed = [repeats.filter(make_record(level=logging.INFO)) for _ in range(5)]

    assert passed == [True] * 5


def test_repeat_filter_forgets_expired_keys_at_max():
    clock = FakeClock()
    repeats = RepeatFilter(limit=1, period=60, max_keys=3, clock=clock)
    for number in range(3):
        repeats.filter(make_record(f"message {number}"))

    clock.now += 61
    repeats.filter(make_record("message 3"))

    assert len(repeats._periods) == 1


def test_without_tokens_removes_nested_tokens():
    payload = {
        "token": "verification-token",
        "event": {"type": "message", "token": "nested", "blocks": [{"token": "in-list", "text": "hi"}]},
        "authorizations": [{"team_id": "T0TEST001"}],
    }

    cleaned = without_tokens(payload)

    assert cleaned == {
        "event": {"type": "message", "blocks": [{"text": "hi"}]},
        "authorizations": [{"team_id": "T0TEST001"}],
    }
    assert payload["token"] == "verification-token"


def test_json_formatter_renders_new_trace_fields():
    record = make_record(delay_ms=31000, retry_num="1", api_error="ratelimited", message_id="42", unrelated="x")

    entry = json.loads(JsonFormatter().format(record))

    assert entry["delay_ms"] == 31000
    assert entry["retry_num"] == "1"
    assert entry["api_error"] == "ratelimited"
    assert entry["message_id"] == "42"
    assert "unrelated" not in entry


def test_configure_logging_installs_repeat_filter(monkeypatch):
    monkeypatch.delenv("LOG_CONFIG_FILE", raising=False)
    monkeypatch.setenv("LOG_FORMAT", "text")
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    try:
        configure_logging("json")
        handler = root.handlers[0]
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)

    assert isinstance(handler.formatter, TextFormatter)
    assert any(isinstance(check, RepeatFilter) for check in handler.filters)


def test_configure_logging_keeps_urllib3_at_warning_under_debug(monkeypatch):
    # urllib3's DEBUG lines carry request paths, and a response_url's path is a secret.
    monkeypatch.delenv("LOG_CONFIG_FILE", raising=False)
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, logging.getLogger("urllib3").level)
    try:
        configure_logging("text", level="DEBUG")

        assert root.level == logging.DEBUG
        assert logging.getLogger("urllib3").getEffectiveLevel() == logging.WARNING
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
        logging.getLogger("urllib3").setLevel(saved[2])
