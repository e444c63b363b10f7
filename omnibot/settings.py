"""Process settings read from environment variables.

Nothing is read at import: :func:`Settings.from_env` is called by the app
factory and by the command line, so tests can build settings directly.
"""

import dataclasses
import os
import typing

DEFAULT_SLACK_API_URL = "https://slack.com/api/"
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
# Below the default 60 s visibility timeout, so a stuck callback fails its
# attempt before the queue hands the message to another worker.
DEFAULT_CALLBACK_TIMEOUT = 30.0


def _env_int(environ, name, default, aliases=()):
    for key in (name, *aliases):
        raw = environ.get(key)
        if raw not in (None, ""):
            try:
                return int(raw)
            except ValueError:
                raise ValueError(f"{key}={raw!r} is not an integer") from None
    return default


def _env_float(environ, name, default, aliases=()):
    for key in (name, *aliases):
        raw = environ.get(key)
        if raw not in (None, ""):
            try:
                return float(raw)
            except ValueError:
                raise ValueError(f"{key}={raw!r} is not a number") from None
    return default


def _env_flag(environ, name, default):
    raw = (environ.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name}={raw!r} is not one of 1, 0, true, false, yes, no, on, off")


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything a process needs besides the YAML config.

    Attributes:
        config_file: Path of the YAML config (``CONFIG_FILE``).
        data_dir: Folder of the embedded SQLite files (``OMNIBOT_DATA_DIR``).
        queue_url: ``QUEUE_URL``; None selects SQLite under ``data_dir``.
        cache_url: ``CACHE_URL``; None selects SQLite under ``data_dir``.
        slack_api_url: Base URL of the Slack Web API (``SLACK_API_URL``).
        visibility_timeout: Seconds a leased message stays hidden from other workers.
        max_attempts: Deliveries before a message is dead-lettered.
        worker_concurrency: Threads of ``omnibot worker``.
        max_body_bytes: Largest request body accepted on the Slack routes.
        dedup_ttl: Seconds a seen Slack event id is remembered.
        callback_timeout: Seconds a worker waits for one queued callback
            (``CALLBACK_TIMEOUT``); 0 waits without a limit.
        queue_spool: Append the puts of this process to spool files in front
            of the queue (``QUEUE_SPOOL``). None, when the variable is unset,
            turns the spool on for SQLite and off for Redis; see docs/backends.rst.
        post_metadata: Mark each ``chat.postMessage`` of a queued message with
            message metadata so a redelivery does not post it twice
            (``OMNIBOT_POST_METADATA``, on by default, off with ``0``).
        environ: The environment the credentials are read from.
    """

    config_file: typing.Optional[str] = None
    data_dir: str = "./var"
    queue_url: typing.Optional[str] = None
    cache_url: typing.Optional[str] = None
    slack_api_url: str = DEFAULT_SLACK_API_URL
    visibility_timeout: float = 60.0
    max_attempts: int = 5
    retry_backoff_base: float = 1.0
    worker_concurrency: int = 10
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    dedup_ttl: float = 3600.0
    callback_timeout: float = DEFAULT_CALLBACK_TIMEOUT
    queue_spool: typing.Optional[bool] = None
    post_metadata: bool = True
    statsd_host: typing.Optional[str] = None
    statsd_port: int = 8125
    statsd_prefix: str = "omnibot"
    environ: typing.Mapping[str, str] = dataclasses.field(default_factory=dict, repr=False)

    @classmethod
    def from_env(cls, environ=None, **overrides):
        """Build settings from ``environ`` (default ``os.environ``); ``overrides`` win.

        Raises:
            ValueError: A numeric variable does not hold a number.
        """
        environ = dict(os.environ if environ is None else environ)
        values = dict(
            config_file=environ.get("CONFIG_FILE") or None,
            data_dir=environ.get("OMNIBOT_DATA_DIR") or "./var",
            queue_url=environ.get("QUEUE_URL") or None,
            cache_url=environ.get("CACHE_URL") or None,
            slack_api_url=environ.get("SLACK_API_URL") or DEFAULT_SLACK_API_URL,
            visibility_timeout=_env_float(
                environ, "QUEUE_VISIBILITY_TIMEOUT", 60.0, aliases=("SQS_VISIBILITY_TIMEOUT",)
            ),
            max_attempts=_env_int(environ, "QUEUE_MAX_ATTEMPTS", 5),
            retry_backoff_base=_env_float(environ, "QUEUE_RETRY_BACKOFF", 1.0),
            worker_concurrency=_env_int(environ, "WEBHOOK_WORKER_CONCURRENCY", 10),
            max_body_bytes=_env_int(environ, "MAX_REQUEST_BODY_BYTES", DEFAULT_MAX_BODY_BYTES),
            dedup_ttl=_env_float(environ, "DEDUP_TTL", 3600.0),
            callback_timeout=_env_float(environ, "CALLBACK_TIMEOUT", DEFAULT_CALLBACK_TIMEOUT),
            queue_spool=_env_flag(environ, "QUEUE_SPOOL", None),
            post_metadata=_env_flag(environ, "OMNIBOT_POST_METADATA", True),
            statsd_host=environ.get("STATSD_HOST") or None,
            statsd_port=_env_int(environ, "STATSD_PORT", 8125),
            statsd_prefix=environ.get("STATSD_PREFIX") or "omnibot",
            environ=environ,
        )
        values.update({key: value for key, value in overrides.items() if value is not None})
        return cls(**values)
