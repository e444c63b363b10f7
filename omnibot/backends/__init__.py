"""Queue and cache backends, selected by URL (``sqlite:///path``, ``redis://host:port/db`` or ``redis://host:port/0?cluster=true``).

The Redis modules are imported only when a Redis URL is given, so the
embedded SQLite default works without touching redis-py.
"""

import logging
import os
import re
import typing
import urllib.parse

from omnibot.backends.base import Cache, Queue
from omnibot.backends.sqlite_cache import SqliteCache
from omnibot.backends.sqlite_queue import SqliteQueue, spool_directory

logger = logging.getLogger(__name__)

_SQLITE_SCHEME = "sqlite"
_REDIS_SCHEMES = ("redis", "rediss")
_ACCEPTED_FORMS = (
    "sqlite:///relative/path.db, sqlite:////absolute/path.db, redis://host:port/db or rediss://host:port/db, "
    "and redis://host:port/0?cluster=true or rediss://host:port/0?cluster=true for Redis Cluster"
)

# The query parameter of a Redis URL that replaces ``omnibot`` at the start of every key,
# so several deployments or test runs can share one Redis database.
REDIS_PREFIX_PARAMETER = "prefix"
DEFAULT_REDIS_PREFIX = "omnibot"

# Braces are excluded because they would change the keys' Redis Cluster hash tags.
_REDIS_PREFIX_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}")


# Redis client settings of a web process: a hung or unreachable Redis must
# turn into a 503 well within Slack's 3-second limit (about 1 s per command
# plus one retry), so that Slack retries the delivery later.
FAIL_FAST_CLIENT = {"socket_timeout": 0.8, "socket_connect_timeout": 0.5, "retries": 1}
FAIL_FAST_BLOCK_INTERVAL = 0.5

# The same for Redis Cluster, whose client also reconnects and reads the slot
# map after a timeout, each step waiting for socket_timeout. A put whose
# primary hung took 5.1 s with the settings above, 2.7 s with a 0.4 s timeout
# and one retry, and 1.5 s with these (measured with redis-py 8.2).
FAIL_FAST_CLUSTER_CLIENT = {"socket_timeout": 0.5, "socket_connect_timeout": 0.3, "retries": 0}
FAIL_FAST_CLUSTER_BLOCK_INTERVAL = 0.25


def open_queue(
    url: typing.Optional[str],
    data_dir: str,
    *,
    visibility_timeout: float = 60,
    max_attempts: int = 5,
    backoff_base: float = 1.0,
    backoff_max: float = 300.0,
    fail_fast: bool = False,
    spool: typing.Optional[bool] = None,
) -> Queue:
    """Open the work queue named by ``url`` (the ``QUEUE_URL`` setting).

    Args:
        url: None or "" for the SQLite file ``<data_dir>/queue.db``,
            ``sqlite:///relative.db`` (relative to the working directory),
            ``sqlite:////absolute/path.db``, ``redis://host:port/db`` or ``rediss://...``.
            A Redis URL may have the query parameter ``cluster=true`` to use
            Redis Cluster, with ``host:port`` one of its nodes and the database 0,
            and ``prefix=NAME`` to start every key with ``NAME`` instead of
            ``omnibot``. Its other query parameters go to redis-py.
        data_dir: Directory of the default SQLite file; created when missing.
        visibility_timeout: Seconds a leased message stays invisible to other workers.
        max_attempts: Deliveries after which a failed message is dead-lettered.
        backoff_base: Delay in seconds before the second delivery of a failed message.
        backoff_max: Upper bound in seconds of the delay between deliveries.
        fail_fast: Use short Redis timeouts and one retry, for the web
            process, which must answer Slack within 3 seconds even when
            Redis hangs.
        spool: For SQLite, append puts to spool files in
            ``<database file>-spool`` (:mod:`omnibot.backends.sqlite_spool`).
            For Redis, append puts to spool files in ``<data_dir>/queue-spool``
            and forward them to Redis from a thread of each process
            (:mod:`omnibot.backends.redis_spool`).
            None turns the spool on for SQLite and off for Redis.

    Raises:
        ValueError: When the URL scheme or a setting is not supported.
        BackendUnavailable: When the URL selects Redis Cluster and none of its
            nodes can be reached. Opening any other backend does not connect.
    """
    settings = dict(
        visibility_timeout=visibility_timeout,
        max_attempts=max_attempts,
        backoff_base=backoff_base,
        backoff_max=backoff_max,
    )
    scheme = _scheme("queue", url)

    if scheme == _SQLITE_SCHEME:
        path = _sqlite_path(url, data_dir, "queue.db")
        spool = True if spool is None else spool
        if spool:
            logger.info("Queue backend: SQLite file %s, puts through spool files in %s", path, spool_directory(path))
        else:
            logger.info("Queue backend: SQLite file %s, importing any spool files in %s", path, spool_directory(path))
        return SqliteQueue(path, spool_puts=spool, **settings)

    from omnibot.backends.redis_connection import create_client
    from omnibot.backends.redis_queue import RedisQueue

    client_url, prefix = _split_redis_prefix(url)
    # Only an explicit True turns the spool on for Redis.
    if spool is True:
        directory = redis_spool_directory(data_dir)
        settings["spool_directory"] = directory
        logger.info(
            "Queue backend: %s, key prefix %s, puts through spool files in %s",
            _describe_redis_url(client_url),
            prefix,
            directory,
        )
    else:
        logger.info("Queue backend: %s, key prefix %s", _describe_redis_url(client_url), prefix)
    if fail_fast:
        client_settings, block_interval = _fail_fast_settings(client_url)
        client = create_client(client_url, **client_settings)
        return RedisQueue(client, key_prefix=prefix, block_interval=block_interval, **settings)
    return RedisQueue(create_client(client_url), key_prefix=prefix, **settings)


def redis_spool_in_use(url: typing.Optional[str], spool: typing.Optional[bool]) -> bool:
    """Return True when ``open_queue(url, ..., spool=spool)`` opens a Redis queue whose puts go through spool files.

    That is the queue that ``omnibot spool-forwarder`` serves. An invalid URL gives False.
    """
    return spool is True and bool(url) and urllib.parse.urlsplit(url).scheme.lower() in _REDIS_SCHEMES


def redis_spool_directory(data_dir: str) -> str:
    """Return the spool directory of a Redis queue with ``QUEUE_SPOOL=1``: ``<data_dir>/queue-spool``, absolute."""
    return os.path.abspath(os.path.join(data_dir, "queue-spool"))


def open_cache(url: typing.Optional[str], data_dir: str, *, fail_fast: bool = False) -> Cache:
    """Open the cache named by ``url`` (the ``CACHE_URL`` setting).

    Args:
        url: None or "" for the SQLite file ``<data_dir>/cache.db``; otherwise
            a URL of the forms :func:`open_queue` accepts.
        data_dir: Directory of the default SQLite file; created when missing.
        fail_fast: Short Redis timeouts, as for :func:`open_queue`.

    Raises:
        ValueError: When the URL scheme is not supported.
        BackendUnavailable: When the URL selects Redis Cluster and none of its
            nodes can be reached.
    """
    scheme = _scheme("cache", url)

    if scheme == _SQLITE_SCHEME:
        path = _sqlite_path(url, data_dir, "cache.db")
        logger.info("Cache backend: SQLite file %s", path)
        return SqliteCache(path)

    from omnibot.backends.redis_cache import RedisCache
    from omnibot.backends.redis_connection import create_client

    client_url, prefix = _split_redis_prefix(url)
    logger.info("Cache backend: %s, key prefix %s", _describe_redis_url(client_url), prefix)
    client = create_client(client_url, **_fail_fast_settings(client_url)[0]) if fail_fast else create_client(client_url)
    return RedisCache(client, prefix=f"{prefix}:{{cache}}:")


def _fail_fast_settings(client_url: str) -> typing.Tuple[dict, float]:
    """Return the fail-fast client settings and block interval for a single Redis or a cluster."""
    from omnibot.backends.redis_connection import split_cluster_parameter

    if split_cluster_parameter(client_url)[1]:
        return FAIL_FAST_CLUSTER_CLIENT, FAIL_FAST_CLUSTER_BLOCK_INTERVAL
    return FAIL_FAST_CLIENT, FAIL_FAST_BLOCK_INTERVAL


def _split_redis_prefix(url: str) -> typing.Tuple[str, str]:
    """Remove the ``prefix`` query parameter from a Redis URL.

    redis-py passes unknown query parameters to its connection class, which
    rejects them, so omnibot's own parameter is taken out first.

    Returns:
        The URL without ``prefix``, and the prefix (``omnibot`` when absent).

    Raises:
        ValueError: When ``prefix`` is given more than once or is not 1 to 100
            letters, digits, ``_``, ``.``, ``:`` or ``-`` starting with a letter or digit.
    """
    from omnibot.backends.redis_connection import pop_query_parameter

    client_url, prefix = pop_query_parameter(url, REDIS_PREFIX_PARAMETER)
    if prefix is None:
        return url, DEFAULT_REDIS_PREFIX
    if not _REDIS_PREFIX_PATTERN.fullmatch(prefix):
        raise ValueError(
            f"invalid Redis key prefix {prefix!r} in the URL: use 1 to 100 letters, digits, "
            "'_', '.', ':' or '-', starting with a letter or digit"
        )
    return client_url, prefix


def _describe_redis_url(url: str) -> str:
    """Return "Redis at URL" or "Redis Cluster at URL", with the password replaced by ``***``.

    Raises:
        ValueError: When the ``cluster`` parameter is invalid.
    """
    from omnibot.backends.redis_connection import redact_url, split_cluster_parameter

    client_url, cluster = split_cluster_parameter(url)
    return f"{'Redis Cluster' if cluster else 'Redis'} at {redact_url(client_url)}"


def _scheme(kind: str, url: typing.Optional[str]) -> str:
    if not url:
        return _SQLITE_SCHEME

    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme != _SQLITE_SCHEME and scheme not in _REDIS_SCHEMES:
        # Only the scheme is shown, because the rest of the URL may contain a password.
        raise ValueError(f"unsupported {kind} URL scheme {scheme!r}; use {_ACCEPTED_FORMS}")

    return scheme


def sqlite_queue_path(url: typing.Optional[str], data_dir: str) -> typing.Optional[str]:
    """Return the SQLite file ``open_queue(url, data_dir)`` would use, or None for a Redis URL.

    Unlike :func:`open_queue`, this creates nothing, so tools can check that
    a queue exists before opening it.
    """
    if _scheme("queue", url) != _SQLITE_SCHEME:
        return None
    return os.path.abspath(os.path.join(data_dir, "queue.db") if not url else _path_of_sqlite_url(url))


def _sqlite_path(url: typing.Optional[str], data_dir: str, default_name: str) -> str:
    """Return the database file of a sqlite URL and create its directory.

    As in SQLAlchemy, the path is what follows ``sqlite:///``: ``sqlite:///q.db``
    is relative to the working directory and ``sqlite:////var/q.db`` is absolute.
    """
    if not url:
        path = os.path.join(data_dir, default_name)
    else:
        path = _path_of_sqlite_url(url)

    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    return os.path.abspath(path)


def _path_of_sqlite_url(url: str) -> str:
    parts = urllib.parse.urlsplit(url)

    if parts.netloc:
        raise ValueError(
            f"invalid SQLite URL {url!r}: it has a host part {parts.netloc!r}; "
            "write sqlite:///relative/path.db or sqlite:////absolute/path.db"
        )

    if parts.query or parts.fragment:
        raise ValueError(f"invalid SQLite URL {url!r}: query strings and fragments are not supported")

    path = urllib.parse.unquote(parts.path[1:])
    if not path:
        raise ValueError(f"invalid SQLite URL {url!r}: the file path is missing")

    if path == ":memory:":
        raise ValueError(
            f"invalid SQLite URL {url!r}: an in-memory database is private to one connection, "
            "so workers and web processes could not share it; give a file path"
        )

    return path
