"""Redis client construction and error translation shared by the Redis queue and cache.

A Redis URL selects a single-node client (``redis.Redis``) or, with the query
parameter ``cluster=true``, a Redis Cluster client (``redis.cluster.RedisCluster``).
"""

import contextlib
import typing
import urllib.parse

import redis
from redis.backoff import ExponentialBackoff
from redis.cluster import RedisCluster
from redis.connection import parse_url
from redis.retry import Retry

from omnibot.errors import BackendUnavailable

REDIS_SCHEMES = ("redis", "rediss")

# The query parameter of a Redis URL that selects a Redis Cluster client.
CLUSTER_PARAMETER = "cluster"
_CLUSTER_VALUES = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}

# Maximum number of primaries named in a message about a cluster. Further ones are counted, not listed.
_MAX_NODES_DESCRIBED = 5

# Error codes of a Redis reply that mean the server rejects commands for now,
# until the operator or the cluster acts:
# - OOM: full under maxmemory-policy noeviction.
# - READONLY: a replica. MASTERDOWN: a replica that lost its primary.
# - LOADING: a server that loads its data at start.
# - CLUSTERDOWN: a hash slot has no primary. TRYAGAIN: a slot is being moved between nodes.
_REFUSAL_CODES = ("OOM", "READONLY", "LOADING", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN")

# Errors of redis-py's cluster client that mean no node could serve the command,
# after the client's own retries and topology refreshes.
_CLUSTER_OUTAGES = (
    redis.exceptions.ClusterError,
    redis.exceptions.SlotNotCoveredError,
    redis.exceptions.RedisClusterUnreachableError,
)

RedisClient = typing.Union[redis.Redis, RedisCluster]


def create_client(
    url: str,
    *,
    socket_timeout: float = 5.0,
    socket_connect_timeout: float = 5.0,
    health_check_interval: int = 30,
    retries: int = 3,
    retry_backoff_base: float = 0.05,
    retry_backoff_cap: float = 1.0,
) -> RedisClient:
    """Build a client for ``url`` (``redis://`` or ``rediss://``), a Redis Cluster client with ``?cluster=true``.

    Replies are decoded to str. A command that fails with a connection error
    or a timeout is sent again up to ``retries`` times after an exponential
    backoff. A command can therefore run twice when only its reply was lost,
    which the at-least-once queue tolerates.

    A single-node client connects on its first command. A cluster client
    connects at once, to read which node serves which hash slot. It then
    follows MOVED and ASK redirects, and reads the slot map again after a
    connection error.

    Args:
        url: ``redis://[[user]:password@]host[:port][/db]``; ``rediss://`` uses TLS.
            ``?cluster=true`` (or ``yes``, ``1``) selects Redis Cluster, with
            ``host:port`` one node of the cluster and the database 0. Other
            query parameters go to redis-py and override the arguments below.
        socket_timeout: Seconds to wait for a reply; blocking reads must block for less.
        socket_connect_timeout: Seconds to wait for a TCP connection.
        health_check_interval: Seconds after which an idle pooled connection
            is checked with PING before it is used again. redis-py's cluster
            client does not take this setting, so it applies to a single node only.
        retries: Extra tries of a command after a connection error or timeout.
            The cluster client also retries after CLUSTERDOWN and after a hash
            slot without a node.
        retry_backoff_base: Base of redis-py's ExponentialBackoff: retry ``n``
            waits ``retry_backoff_base * 2 ** n`` seconds.
        retry_backoff_cap: Maximum seconds between two retries.

    Raises:
        ValueError: When ``url`` is not a Redis URL, its ``cluster`` parameter
            is invalid, it selects a cluster with a database other than 0, or
            its node replies but is not in cluster mode.
        BackendUnavailable: When ``url`` selects a cluster and none of its
            nodes can be reached.
    """
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in REDIS_SCHEMES:
        raise ValueError(f"unsupported Redis URL scheme {scheme!r}; expected one of {', '.join(REDIS_SCHEMES)}")

    client_url, cluster = split_cluster_parameter(url)
    retry = Retry(ExponentialBackoff(cap=retry_backoff_cap, base=retry_backoff_base), retries)
    if cluster:
        return _create_cluster_client(
            client_url, retry=retry, socket_timeout=socket_timeout, socket_connect_timeout=socket_connect_timeout
        )

    return redis.Redis.from_url(
        client_url,
        socket_timeout=socket_timeout,
        socket_connect_timeout=socket_connect_timeout,
        health_check_interval=health_check_interval,
        retry=retry,
        decode_responses=True,
    )


def split_cluster_parameter(url: str) -> typing.Tuple[str, bool]:
    """Remove the ``cluster`` query parameter from a Redis URL.

    redis-py passes unknown query parameters to its connection class, which
    rejects them, so the parameter is taken out first.

    Returns:
        The URL without ``cluster``, and True when it selects Redis Cluster.

    Raises:
        ValueError: When ``cluster`` is given more than once or its value is
            not one of true, yes, 1, false, no or 0.
    """
    client_url, value = pop_query_parameter(url, CLUSTER_PARAMETER)
    if value is None:
        return url, False

    cluster = _CLUSTER_VALUES.get(value.lower())
    if cluster is None:
        raise ValueError(
            f"invalid value {value!r} of the {CLUSTER_PARAMETER} parameter in the Redis URL; "
            "use cluster=true for Redis Cluster or leave the parameter out for a single server"
        )
    return client_url, cluster


def pop_query_parameter(url: str, name: str) -> typing.Tuple[str, typing.Optional[str]]:
    """Remove the query parameter ``name`` from ``url``; return the URL without it and its value, or None.

    Raises:
        ValueError: When the parameter is given more than once.
    """
    parts = urllib.parse.urlsplit(url)
    parameters = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    values = [value for key, value in parameters if key == name]
    if not values:
        return url, None
    if len(values) > 1:
        raise ValueError(f"invalid Redis URL: the {name} parameter is given {len(values)} times")

    others = [(key, value) for key, value in parameters if key != name]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(others))), values[0]


def _create_cluster_client(
    url: str, *, retry: Retry, socket_timeout: float, socket_connect_timeout: float
) -> RedisCluster:
    location = redact_url(url)
    options = parse_url(url)
    if options.get("db", 0) != 0:
        raise ValueError(
            f"invalid Redis Cluster URL {location}: it selects database {options['db']}, "
            "but a cluster has only database 0; end the URL in /0 or leave the database out"
        )

    # require_full_coverage=False lets omnibot start while slots of other
    # applications have no node: the queue and the cache each live in one slot,
    # and the servers' cluster-require-full-coverage setting decides whether a
    # partly covered cluster serves commands.
    try:
        return RedisCluster.from_url(
            url,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_connect_timeout,
            retry=retry,
            require_full_coverage=False,
            decode_responses=True,
        )
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, *_CLUSTER_OUTAGES) as exc:
        raise BackendUnavailable(f"Redis Cluster at {location} is unavailable: {exc}") from exc
    except redis.exceptions.RedisClusterException as exc:
        # For example, the node answered but runs without cluster-enabled.
        raise ValueError(f"cannot use Redis Cluster at {location}: {exc}") from exc


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


def describe_client(client: RedisClient) -> str:
    """Return where a client connects, without a password: ``host:port/db``, or the primaries of a cluster.

    A cluster is described by the primaries it had when this was called, as
    ``cluster 10.0.0.1:6379, 10.0.0.2:6379, 10.0.0.3:6379``.
    """
    if isinstance(client, RedisCluster):
        names = sorted(node.name for node in client.get_primaries())
        listed = ", ".join(names[:_MAX_NODES_DESCRIBED])
        if len(names) > _MAX_NODES_DESCRIBED:
            listed += f" and {len(names) - _MAX_NODES_DESCRIBED} more"
        return f"cluster {listed}"

    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return f"{kwargs['path']}/{kwargs.get('db', 0)}"

    return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"


def socket_timeout_of(client: RedisClient) -> typing.Optional[float]:
    """Return the seconds a client waits for a reply, or None when it waits without limit."""
    if isinstance(client, RedisCluster):
        return client.nodes_manager.connection_kwargs.get("socket_timeout")
    return client.connection_pool.connection_kwargs.get("socket_timeout")


@contextlib.contextmanager
def translate_errors(location: str) -> typing.Iterator[None]:
    """Turn redis-py connection errors, timeouts, cluster outages and refusals to write into BackendUnavailable.

    Args:
        location: Where the server is, without a password, for the message.
    """
    try:
        yield
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, *_CLUSTER_OUTAGES) as exc:
        raise BackendUnavailable(f"Redis at {location} is unavailable: {exc}") from exc
    except redis.exceptions.ResponseError as exc:
        # Callers treat these refusals as an outage, not a bug. redis-py
        # removes a known error code from the message and keeps it in
        # status_code, so both places are checked.
        message = str(exc)
        code = getattr(exc, "status_code", None) or message.split(" ", 1)[0]
        if code in _REFUSAL_CODES:
            reply = message if message.startswith(code) else f"{code} {message}"
            raise BackendUnavailable(f"Redis at {location} refused the command: {reply}") from exc
        raise
