"""Redis client construction and error translation shared by the Redis queue and cache."""

import contextlib
import typing
import urllib.parse

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from omnibot.errors import BackendUnavailable

REDIS_SCHEMES = ("redis", "rediss")


def create_client(
    url: str,
    *,
    socket_timeout: float = 5.0,
    socket_connect_timeout: float = 5.0,
    health_check_interval: int = 30,
    retries: int = 3,
    retry_backoff_base: float = 0.05,
    retry_backoff_cap: float = 1.0,
) -> redis.Redis:
    """Build a client for ``url`` (``redis://`` or ``rediss://``) without connecting yet.

    Replies are decoded to str. A command that fails with a connection error
    or a timeout is sent again up to ``retries`` times after an exponential
    backoff. A command can therefore run twice when only its reply was lost,
    which the at-least-once queue tolerates.

    Args:
        url: ``redis://[[user]:password@]host[:port][/db]``; ``rediss://`` uses TLS.
        socket_timeout: Seconds to wait for a reply; blocking reads must block for less.
        socket_connect_timeout: Seconds to wait for a TCP connection.
        health_check_interval: Seconds after which an idle pooled connection
            is checked with PING before it is used again.
        retries: Extra tries of a command after a connection error or timeout.
        retry_backoff_base: Base of redis-py's ExponentialBackoff: retry ``n``
            waits ``retry_backoff_base * 2 ** n`` seconds.
        retry_backoff_cap: Maximum seconds between two retries.

    Raises:
        ValueError: When ``url`` is not a Redis URL.
    """
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in REDIS_SCHEMES:
        raise ValueError(f"unsupported Redis URL scheme {scheme!r}; expected one of {', '.join(REDIS_SCHEMES)}")

    # NOTE: this is a single-node client. The keys carry hash tags for Redis
    # Cluster, but following Cluster redirects would need redis.cluster.RedisCluster,
    # which omnibot does not use or test.
    retry = Retry(ExponentialBackoff(cap=retry_backoff_cap, base=retry_backoff_base), retries)
    return redis.Redis.from_url(
        url,
        socket_timeout=socket_timeout,
        socket_connect_timeout=socket_connect_timeout,
        health_check_interval=health_check_interval,
        retry=retry,
        decode_responses=True,
    )


def redact_url(url: str) -> str:
    """Return ``url`` with its password replaced by ``***``, for logs and error messages."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url

    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port is not None else ""
    netloc = f"{user}:***@{host}{port}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def describe_client(client: redis.Redis) -> str:
    """Return ``host:port/db`` of a client's connection pool, which carries no password."""
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return f"{kwargs['path']}/{kwargs.get('db', 0)}"

    return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"


@contextlib.contextmanager
def translate_errors(location: str) -> typing.Iterator[None]:
    """Turn redis-py connection errors, timeouts and refusals to write into BackendUnavailable.

    Args:
        location: Where the server is, without a password, for the message.
    """
    try:
        yield
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        raise BackendUnavailable(f"Redis at {location} is unavailable: {exc}") from exc
    except redis.exceptions.ResponseError as exc:
        # A full Redis under maxmemory-policy noeviction refuses writes with
        # OOM, and a replica refuses them with READONLY; both pass once the
        # operator acts, so callers treat them as an outage, not a bug.
        message = str(exc)
        if message.startswith(("OOM", "READONLY", "LOADING", "MASTERDOWN")):
            raise BackendUnavailable(f"Redis at {location} refused the command: {message}") from exc
        raise
