"""What gunicorn started with config/gunicorn.conf.py does before any request: each web worker opens the queue and starts its background work, and on Redis with spool files the master starts the host's spool forwarder."""

import json
import os
import re
import signal
import time
import uuid

import pytest
import requests

from omnibot.backends import open_queue
from omnibot.backends.spool_records import PendingPut
from omnibot.fake_slack import FakeSlack
from tests.integration.stack import ConfiguredStack
from tests.support import BASE_CONFIG, message_event, wait_until


@pytest.fixture
def slack():
    fake = FakeSlack().start()
    yield fake
    fake.stop()


def test_web_workers_name_queue_at_boot(slack, tmp_path):
    stack = ConfiguredStack(str(tmp_path), BASE_CONFIG, slack.api_url, workers=0, web_workers=2)
    try:
        stack.start()

        wait_until(lambda: stack.logs().count("Queue backend: SQLite file") >= 2, timeout=20)
    finally:
        stack.stop()


def test_boot_forwards_leftover_redis_spool(slack, tmp_path, redis_url):
    prefix = f"test-{uuid.uuid4().hex}"
    queue_url = f"{redis_url}?prefix={prefix}"
    spool = os.path.join(str(tmp_path), "data", "queue-spool")
    os.makedirs(spool)
    line = PendingPut("left-behind", 1.0e9, 0.0, (), json.dumps({"n": 1})).to_line()
    with open(os.path.join(spool, "4242-1-0000000000000001-abcd0123.spool"), "wb") as spool_file:
        spool_file.write(line + b"\n")

    stack = ConfiguredStack(str(tmp_path), BASE_CONFIG, slack.api_url, env={"QUEUE_SPOOL": "1"}, workers=0, web_workers=1, queue_url=queue_url)
    reader = open_queue(queue_url, str(tmp_path / "reader"), spool=False)
    try:
        stack.start()

        wait_until(lambda: reader.depth() == 1, timeout=20)
        wait_until(lambda: not os.listdir(spool), timeout=20)
        delivery = reader.get(timeout=5)
        assert delivery.id == "left-behind"
        assert delivery.body == {"n": 1}
    finally:
        stack.stop()
        for key in reader._client.scan_iter(match=f"{prefix}:*"):
            reader._client.delete(key)
        reader.close()


@pytest.fixture
def redis_spool_stack(slack, tmp_path, redis_url):
    """A stack on Redis with QUEUE_SPOOL=1 and two web workers, no omnibot worker, and a reader of the stream."""
    prefix = f"test-{uuid.uuid4().hex}"
    queue_url = f"{redis_url}?prefix={prefix}"
    stack = ConfiguredStack(str(tmp_path), BASE_CONFIG, slack.api_url, env={"QUEUE_SPOOL": "1"}, workers=0, web_workers=2, queue_url=queue_url)
    reader = open_queue(queue_url, str(tmp_path / "reader"), spool=False)
    try:
        yield stack, reader
    finally:
        stack.stop()
        for key in reader._client.scan_iter(match=f"{prefix}:*"):
            reader._client.delete(key)
        reader.close()


PAUSED = re.compile(r"the forwarder thread of process \d+ is paused")


def post_events(stack, count):
    start = time.time()
    for number in range(count):
        assert stack.post_event(message_event(f"event {number}", ts=f"{start + number / 1000:.6f}")).status_code == 200


def forwarder_pid(stack):
    found = re.search(r"started omnibot spool-forwarder (\d+)", stack.logs())
    return int(found.group(1)) if found else None


def test_web_workers_take_over_from_killed_spool_forwarder(redis_spool_stack):
    stack, reader = redis_spool_stack
    stack.start()
    pid = wait_until(lambda: forwarder_pid(stack), timeout=20, message="the master starting the spool forwarder")
    wait_until(lambda: len(PAUSED.findall(stack.logs())) == 2, timeout=20, message="both web workers pausing")

    post_events(stack, 20)
    wait_until(lambda: reader.depth() == 20, timeout=20, message="20 events in the stream")
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: stack.logs().count("(it stopped or died); the forwarder thread of process") == 2, timeout=20, message="both web workers taking over")
    post_events(stack, 10)

    wait_until(lambda: reader.depth() == 30, timeout=20, message="30 events in the stream")


def test_gunicorn_stops_its_spool_forwarder_after_reload(redis_spool_stack, tmp_path):
    stack, reader = redis_spool_stack
    stack.start()
    pid = wait_until(lambda: forwarder_pid(stack), timeout=20, message="the master starting the spool forwarder")
    wait_until(lambda: f"omnibot spool-forwarder {pid} started" in stack.logs(), timeout=20, message="the forwarder's start")
    # A SIGHUP reads config/gunicorn.conf.py again, so its module globals start empty.
    stack.web.send_signal(signal.SIGHUP)
    wait_until(lambda: len(re.findall(r"web worker \d+ started", stack.logs())) == 4, timeout=30, message="the reload's new web workers")
    wait_until(lambda: len(re.findall(r"web worker \d+ stopped", stack.logs())) == 2, timeout=30, message="the old web workers' exit")
    # Its kept-alive connection went to an old web worker, which closed it.
    stack.session = requests.Session()
    post_events(stack, 10)

    stack.stop()

    assert f"omnibot spool-forwarder {pid} stopped" in stack.logs()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert reader.depth() == 10
    spool = os.path.join(str(tmp_path), "data", "queue-spool")
    assert [name for name in os.listdir(spool) if name.endswith(".spool")] == []
