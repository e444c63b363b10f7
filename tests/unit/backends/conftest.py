"""Fixtures that run each backend test against SQLite and against Redis.

The Redis cases use ``REDIS_URL`` (default ``redis://127.0.0.1:6379/0``) and
are skipped when that server does not reply to PING, unless
``OMNIBOT_REQUIRE_REDIS=1``, which turns the skip into a failure. Each test
gets its own key namespace, deleted afterwards.
"""

import os
import uuid

import pytest
import redis

from omnibot.backends.redis_cache import RedisCache
from omnibot.backends.redis_connection import create_client, redact_url
from omnibot.backends.redis_queue import RedisQueue
from omnibot.backends.sqlite_cache import SqliteCache
from omnibot.backends.sqlite_queue import SqliteQueue

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

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("redis", id="redis", marks=pytest.mark.redis),
]


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "redis: runs against the Redis server at REDIS_URL (default redis://127.0.0.1:6379/0)",
    )


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

        if os.environ.get("OMNIBOT_REQUIRE_REDIS") == "1":
            pytest.fail(f"{message} (OMNIBOT_REQUIRE_REDIS=1 forbids skipping): {exc}")
        pytest.skip(message)
    finally:
        client.close()

    return url


@pytest.fixture
def redis_namespace(redis_url):
    """Yield a unique hash-tag name for one test and delete every key that contains it afterwards."""
    name = f"test-{uuid.uuid4().hex}"
    yield name

    client = create_client(redis_url)
    try:
        keys = list(client.scan_iter(match=f"*{{{name}}}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture(params=BACKENDS)
def backend(request):
    """The backend under test: "sqlite" or "redis"."""
    return request.param


@pytest.fixture
def make_queue(backend, tmp_path, request):
    """Return a function that opens the test's queue with settings overriding FAST_QUEUE_SETTINGS.

    Every queue it opens shares the same storage, like separate worker
    processes do: one SQLite file, or one Redis stream. A process forked
    from the test may call it too.
    """
    opened = []

    if backend == "sqlite":
        path = str(tmp_path / "queue.db")

        def open_queue(**settings):
            queue = SqliteQueue(path, **{**FAST_QUEUE_SETTINGS, **settings})
            opened.append(queue)
            return queue

    else:
        url = request.getfixturevalue("redis_url")
        name = request.getfixturevalue("redis_namespace")

        def open_queue(**settings):
            settings = {"block_interval": 0.1, **FAST_QUEUE_SETTINGS, **settings}
            queue = RedisQueue(create_client(url), name=name, **settings)
            opened.append(queue)
            return queue

    yield open_queue

    for queue in opened:
        queue.close()


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
        url = request.getfixturevalue("redis_url")
        name = request.getfixturevalue("redis_namespace")

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
