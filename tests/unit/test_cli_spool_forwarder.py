"""``omnibot spool-forwarder``: the process that forwards a web host's spool files to the Redis queue."""

import json
import os
import signal
import subprocess
import sys
import uuid

import pytest

from omnibot import backends
from omnibot.backends.redis_connection import create_client
from omnibot.backends.spool_records import PendingPut
from omnibot.cli import main
from tests.support import REPO, wait_until
from tests.unit.backends.conftest import redis_url  # noqa: F401 - the fixture skips without Redis


@pytest.mark.parametrize(
    "environment",
    [
        pytest.param({}, id="sqlite"),
        pytest.param({"QUEUE_URL": "redis://127.0.0.1:6379/0"}, id="redis-without-spool"),
    ],
)
def test_refuses_without_redis_spool(environment, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("QUEUE_URL", raising=False)
    monkeypatch.delenv("QUEUE_SPOOL", raising=False)
    monkeypatch.setenv("OMNIBOT_DATA_DIR", str(tmp_path / "data"))
    for name, value in environment.items():
        monkeypatch.setenv(name, value)

    assert main(["spool-forwarder"]) == 2

    assert "QUEUE_URL=redis://... and QUEUE_SPOOL=1" in capsys.readouterr().err


@pytest.mark.redis
def test_forwards_at_lower_priority_and_stops_on_sigterm(redis_url, tmp_path):  # noqa: F811 - the fixture
    prefix = f"test-{uuid.uuid4().hex}"
    url = f"{redis_url}?prefix={prefix}"
    data_dir = str(tmp_path / "data")
    spool = backends.redis_spool_directory(data_dir)
    os.makedirs(spool)
    line = PendingPut("left-behind", 1.0e9, 0.0, (), json.dumps({"n": 1})).to_line()
    with open(os.path.join(spool, "4242-1-0000000000000001-abcd0123.spool"), "wb") as spool_file:
        spool_file.write(line + b"\n")
    env = dict(os.environ, QUEUE_URL=url, QUEUE_SPOOL="1", OMNIBOT_DATA_DIR=data_dir, PYTHONPATH=REPO, LOG_FORMAT="text")
    log_path = tmp_path / "forwarder.log"
    reader = backends.open_queue(url, str(tmp_path / "reader"), spool=False)

    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "omnibot", "spool-forwarder"], env=env, stderr=log, stdout=log)
    try:
        wait_until(lambda: reader.depth() == 1, timeout=20, message="the spooled line in the stream")
        wait_until(lambda: os.listdir(spool) == ["forwarder.lock"], timeout=20, message="deletion of the spool file")
        assert os.getpriority(os.PRIO_PROCESS, process.pid) == os.getpriority(os.PRIO_PROCESS, 0) + 10

        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        client = create_client(redis_url)
        for key in client.scan_iter(match=f"{prefix}:*"):
            client.delete(key)
        client.close()
        reader.close()

    logs = log_path.read_text()
    assert "forwarding the spool files in" in logs
    assert f"omnibot spool-forwarder {process.pid} stopped" in logs


def test_rejects_invalid_queue_url(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("QUEUE_URL", "redis://127.0.0.1:6379/0?prefix=")
    monkeypatch.setenv("QUEUE_SPOOL", "1")
    monkeypatch.setenv("OMNIBOT_DATA_DIR", str(tmp_path / "data"))

    assert main(["spool-forwarder", "--nice", "0"]) == 2

    assert "invalid queue setting" in capsys.readouterr().err


# Started as the forwarder's parent: it starts the forwarder and exits at once, before the forwarder has started.
PARENT_SCRIPT = """
import os, subprocess, sys
with open(sys.argv[1], "ab") as log:
    child = subprocess.Popen(
        [sys.executable, "-m", "omnibot", "spool-forwarder", "--nice", "0", "--parent-pid", str(os.getpid())], stdout=log, stderr=log
    )
print(child.pid, flush=True)
"""


@pytest.mark.redis
def test_exits_with_its_parent(redis_url, tmp_path):  # noqa: F811 - the fixture
    prefix = f"test-{uuid.uuid4().hex}"
    env = dict(
        os.environ, QUEUE_URL=f"{redis_url}?prefix={prefix}", QUEUE_SPOOL="1", OMNIBOT_DATA_DIR=str(tmp_path / "data"),
        PYTHONPATH=REPO, LOG_FORMAT="text",
    )
    log_path = tmp_path / "forwarder.log"

    parent = subprocess.run([sys.executable, "-c", PARENT_SCRIPT, str(log_path)], env=env, capture_output=True, text=True, timeout=30, check=True)
    pid = int(parent.stdout.strip())

    try:
        wait_until(lambda: "exited; stopping" in log_path.read_text(), timeout=20, message="the forwarder noticing its parent's exit")
        wait_until(lambda: f"omnibot spool-forwarder {pid} stopped" in log_path.read_text(), timeout=20, message="the forwarder's stop")
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.mark.parametrize(
    "url, spool, expected",
    [
        ("redis://127.0.0.1:6379/0", True, True),
        ("REDISS://127.0.0.1:6379/0?cluster=true", True, True),
        ("redis://127.0.0.1:6379/0", None, False),
        ("redis://127.0.0.1:6379/0", False, False),
        (None, True, False),
        ("sqlite:///queue.db", True, False),
        ("not a url", True, False),
    ],
)
def test_redis_spool_in_use(url, spool, expected):
    assert backends.redis_spool_in_use(url, spool) is expected
