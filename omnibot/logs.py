"""Logging set-up for omnibot's processes (never done at import).

``LOG_CONFIG_FILE`` names a YAML or JSON ``logging.config.dictConfig``;
without it, ``LOG_FORMAT`` picks ``text`` or ``json`` lines on stderr.
Fields passed as ``extra=`` (the event trace) appear in both formats.
:class:`RepeatFilter` drops repeats of identical warnings beyond a rate, and
:func:`without_tokens` prepares a payload for a debug line.
"""

import datetime
import json
import logging
import logging.config
import os
import sys
import threading
import time
import typing

import yaml

# Fields of the event trace that log lines carry when present.
TRACE_FIELDS = (
    "team",
    "bot",
    "bot_id",
    "event_type",
    "event_ts",
    "trigger_id",
    "callback_id",
    "command",
    "channel_id",
    "handler",
    "callback",
    "path",
    "method",
    "component_type",
    "kind",
    "app_id",
    "team_id",
    "message_id",
    "attempt",
    "retry_num",
    "retry_reason",
    "delay_ms",
    "status",
    "reason",
    "api_method",
    "api_error",
)

# Repeated identical warnings and errors: at most REPEAT_LIMIT per REPEAT_PERIOD seconds.
REPEAT_LIMIT = 5
REPEAT_PERIOD = 60.0


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON object per line."""

    def format(self, record):
        entry = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in TRACE_FIELDS:
            value = record.__dict__.get(field)
            if value is not None:
                entry[field] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """Format a record as a text line followed by its trace fields as ``key=value``."""

    def __init__(self):
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record):
        line = super().format(record)
        fields = [
            f"{field}={record.__dict__[field]}"
            for field in TRACE_FIELDS
            if record.__dict__.get(field) is not None
        ]
        if not fields:
            return line
        first, newline, rest = line.partition("\n")
        return f"{first} [{' '.join(fields)}]{newline}{rest}"


def configure_logging(default_format: str = "text", level: str = None) -> None:
    """Configure the root logger for a command-line process.

    Args:
        default_format: ``text`` or ``json``, used when ``LOG_FORMAT`` is unset.
        level: Log level name; ``LOG_LEVEL`` or INFO when None.
    """
    config_file = os.environ.get("LOG_CONFIG_FILE")
    if config_file:
        with open(config_file, encoding="utf-8") as source:
            logging.config.dictConfig(yaml.safe_load(source))
        return

    log_format = (os.environ.get("LOG_FORMAT") or default_format).lower()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(RepeatFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel((level or os.environ.get("LOG_LEVEL") or "INFO").upper())
    # At DEBUG urllib3 logs each request's path, and a response_url's path is
    # a secret. config/logging.yaml also sets urllib3 to WARNING.
    logging.getLogger("urllib3").setLevel(logging.WARNING)


class RepeatFilter(logging.Filter):
    """Let through at most ``limit`` identical warnings or errors per ``period`` seconds.

    Records are identical when their logger, level and formatted message are
    equal. Records below WARNING always pass. The first identical record let
    through after a period with dropped ones ends with how many were dropped.
    A dictConfig uses it as ``filters: {repeats: {"()": omnibot.logs.RepeatFilter}}``.

    Args:
        limit: Records let through per key and period.
        period: Length of a period, in seconds.
        max_keys: Keys remembered; expired keys are dropped when it is reached,
            and all keys when none had expired.
        clock: Returns the current time in seconds; tests pass their own.
    """

    def __init__(
        self,
        limit: int = REPEAT_LIMIT,
        period: float = REPEAT_PERIOD,
        max_keys: int = 1000,
        clock: typing.Callable[[], float] = time.monotonic,
    ):
        super().__init__()
        self.limit = limit
        self.period = period
        self.max_keys = max_keys
        self.clock = clock
        self._lock = threading.Lock()
        # key -> [start of the period (clock seconds), records let through, records dropped]
        self._periods: typing.Dict[tuple, list] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True

        message = record.getMessage()
        key = (record.name, record.levelno, message)
        now = self.clock()
        with self._lock:
            current = self._periods.get(key)
            if current is not None and now - current[0] < self.period:
                if current[1] >= self.limit:
                    current[2] += 1
                    return False
                current[1] += 1
                return True

            dropped = current[2] if current is not None else 0
            if current is None and len(self._periods) >= self.max_keys:
                self._forget_expired(now)
            self._periods[key] = [now, 1, 0]

        if dropped:
            # The record may reach other handlers, which then show the count too.
            record.msg = f"{message} ({dropped} identical messages suppressed before this one)"
            record.args = None
        return True

    def _forget_expired(self, now: float) -> None:
        expired = [key for key, current in self._periods.items() if now - current[0] >= self.period]
        for key in expired or list(self._periods):
            del self._periods[key]


def without_tokens(value: typing.Any) -> typing.Any:
    """Return a copy of a JSON-like value without any ``token`` key, at any depth, for a debug log line."""
    if isinstance(value, dict):
        return {key: without_tokens(item) for key, item in value.items() if key != "token"}
    if isinstance(value, list):
        return [without_tokens(item) for item in value]
    return value
