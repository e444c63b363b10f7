"""Fixtures that run each backend test against SQLite, Redis and a Redis Cluster.

The Redis cases use ``REDIS_URL`` (default ``redis://127.0.0.1:6379/0``) and
are skipped when that server does not reply to PING. The Redis Cluster cases
start a cluster of three primaries once per test session, from
``redis-server`` and ``redis-cli`` on PATH, and are skipped when either is
missing. ``OMNIBOT_REQUIRE_REDIS=1`` turns both skips into failures. Each
test gets its own key namespace, deleted afterwards.
"""

import os
import shutil
import uuid

import pytest
import redis

from omnibot.backends.redis_cache import RedisCache
from omnibot.backends.redis_connection import create_client, redact_url
from omnibot.backends.redis_queue import RedisQueue
from omnibot.backends.sqlite_cache import SqliteCache
from omnibot.backends.sqlite_queue import SqliteQueue
from tests.unit.backends.local_cluster import LocalCluster

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"

# Short leases and backoffs keep the tests fast; tests that must not see a
# redelivery pass a long visibility_timeout. The Redis queue also gets a short
# block_interval, so it notices expired leases soon.
FAST_QUEUE_SETTINGS = {
    "visibility_timeout": 0.5,
    "max_attempts": 3,
    "backoff_base": 0.05,
    "backoff_max": 0.2,
}

# The params of the ``backend`` fixture, which test modules outside this
# directory import as well.
BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("redis", id="redis", marks=pytest.mark.redis),
]

# The fixtures that give the URL and the key namespace of each Redis backend.
REDIS_FIXTURES = {
    "redis": ("redis_url", "redis_namespace"),
    "redis-cluster": ("redis_cluster_url", "redis_cluster_namespace"),
    "redis-spool": ("redis_url", "redis_namespace"),
}


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "redis: runs against the Redis server at REDIS_URL (default redis://127.0.0.1:6379/0)",
    )
    config.addinivalue_line(
        "markers",
        "redis_cluster: runs against a local Redis Cluster that the tests start with redis-server and redis-cli",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_generate_tests(metafunc):
    """Run each test of this directory that uses ``backend`` on SQLite, Redis and Redis Cluster.

    Direct parametrization replaces the values of the ``backend`` fixture
    here only. Modules elsewhere that import the fixture keep SQLite and Redis,
    because they do not import the Redis Cluster fixtures. A module that sets
    ``WITH_SQLITE_SPOOL = True`` also runs on "sqlite-spool": the SQLite queue
    with puts through spool files. One that sets ``WITH_REDIS_SPOOL = True``
    also runs on "redis-spool": the Redis queue with puts through spool
    files, forwarded to the Redis at REDIS_URL.
    """
    # The mark is made here, because pytest_configure above registers it only
    # for runs that load this conftest.py, not for modules that import it.
    if "backend" in metafunc.fixturenames:
        cluster = pytest.param("redis-cluster", id="redis-cluster", marks=pytest.mark.redis_cluster)
        spool = [pytest.param("sqlite-spool", id="sqlite-spool")] if getattr(metafunc.module, "WITH_SQLITE_SPOOL", False) else []
        if getattr(metafunc.module, "WITH_REDIS_SPOOL", False):
            spool.append(pytest.param("redis-spool", id="redis-spool", marks=pytest.mark.redis))
        metafunc.parametrize("backend", [*BACKENDS, *spool, cluster])


def skip_or_fail(message, error=None):
    """Skip the test with ``message``, or fail it, with ``error`` appended, when OMNIBOT_REQUIRE_REDIS=1."""
    if os.environ.get("OMNIBOT_REQUIRE_REDIS") == "1":
        cause = f": {error}" if error is not None else ""
        pytest.fail(f"{message} (OMNIBOT_REQUIRE_REDIS=1 forbids skipping){cause}")
    pytest.skip(message)


@pytest.fixture(scope="session")
def redis_url():
    """Return the URL of a Redis server that replies to PING, or skip the test."""
    url = os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
    client = create_client(url, retries=0, socket_timeout=2.0, socket_connect_timeout=2.0)
    try:
        client.ping()
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        if url == DEFAULT_REDIS_URL:
            message = "Redis is not answering on 127.0.0.1:6379; start redis-server or set REDIS_URL"
        else:
            message = f"Redis is not answering at REDIS_URL={redact_url(url)}; start it or unset REDIS_URL"

        skip_or_fail(message, exc)
    finally:
        client.close()

    return url


@pytest.fixture(scope="session")
def redis_cluster_url(tmp_path_factory):
    """Start a local Redis Cluster of three primaries for the session and return its omnibot URL.

    The cluster runs without persistence in a temporary directory, and its
    servers are stopped by PID when the session ends.
    """
    binaries = {name: shutil.which(name) for name in ("redis-server", "redis-cli")}
    missing = [name for name, path in binaries.items() if path is None]
    if missing:
        skip_or_fail(f"{' and '.join(missing)} not found on PATH; install Redis to run the Redis Cluster cases")

    cluster = LocalCluster(binaries["redis-server"], binaries["redis-cli"], str(tmp_path_factory.mktemp("redis-cluster")))
    try:
        cluster.start()
        yield cluster.url
    finally:
        cluster.stop()


@pytest.fixture
def redis_namespace(redis_url):
    """Yield a unique hash-tag name for one test and delete every key that contains it afterwards."""
    yield from _namespace(redis_url)


@pytest.fixture
def redis_cluster_namespace(redis_cluster_url):
    """Yield a unique hash-tag name for one test on the cluster and delete its keys afterwards."""
    yield from _namespace(redis_cluster_url)


def _namespace(url):
    name = f"test-{uuid.uuid4().hex}"
    yield name

    # On a cluster, redis-py sends SCAN to every primary. One DEL can remove the keys, because they share a slot.
    client = create_client(url)
    try:
        keys = list(client.scan_iter(match=f"*{{{name}}}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture(params=BACKENDS)
def backend(request):
    """The backend under test: "sqlite" or "redis", and in this directory also "redis-cluster" and the spool variants."""
    return request.param


@pytest.fixture
def make_queue(backend, tmp_path, request):
    """Return a function that opens the test's queue with settings overriding FAST_QUEUE_SETTINGS.

    Every queue it opens shares the same storage, like separate worker
    processes do: one SQLite file, or one Redis stream. A process forked
    from the test may call it too.
    """
    opened = []

    if backend in ("sqlite", "sqlite-spool"):
        path = str(tmp_path / "queue.db")
        spool = {"spool_puts": True} if backend == "sqlite-spool" else {}

        def open_queue(**settings):
            queue = SqliteQueue(path, **{**FAST_QUEUE_SETTINGS, **spool, **settings})
            opened.append(queue)
            return queue

    else:
        url, name = _redis_target(backend, request)
        spool = {"spool_directory": str(tmp_path / "queue-spool")} if backend == "redis-spool" else {}

        def open_queue(**settings):
            queue = open_redis_queue(url, name, **{**spool, **settings})
            opened.append(queue)
            return queue

    yield open_queue

    for queue in opened:
        queue.close()


def open_redis_queue(url, name, **settings):
    """Open a RedisQueue with its own client on the keys ``name``, with settings overriding FAST_QUEUE_SETTINGS."""
    return RedisQueue(create_client(url), name=name, **{"block_interval": 0.1, **FAST_QUEUE_SETTINGS, **settings})


def _redis_target(backend, request):
    """Return the URL and the test's key namespace of a Redis backend."""
    url_fixture, namespace_fixture = REDIS_FIXTURES[backend]
    return request.getfixturevalue(url_fixture), request.getfixturevalue(namespace_fixture)


@pytest.fixture
def queue(make_queue):
    """A queue with FAST_QUEUE_SETTINGS."""
    return make_queue()


@pytest.fixture
def make_cache(backend, tmp_path, request):
    """Return a function that opens the test's cache; every cache it opens shares the same storage."""
    opened = []

    if backend == "sqlite":
        path = str(tmp_path / "cache.db")

        def open_cache():
            cache = SqliteCache(path)
            opened.append(cache)
            return cache

    else:
        url, name = _redis_target(backend, request)

        def open_cache():
            cache = RedisCache(create_client(url), prefix=f"omnibot:{{{name}}}:")
            opened.append(cache)
            return cache

    yield open_cache

    for cache in opened:
        cache.close()


@pytest.fixture
def cache(make_cache):
    """A cache with an empty namespace of its own."""
    return make_cache()
