"""What a gunicorn web worker started with config/gunicorn.conf.py does before any request: it opens the queue and starts its background work."""

import json
import os
import uuid

import pytest

from omnibot.backends import open_queue
from omnibot.backends.spool_records import PendingPut
from omnibot.fake_slack import FakeSlack
from tests.integration.stack import ConfiguredStack
from tests.support import BASE_CONFIG, wait_until


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
