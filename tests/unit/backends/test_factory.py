"""Backend selection by URL, and errors when a backend cannot be reached."""

import os
import socket
import subprocess
import sys

import pytest

from omnibot.backends import open_cache, open_queue
from omnibot.backends.redis_cache import RedisCache
from omnibot.backends.redis_queue import RedisQueue
from omnibot.backends.sqlite_cache import SqliteCache
from omnibot.backends.sqlite_queue import SqliteQueue
from omnibot.errors import BackendUnavailable


def unused_port():
    """Return a local TCP port that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize(
    "url",
    [
        None,  # QUEUE_URL unset
        "",  # QUEUE_URL set to an empty string
    ],
)
def test_default_queue_is_sqlite_in_data_dir(tmp_path, url):
    data_dir = tmp_path / "var" / "omnibot"

    queue = open_queue(url, str(data_dir))
    queue.put({"n": 1})
    # The put went to a spool file; the get imports it into the database.
    assert (data_dir / "queue.db-spool").is_dir()
    assert queue.get(timeout=1).body == {"n": 1}
    queue.close()

    assert isinstance(queue, SqliteQueue)
    assert queue.path == str(data_dir / "queue.db")
    assert (data_dir / "queue.db").is_file()


def test_default_cache_is_sqlite_in_data_dir(tmp_path):
    data_dir = tmp_path / "var"

    cache = open_cache(None, str(data_dir))
    cache.set("key", "value")
    cache.close()

    assert isinstance(cache, SqliteCache)
    assert cache.path == str(data_dir / "cache.db")


def test_sqlite_url_with_relative_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    queue = open_queue("sqlite:///state/queue.db", "unused")

    assert queue.path == str(tmp_path / "state" / "queue.db")
    assert (tmp_path / "state").is_dir()


def test_sqlite_url_with_absolute_path(tmp_path):
    path = tmp_path / "abs" / "cache.db"

    cache = open_cache(f"sqlite:///{path}", "unused")

    assert str(path).startswith("/")
    assert cache.path == str(path)


def test_queue_settings_reach_sqlite_queue(tmp_path):
    queue = open_queue(None, str(tmp_path), visibility_timeout=7, max_attempts=2, backoff_base=0.5, backoff_max=9)

    assert queue.policy.visibility_timeout == 7
    assert queue.policy.max_attempts == 2
    assert queue.policy.backoff_base == 0.5
    assert queue.policy.backoff_max == 9


@pytest.mark.parametrize(
    "url, reason",
    [
        ("sqlite://host/queue.db", "host part"),  # two slashes make "host" a host name
        ("sqlite:///", "path is missing"),  # no file name
        ("sqlite:///:memory:", "in-memory"),  # not shared between processes
        ("sqlite:///queue.db?mode=ro", "query"),  # options are not supported
    ],
)
def test_invalid_sqlite_url_raises(tmp_path, url, reason):
    with pytest.raises(ValueError, match=reason):
        open_queue(url, str(tmp_path))


@pytest.mark.parametrize("opener", [open_queue, open_cache])
def test_unknown_scheme_names_scheme_and_accepted_ones(tmp_path, opener):
    with pytest.raises(ValueError) as raised:
        opener("amqp://user:secret@broker:5672/", str(tmp_path))

    message = str(raised.value)
    assert "'amqp'" in message
    assert "sqlite:///" in message
    assert "redis://" in message
    assert "rediss://" in message
    assert "secret" not in message


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",  # plain TCP
        "rediss://127.0.0.1:6380/1",  # TLS
    ],
)
def test_redis_urls_select_redis(tmp_path, url):
    # Opening does not connect, so no server is needed.
    queue = open_queue(url, str(tmp_path), visibility_timeout=7)
    cache = open_cache(url, str(tmp_path))

    assert isinstance(queue, RedisQueue)
    assert queue.policy.visibility_timeout == 7
    assert queue.stream == "omnibot:{queue}:stream"
    assert isinstance(cache, RedisCache)
    assert cache.prefix == "omnibot:{cache}:"
    assert not os.listdir(tmp_path)


def test_redis_is_imported_only_for_redis_urls():
    code = "import sys, omnibot.backends; print('redis' in sys.modules)"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout

    assert output.strip() == "False"


@pytest.mark.parametrize(
    "operation",
    [
        pytest.param(lambda queue, cache: queue.put({"n": 1}), id="queue.put"),  # the request path
        pytest.param(lambda queue, cache: queue.get(timeout=0.1), id="queue.get"),  # the worker loop
        pytest.param(lambda queue, cache: queue.depth(), id="queue.depth"),  # health checks
        pytest.param(lambda queue, cache: cache.get("key"), id="cache.get"),  # the Slack data cache
        pytest.param(lambda queue, cache: cache.add("dedup:Ev1", "1", ttl=10), id="cache.add"),  # de-duplication
        pytest.param(lambda queue, cache: cache.lock("refresh", timeout=10).__enter__(), id="cache.lock"),  # watcher
    ],
)
def test_unreachable_redis_raises_backend_unavailable(tmp_path, operation):
    url = f"redis://:secret-password@127.0.0.1:{unused_port()}/0"
    queue = open_queue(url, str(tmp_path))
    cache = open_cache(url, str(tmp_path))

    with pytest.raises(BackendUnavailable) as raised:
        operation(queue, cache)

    assert "unavailable" in str(raised.value)
    assert "secret-password" not in str(raised.value)
    assert raised.value.__cause__ is not None
