"""Logging set-up for omnibot's processes (never done at import).

``LOG_CONFIG_FILE`` names a YAML or JSON ``logging.config.dictConfig``;
without it, ``LOG_FORMAT`` picks ``text`` or ``json`` lines on stderr.
Fields passed as ``extra=`` (the event trace) appear in both formats.
"""

import datetime
import json
import logging
import logging.config
import os
import sys

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
)


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
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel((level or os.environ.get("LOG_LEVEL") or "INFO").upper())
