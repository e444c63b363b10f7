"""Spool files under gunicorn: a web worker killed with SIGKILL while events arrive loses no acknowledged event.

Runs on the SQLite default and on Redis with ``QUEUE_SPOOL=1``. The Redis
run uses the Redis at ``REDIS_URL`` (default ``redis://127.0.0.1:6379/0``)
with a key prefix of its own, deleted afterwards.
"""

import concurrent.futures
import os
import signal
import threading
import uuid

import pytest
import requests

from omnibot.backends.redis_connection import create_client
from omnibot.fake_slack import FakeSlack
from tests.integration.stack import Stack
from tests.support import BASE_CONFIG, message_event, signed, wait_until

EVENTS = 400
KILL_AFTER = 120

HANDLERS = """
handlers:
  message_handlers:
    - match: "record"
      match_type: "command"
      bots: {"test-team": ["testbot"]}
      callbacks: [{module: "tests.recorders:record"}]
"""


@pytest.fixture
def slack():
    fake = FakeSlack().start()
    yield fake
    fake.stop()


@pytest.fixture
def redis_client(redis_url):
    client = create_client(redis_url)
    client.url = redis_url
    yield client
    client.close()


@pytest.fixture
def redis_prefix(redis_client):
    prefix = f"test-{uuid.uuid4().hex}"
    yield prefix
    keys = list(redis_client.scan_iter(match=f"{prefix}:*"))
    if keys:
        redis_client.delete(*keys)


@pytest.fixture(params=["sqlite", "redis"])
def backend(request):
    """The queue settings of each run: the SQLite default, or Redis with QUEUE_SPOOL=1 and its own key prefix."""
    if request.param == "sqlite":
        return {"name": "sqlite", "env": {}, "queue_url": None, "spool": "queue.db-spool"}
    client = request.getfixturevalue("redis_client")
    prefix = request.getfixturevalue("redis_prefix")
    return {
        "name": "redis",
        "env": {"QUEUE_SPOOL": "1"},
        "queue_url": f"{client.url}?prefix={prefix}",
        "spool": "queue-spool",
        "client": client,
        "prefix": prefix,
    }


@pytest.fixture
def stack(slack, tmp_path, backend):
    stack = Stack(
        str(tmp_path),
        BASE_CONFIG + HANDLERS,
        slack.api_url,
        env=backend["env"],
        workers=1,
        web_workers=2,
        queue_url=backend["queue_url"],
    )
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


def gunicorn_workers(master_pid):
    """Return the pids whose parent is the gunicorn master."""
    children = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == master_pid:
            children.append(int(entry))
    return children


def post(url, number):
    """POST one signed event; return its ts when the web tier responded with 200, else None."""
    ts = f"1796400000.{number:06d}"
    raw, headers = signed(message_event("<@U0BOT0001> record", ts=ts, event_id=f"EvKill{number}"))
    try:
        response = requests.post(url + "/api/v1/slack/event", data=raw, headers=headers, timeout=10)
    except requests.RequestException:
        return None
    return ts if response.status_code == 200 else None


def test_killed_web_worker_loses_no_acknowledged_event(stack, backend):
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

    # The killed process's files are read to the end and deleted, since no process keeps them open.
    spool = os.path.join(stack.tmp_path, "data", backend["spool"])
    wait_until(lambda: not [name for name in os.listdir(spool) if name.startswith(f"{killed[0]}-")], timeout=10)
    if backend["name"] == "redis":
        pattern = f"{backend['prefix']}:*spool_offset:{killed[0]}-*"
        wait_until(
            lambda: not list(backend["client"].scan_iter(match=pattern)),
            timeout=10,
            message="deletion of the killed worker's offset keys",
        )
