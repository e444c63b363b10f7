"""QUEUE_SPOOL=1 on Redis under gunicorn: a web worker killed with SIGKILL while events arrive loses no acknowledged event.

Uses the Redis at ``REDIS_URL`` (default ``redis://127.0.0.1:6379/0``)
with a key prefix of its own, deleted afterwards.
"""

import concurrent.futures
import os
import signal
import threading
import uuid

import pytest
import redis

from omnibot.backends.redis_connection import create_client, redact_url
from omnibot.fake_slack import FakeSlack
from tests.integration.stack import Stack
from tests.integration.test_spool_web_kill import HANDLERS, gunicorn_workers, post
from tests.support import BASE_CONFIG, wait_until

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
EVENTS = 400
KILL_AFTER = 120


@pytest.fixture
def redis_client():
    url = os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
    client = create_client(url, retries=0, socket_timeout=2.0, socket_connect_timeout=2.0)
    try:
        client.ping()
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        message = f"Redis is not answering at {redact_url(url)}; start redis-server or set REDIS_URL"
        if os.environ.get("OMNIBOT_REQUIRE_REDIS") == "1":
            pytest.fail(f"{message} (OMNIBOT_REQUIRE_REDIS=1 forbids skipping): {exc}")
        pytest.skip(message)
    client.url = url
    yield client
    client.close()


@pytest.fixture
def prefix(redis_client):
    prefix = f"test-{uuid.uuid4().hex}"
    yield prefix
    keys = list(redis_client.scan_iter(match=f"{prefix}:*"))
    if keys:
        redis_client.delete(*keys)


@pytest.fixture
def slack():
    fake = FakeSlack().start()
    yield fake
    fake.stop()


@pytest.fixture
def stack(slack, tmp_path, redis_client, prefix):
    stack = Stack(
        str(tmp_path),
        BASE_CONFIG + HANDLERS,
        slack.api_url,
        env={"QUEUE_SPOOL": "1"},
        workers=1,
        web_workers=2,
        queue_url=f"{redis_client.url}?prefix={prefix}",
    )
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


def test_killed_web_worker_loses_nothing(stack, redis_client, prefix):
    sent = threading.Semaphore(0)
    killed = []

    def kill_one_web_worker():
        for _ in range(KILL_AFTER):
            sent.acquire()
        victim = gunicorn_workers(stack.web.pid)[0]
        os.kill(victim, signal.SIGKILL)
        killed.append(victim)

    def post_and_count(number):
        try:
            return post(stack.url, number)
        finally:
            sent.release()

    killer = threading.Thread(target=kill_one_web_worker)
    killer.start()
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        acknowledged = {ts for ts in pool.map(post_and_count, range(EVENTS)) if ts}
    killer.join()

    assert killed
    assert len(acknowledged) >= EVENTS - 50

    def recorded():
        return [call["payload"]["ts"] for call in stack.calls("record")]

    wait_until(lambda: acknowledged <= set(recorded()), timeout=60)
    stack.settle(1)
    runs = recorded()
    assert sorted(ts for ts in runs if ts in acknowledged) == sorted(acknowledged)
    assert len(runs) == len(set(runs))

    # The killed process's files are forwarded to the end and deleted, since no process keeps them open.
    spool = os.path.join(stack.tmp_path, "data", "queue-spool")
    wait_until(lambda: not [name for name in os.listdir(spool) if name.startswith(f"{killed[0]}-")], timeout=10)
    wait_until(
        lambda: not [key for key in redis_client.scan_iter(match=f"{prefix}:*spool_offset:{killed[0]}-*")],
        timeout=10,
        message="deletion of the killed worker's offset keys",
    )
