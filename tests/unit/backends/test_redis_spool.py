"""The Redis queue with puts through spool files: forwarding exactly once, de-duplication, damaged files, outages.

The cases every queue backend shares run on the spool too (test_queue.py, "redis-spool").
"""

import json
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid

import pytest
import redis

from omnibot import backends
from omnibot.backends import FAIL_FAST_CLIENT
from omnibot.backends import redis_queue, redis_spool
from omnibot.backends.redis_connection import create_client
from omnibot.backends.redis_queue import RedisQueue
from omnibot.backends.spool_files import SpoolWriter, list_spool_files
from omnibot.backends.spool_host_lock import HostForwarderLock, held_by_another, seconds_since_beat
from omnibot.backends.spool_records import PendingPut
from omnibot.errors import BackendUnavailable
from tests.unit.backends.conftest import skip_or_fail

# Upper bound for waits on something that must happen; tests end as soon as it does.
PATIENCE = 20.0
LONG_TTL = 3600.0
LONG_LEASE = 60.0


@pytest.fixture
def spool_dir(tmp_path):
    return str(tmp_path / "queue-spool")


@pytest.fixture
def make_spooled(redis_url, redis_namespace, spool_dir):
    """Return a function that opens a spooling RedisQueue on the test's keys and spool directory."""
    opened = []

    def open_queue(url=None, **settings):
        client = create_client(url or redis_url, **settings.pop("client_settings", {}))
        queue = RedisQueue(
            client,
            name=redis_namespace,
            visibility_timeout=LONG_LEASE,
            block_interval=0.1,
            spool_directory=spool_dir,
            **settings,
        )
        opened.append(queue)
        return queue

    yield open_queue
    for queue in opened:
        queue.close()


@pytest.fixture
def redis_client(redis_url):
    client = create_client(redis_url)
    yield client
    client.close()


def collect(queue, count):
    """Get and ack messages until ``count`` arrived or PATIENCE passed; return their deliveries in order."""
    deliveries = []
    deadline = time.monotonic() + PATIENCE
    while len(deliveries) < count and time.monotonic() < deadline:
        delivery = queue.get(timeout=0.2)
        if delivery is not None:
            deliveries.append(delivery)
            queue.ack(delivery)
    return deliveries


def wait_until(condition, description):
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    pytest.fail(f"{description} did not happen within {PATIENCE} s")


def spool_line(message_id, body, claims=()):
    return PendingPut(message_id, 1.0e9, LONG_TTL, tuple(claims), json.dumps(body)).to_line() + b"\n"


def write_spool_file(directory, name, data):
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, name), "wb") as spool_file:
        spool_file.write(data)


def offset_keys(client, namespace):
    return list(client.scan_iter(match=f"*{{{namespace}}}:spool_offset:*"))


def test_put_spools_then_message_leased(make_spooled, spool_dir):
    queue = make_spooled()

    message_id = queue.put({"n": 1})

    assert message_id
    [size] = list_spool_files(spool_dir).values()
    assert size > 0
    [delivery] = collect(queue, 1)
    assert delivery.id == message_id
    assert delivery.body == {"n": 1}
    assert delivery.attempts == 1


def test_stats_count_lines_not_forwarded(make_spooled, spool_dir):
    write_spool_file(spool_dir, "4242-1-abc.spool", b"".join(spool_line(f"m{n}", {"n": n}) for n in range(3)))
    queue = make_spooled()

    # Nothing forwards yet: the thread starts at the first put or get.
    assert queue.stats()["ready"] == 3
    assert queue.depth() == 3
    assert [delivery.body["n"] for delivery in collect(queue, 3)] == [0, 1, 2]
    assert queue.depth() == 0


def test_two_forwarders_forward_each_line_once(make_spooled):
    writer_queue = make_spooled()
    other_queue = make_spooled()
    consumer = make_spooled()
    ids = []
    threads_count, puts_per_thread = 8, 500

    def put_many(thread_number):
        for number in range(puts_per_thread):
            ids.append(writer_queue.put({"thread": thread_number, "n": number}))

    # Both queues of this process run a forwarder thread of their own over the same files.
    other_queue.get(timeout=0)
    threads = [threading.Thread(target=put_many, args=(number,)) for number in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    leased = [delivery.id for delivery in collect(consumer, threads_count * puts_per_thread)]

    assert len(ids) == threads_count * puts_per_thread
    assert len(leased) == len(set(leased))
    assert sorted(leased) == sorted(ids)
    assert consumer.get(timeout=0.3) is None
    assert consumer.depth() == 0


def test_puts_of_one_thread_keep_their_order(make_spooled):
    queue = make_spooled()

    ids = [queue.put({"n": number}) for number in range(50)]

    assert [delivery.id for delivery in collect(queue, 50)] == ids


def test_duplicate_claims_are_dropped_at_forward(make_spooled, caplog):
    queue = make_spooled()
    repeat_body = {"kind": "event", "payload": {"event_id": "Ev1"}, "retry_num": "1", "retry_reason": "http_timeout"}

    with caplog.at_level(logging.INFO, logger="omnibot.backends.redis_spool"):
        first = queue.put_unless_claimed({"n": 1}, ["event:Ev1", "message:C1:1.0"], LONG_TTL)
        repeat = queue.put_unless_claimed(repeat_body, ["event:Ev1"], LONG_TTL)
        other = queue.put_unless_claimed({"n": 3}, ["event:Ev2"], LONG_TTL)
        by_message = queue.put_unless_claimed({"n": 4}, ["event:Ev3", "message:C1:1.0"], LONG_TTL)
        bodies = [delivery.body for delivery in collect(queue, 2)]
        assert queue.get(timeout=0.3) is None

    assert first
    assert repeat
    assert other
    assert by_message
    assert bodies == [{"n": 1}, {"n": 3}]
    assert f"ignored a duplicate delivery of event Ev1 (retry 1, reason http_timeout), message {repeat}" in caplog.text
    assert f"message {by_message}" in caplog.text


def test_exact_put_returns_none_for_spooled_duplicate(make_spooled):
    queue = make_spooled()

    first = queue.put_unless_claimed({"n": 1}, ["event:Ev1"], LONG_TTL)
    retry = queue.put_unless_claimed({"n": 2}, ["event:Ev1"], LONG_TTL, exact=True)
    fresh = queue.put_unless_claimed({"n": 3}, ["event:Ev2"], LONG_TTL, exact=True)

    assert first is not None
    assert retry is None
    assert fresh is not None
    assert [delivery.body for delivery in collect(queue, 2)] == [{"n": 1}, {"n": 3}]
    assert queue.get(timeout=0.3) is None


def test_claim_of_exact_put_drops_later_spooled_put(make_spooled):
    queue = make_spooled()

    assert queue.put_unless_claimed({"n": 1}, ["event:Ev1"], LONG_TTL, exact=True) is not None
    assert queue.put_unless_claimed({"n": 2}, ["event:Ev1"], LONG_TTL) is not None

    assert [delivery.body for delivery in collect(queue, 1)] == [{"n": 1}]
    assert queue.get(timeout=0.3) is None


def test_claim_outlives_late_forward(make_spooled, spool_dir):
    # Written before any forwarder runs, as a web process does while Redis is down.
    writer = SpoolWriter(spool_dir)
    writer.append(PendingPut("m1", time.time() - 10, 0.5, ("event:Ev1",), json.dumps({"n": 1})).to_line())
    writer.append(PendingPut("m2", time.time(), 0.5, ("event:Ev1",), json.dumps({"n": 2})).to_line())
    queue = make_spooled()

    try:
        assert [delivery.body for delivery in collect(queue, 1)] == [{"n": 1}]
        assert queue.get(timeout=0.3) is None
    finally:
        writer.close()


def test_unreadable_lines_go_to_dead_letters(make_spooled, spool_dir, caplog):
    not_an_object = spool_line("m2", {"n": 2}).replace(b'{"n": 2}', b"[2]")
    data = b"not a spool line\n" + b"also not one\n" + not_an_object + spool_line("m1", {"n": 1})
    write_spool_file(spool_dir, "4242-2-abc.spool", data)
    queue = make_spooled()

    with caplog.at_level(logging.ERROR, logger="omnibot.backends.redis_spool"):
        assert [delivery.body for delivery in collect(queue, 1)] == [{"n": 1}]

    letters = sorted(queue.dead_letters(), key=lambda letter: letter.id)
    assert [letter.id for letter in letters] == [
        "spool-4242-2-abc.spool-0",
        "spool-4242-2-abc.spool-17",
        "spool-4242-2-abc.spool-30",
    ]
    assert letters[0].body == {"unreadable_spool_line": "not a spool line"}
    assert letters[2].error == "unreadable spool line: the message body is not a JSON object"
    assert all(letter.error.startswith("unreadable spool line") for letter in letters)
    assert all(letter.attempts == 0 for letter in letters)
    assert "moved an unreadable line of spool file 4242-2-abc.spool at byte 0 to the dead letters" in caplog.text

    with pytest.raises(ValueError, match="is a spool line that could not be read"):
        queue.replay(letters[0].id)
    assert len(queue.dead_letters()) == 3


def test_torn_last_line_of_dead_writer_is_skipped(make_spooled, spool_dir, redis_client, redis_namespace, caplog):
    whole = spool_line("m1", {"n": 1})
    write_spool_file(spool_dir, "4242-3-abc.spool", whole + spool_line("m2", {"n": 2})[:20])
    queue = make_spooled()

    with caplog.at_level(logging.WARNING, logger="omnibot.backends.redis_spool"):
        assert [delivery.body for delivery in collect(queue, 1)] == [{"n": 1}]
        wait_until(lambda: list_spool_files(spool_dir) == {}, "deletion of the finished spool file")

    assert "skipped 20 bytes at the end of spool file 4242-3-abc.spool" in caplog.text
    wait_until(lambda: offset_keys(redis_client, redis_namespace) == [], "deletion of the offset key")
    assert queue.stats()["ready"] == 0
    assert queue.get(timeout=0.3) is None


def test_cleanup_deletes_only_finished_files(make_spooled, spool_dir, redis_client, redis_namespace):
    finished = SpoolWriter(spool_dir)
    finished.append(spool_line("m1", {"n": 1}).rstrip(b"\n"))
    finished.close()
    [finished_file] = list_spool_files(spool_dir)
    still_open = SpoolWriter(spool_dir)
    still_open.append(spool_line("m2", {"n": 2}).rstrip(b"\n"))
    [open_file] = [name for name in list_spool_files(spool_dir) if name != finished_file]
    queue = make_spooled()

    try:
        assert sorted(delivery.body["n"] for delivery in collect(queue, 2)) == [1, 2]
        wait_until(lambda: list(list_spool_files(spool_dir)) == [open_file], "deletion of the finished spool file")
        wait_until(
            lambda: [key.rsplit(":", 1)[1] for key in offset_keys(redis_client, redis_namespace)] == [open_file],
            "deletion of the finished file's offset key",
        )
        ttl = redis_client.ttl(offset_keys(redis_client, redis_namespace)[0])
        assert 0 < ttl <= 3 * 24 * 3600
    finally:
        still_open.close()


def test_close_forwards_and_deletes_own_files(make_spooled, spool_dir, redis_client, redis_namespace):
    writer = make_spooled()
    ids = [writer.put({"n": number}) for number in range(20)]

    writer.close()

    assert list_spool_files(spool_dir) == {}
    assert offset_keys(redis_client, redis_namespace) == []
    consumer = make_spooled()
    assert sorted(delivery.id for delivery in collect(consumer, 20)) == sorted(ids)


def test_backlog_forwarded_in_several_batches(make_spooled, spool_dir, monkeypatch):
    monkeypatch.setattr(redis_spool, "_MAX_BATCH_LINES", 7)
    monkeypatch.setattr(redis_spool, "_MAX_BATCH_BYTES", 256)
    write_spool_file(spool_dir, "4242-4-abc.spool", b"".join(spool_line(f"m{n}", {"n": n}) for n in range(40)))
    queue = make_spooled()

    assert queue.stats()["ready"] == 40
    assert [delivery.body["n"] for delivery in collect(queue, 40)] == list(range(40))
    assert queue.get(timeout=0.3) is None


def test_queue_without_spool_ignores_files(redis_url, redis_namespace, spool_dir):
    write_spool_file(spool_dir, "4242-5-abc.spool", spool_line("m1", {"n": 1}))
    queue = RedisQueue(create_client(redis_url), name=redis_namespace, block_interval=0.1)

    try:
        assert queue.get(timeout=0.3) is None
        assert queue.depth() == 0
    finally:
        queue.close()


def unused_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class OwnRedis:
    """A redis-server on a free port of 127.0.0.1, without persistence, that a test starts and stops by PID."""

    def __init__(self, directory):
        self.directory = directory
        self.port = unused_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = None

    def start(self):
        binary = shutil.which("redis-server")
        if binary is None:
            skip_or_fail("redis-server not found on PATH; install Redis to run the outage cases")
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self.directory],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = create_client(self.url, retries=0, socket_timeout=1.0, socket_connect_timeout=1.0)
        try:
            wait_until(lambda: _pings(client), f"redis-server on port {self.port} answering")
        finally:
            client.close()

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


def _pings(client):
    try:
        return client.ping()
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
        return False


@pytest.fixture
def own_redis(tmp_path):
    server = OwnRedis(str(tmp_path))
    yield server
    server.stop()


def test_puts_succeed_while_redis_down(make_spooled, own_redis, spool_dir, caplog):
    queue = make_spooled(own_redis.url, client_settings=FAIL_FAST_CLIENT)

    with caplog.at_level(logging.INFO, logger="omnibot.backends.redis_spool"):
        # Nothing listens on the port yet.
        ids = [queue.put({"n": number}) for number in range(10)]
        ids.append(queue.put_unless_claimed({"n": 10}, ["event:Ev1"], LONG_TTL))
        with pytest.raises(BackendUnavailable):
            queue.put_unless_claimed({"n": 11}, ["event:Ev2"], LONG_TTL, exact=True)
        assert sum(size for size in list_spool_files(spool_dir).values()) > 0
        wait_until(lambda: "unavailable" in caplog.text, "the outage being logged")

        own_redis.start()
        deliveries = collect(queue, 11)
        # The forwarder thread logs the end of the outage after its forward, which can be after the messages were leased.
        wait_until(lambda: "available again" in caplog.text, "the end of the outage being logged")

    assert [delivery.id for delivery in deliveries] == ids
    outage_errors = [
        record for record in caplog.records if record.levelno == logging.ERROR and "unavailable" in record.getMessage()
    ]
    assert len(outage_errors) == 1


def test_close_while_redis_down_keeps_lines(make_spooled, redis_url, redis_namespace, spool_dir, monkeypatch, caplog):
    monkeypatch.setattr(redis_spool, "_STOP_TIMEOUT", 0.5)
    queue = make_spooled(f"redis://127.0.0.1:{unused_port()}/0", client_settings=FAIL_FAST_CLIENT)
    ids = [queue.put({"n": number}) for number in range(5)]

    with caplog.at_level(logging.ERROR, logger="omnibot.backends.redis_spool"):
        queue.close()

    assert "stopped forwarding with 5 lines of this process still in spool files" in caplog.text
    consumer = make_spooled()
    assert [delivery.id for delivery in collect(consumer, 5)] == ids


def _put_and_die(redis_url, namespace, spool_dir, ids_path):
    queue = RedisQueue(create_client(redis_url), name=namespace, spool_directory=spool_dir)
    ids = [queue.put({"n": number}) for number in range(200)]
    with open(ids_path, "w", encoding="utf-8") as ids_file:
        ids_file.write("\n".join(ids))
    os.kill(os.getpid(), signal.SIGKILL)


def test_killed_writer_lines_forwarded(make_spooled, redis_url, redis_namespace, spool_dir, tmp_path):
    ids_path = str(tmp_path / "ids.txt")
    context = multiprocessing.get_context("fork")
    child = context.Process(target=_put_and_die, args=(redis_url, redis_namespace, spool_dir, ids_path))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == -signal.SIGKILL
    with open(ids_path, encoding="utf-8") as ids_file:
        ids = ids_file.read().split("\n")
    queue = make_spooled()

    leased = [delivery.id for delivery in collect(queue, len(ids))]

    assert len(leased) == len(set(leased))
    assert sorted(leased) == sorted(ids)
    wait_until(lambda: list_spool_files(spool_dir) == {}, "deletion of the killed writer's spool file")


def _forward_in_child(make_spooled_queue, id_path):
    queue = make_spooled_queue()
    # A put starts this process's forwarder, whose first pass takes every file of the directory.
    message_id = queue.put({"id": "child"})
    with open(id_path, "w", encoding="utf-8") as id_file:
        id_file.write(message_id)
    time.sleep(3)
    queue.close()


def test_two_processes_forward_lines_once(make_spooled, spool_dir, tmp_path):
    writer = SpoolWriter(spool_dir)
    ids = [f"m{number}" for number in range(2000)]
    for message_id in ids:
        writer.append(spool_line(message_id, {"id": message_id}).rstrip(b"\n"))
    writer.close()
    context = multiprocessing.get_context("fork")
    id_path = str(tmp_path / "child-id.txt")
    child = context.Process(target=_forward_in_child, args=(make_spooled, id_path))
    child.start()

    consumer = make_spooled()
    leased = [delivery.id for delivery in collect(consumer, len(ids) + 1)]
    child.join(timeout=60)

    assert child.exitcode == 0
    with open(id_path, encoding="utf-8") as id_file:
        ids.append(id_file.read())
    assert len(leased) == len(set(leased))
    assert sorted(leased) == sorted(ids)
    assert consumer.get(timeout=0.3) is None


def test_forward_on_redis_cluster(redis_cluster_url, redis_cluster_namespace, spool_dir):
    write_spool_file(spool_dir, "4242-6-abc.spool", b"not a spool line\n")
    queue = RedisQueue(
        create_client(redis_cluster_url),
        name=redis_cluster_namespace,
        visibility_timeout=LONG_LEASE,
        block_interval=0.1,
        spool_directory=spool_dir,
    )

    try:
        first = queue.put_unless_claimed({"n": 1}, ["event:Ev1", "message:C1:1.0"], LONG_TTL)
        queue.put_unless_claimed({"n": 2}, ["event:Ev1"], LONG_TTL)
        queue.put({"n": 3})
        assert queue.put_unless_claimed({"n": 4}, ["message:C1:1.0"], LONG_TTL, exact=True) is None
        deliveries = collect(queue, 2)
        assert queue.get(timeout=0.3) is None

        assert [delivery.body for delivery in deliveries] == [{"n": 1}, {"n": 3}]
        assert deliveries[0].id == first
        assert [letter.id for letter in queue.dead_letters()] == ["spool-4242-6-abc.spool-0"]
        assert queue.stats() == {"ready": 0, "leased": 0, "delayed": 0, "dead": 1}
    finally:
        queue.close()


def test_open_queue_with_spool_true_on_redis(redis_url, tmp_path, caplog):
    prefix = f"test-{uuid.uuid4().hex}"
    url = f"{redis_url}?prefix={prefix}"
    data_dir = str(tmp_path / "data")
    client = create_client(redis_url)

    try:
        with caplog.at_level(logging.INFO, logger="omnibot.backends"):
            queue = backends.open_queue(url, data_dir, spool=True, fail_fast=True)
        try:
            message_id = queue.put({"n": 1})
            assert list_spool_files(os.path.join(data_dir, "queue-spool"))
            assert [delivery.id for delivery in collect(queue, 1)] == [message_id]
        finally:
            queue.close()

        directory = os.path.join(os.path.abspath(data_dir), "queue-spool")
        assert f"key prefix {prefix}, puts through spool files in {directory}" in caplog.text
        assert "QUEUE_SPOOL applies" not in caplog.text
    finally:
        keys = list(client.scan_iter(match=f"{prefix}:*"))
        if keys:
            client.delete(*keys)
        client.close()


@pytest.mark.parametrize("spool", [None, False])
def test_open_queue_spool_off_on_redis(redis_url, tmp_path, spool):
    prefix = f"test-{uuid.uuid4().hex}"
    data_dir = str(tmp_path / "data")
    client = create_client(redis_url)

    try:
        queue = backends.open_queue(f"{redis_url}?prefix={prefix}", data_dir, spool=spool)
        try:
            queue.put({"n": 1})
            assert client.xlen(f"{prefix}:{{queue}}:stream") == 1
            assert not os.path.exists(os.path.join(data_dir, "queue-spool"))
        finally:
            queue.close()
    finally:
        keys = list(client.scan_iter(match=f"{prefix}:*"))
        if keys:
            client.delete(*keys)
        client.close()


def test_dlq_replay_rejects_unreadable_line(redis_url, tmp_path, monkeypatch, capsys):
    from omnibot.cli import main

    prefix = f"test-{uuid.uuid4().hex}"
    url = f"{redis_url}?prefix={prefix}"
    data_dir = str(tmp_path / "data")
    write_spool_file(backends.redis_spool_directory(data_dir), "4242-7-abc.spool", b"not a spool line\n")
    monkeypatch.setenv("QUEUE_URL", url)
    monkeypatch.setenv("OMNIBOT_DATA_DIR", data_dir)
    client = create_client(redis_url)
    queue = backends.open_queue(url, data_dir, spool=True)

    try:
        assert queue.get(timeout=0.3) is None
        wait_until(lambda: len(queue.dead_letters()) == 1, "the unreadable line becoming a dead letter")

        status = main(["dlq", "replay", "spool-4242-7-abc.spool-0"])
        err = capsys.readouterr().err

        assert status == 1
        assert "dead letter spool-4242-7-abc.spool-0 is a spool line that could not be read" in err
        assert [letter.id for letter in queue.dead_letters()] == ["spool-4242-7-abc.spool-0"]
    finally:
        queue.close()
        keys = list(client.scan_iter(match=f"{prefix}:*"))
        if keys:
            client.delete(*keys)
        client.close()


def test_event_route_queues_through_spool(redis_url, tmp_path):
    from omnibot.app import create_app
    from omnibot.config import load_config_text
    from omnibot.runtime import Runtime
    from omnibot.settings import Settings
    from tests.support import BASE_CONFIG, credentials_env, message_event, signed

    prefix = f"test-{uuid.uuid4().hex}"
    environ = credentials_env()
    data_dir = str(tmp_path / "data")
    settings = Settings(data_dir=data_dir, queue_url=f"{redis_url}?prefix={prefix}", queue_spool=True, environ=environ)
    runtime = Runtime(settings, load_config_text(BASE_CONFIG, environ=environ))
    client = create_app(runtime).test_client()
    raw, headers = signed(message_event("hello"))
    redis_client = create_client(redis_url)

    try:
        first = client.post("/api/v1/slack/event", data=raw, headers=headers)
        repeat = client.post("/api/v1/slack/event", data=raw, headers=dict(headers, **{"X-Slack-Retry-Num": "1"}))

        assert first.get_json() == {"status": "success"}
        assert repeat.get_json() == {"status": "success", "duplicate": True}
        assert list_spool_files(os.path.join(data_dir, "queue-spool"))
        deliveries = collect(runtime.queue, 1)
        assert [delivery.body["payload"]["event"]["text"] for delivery in deliveries] == ["hello"]
        assert runtime.queue.get(timeout=0.3) is None
    finally:
        runtime.close()
        keys = list(redis_client.scan_iter(match=f"{prefix}:*"))
        if keys:
            redis_client.delete(*keys)
        redis_client.close()


def clean_up_now(queue):
    """Run the cleanup of ``queue``'s forwarder in this thread, as its next full pass would."""
    forwarder = queue._forwarder
    state = forwarder._current()
    state.next_cleanup = 0.0
    with state.lock:
        forwarder._clean_up_due(state)


def test_cleanup_during_forward_adds_no_line_twice(make_spooled, spool_dir, redis_client, redis_namespace, monkeypatch):
    name = "4242-8-abc.spool"
    write_spool_file(spool_dir, name, b"")
    cleaner = make_spooled()
    late = make_spooled()
    # The late forwarder saw the file while it was empty, so it expects offset 0.
    assert late._forwarder.forward_waiting() == 0
    with open(os.path.join(spool_dir, name), "ab") as spool_file:
        spool_file.write(b"".join(spool_line(f"m{n}", {"n": n}) for n in range(3)))
    assert cleaner._forwarder.forward_waiting() == 3

    parse_lines = redis_spool._parse_lines
    cleanups = []

    def parse_then_clean_up(lines, start):
        # The late forwarder has read the lines; the cleaner's pass comes before its script.
        if not cleanups:
            cleanups.append(name)
            clean_up_now(cleaner)
        return parse_lines(lines, start)

    monkeypatch.setattr(redis_spool, "_parse_lines", parse_then_clean_up)
    late._forwarder.forward_waiting()
    monkeypatch.setattr(redis_spool, "_parse_lines", parse_lines)

    assert cleanups == [name]
    assert redis_client.xlen(late.stream) == 3
    clean_up_now(cleaner)
    assert list_spool_files(spool_dir) == {}
    assert offset_keys(redis_client, redis_namespace) == []
    assert redis_client.xlen(late.stream) == 3


def test_exact_put_fails_fast_during_outage(make_spooled, own_redis, monkeypatch):
    queue = make_spooled(own_redis.url, client_settings=FAIL_FAST_CLIENT)
    spooled = queue.put({"n": 1})
    state = queue._forwarder._current()
    wait_until(lambda: state.last_error is not None, "the forwarder's first failed attempt")
    forward = queue._forwarder._forward
    calls = []

    def counted_forward(*args, **kwargs):
        calls.append(args)
        return forward(*args, **kwargs)

    monkeypatch.setattr(queue._forwarder, "_forward", counted_forward)

    with pytest.raises(BackendUnavailable, match="the spool forwarder's last attempt failed"):
        queue.put_unless_claimed({"n": 2}, ["event:Ev2"], LONG_TTL, exact=True)
    # The exact put raised at once instead of waiting for the client's timeouts again.
    assert calls == []

    own_redis.start()
    wait_until(lambda: state.last_error is None, "the forwarder reaching Redis again")
    exact = queue.put_unless_claimed({"n": 2}, ["event:Ev2"], LONG_TTL, exact=True)
    assert [delivery.id for delivery in collect(queue, 2)] == [spooled, exact]


def _log_outage_in_child(queue, result_path):
    logged = threading.Event()

    class OutageHandler(logging.Handler):
        def emit(self, record):
            if "unavailable" in record.getMessage():
                logged.set()

    logging.getLogger("omnibot.backends.redis_spool").addHandler(OutageHandler(logging.ERROR))
    queue.put({"n": "child"})
    with open(result_path, "w", encoding="utf-8") as result_file:
        result_file.write("logged" if logged.wait(PATIENCE) else "not logged")


def test_child_logs_outage_after_fork(make_spooled, tmp_path, monkeypatch):
    monkeypatch.setattr(redis_spool, "_STOP_TIMEOUT", 0.5)
    queue = make_spooled(f"redis://127.0.0.1:{unused_port()}/0", client_settings=FAIL_FAST_CLIENT)
    queue.put({"n": "parent"})
    outage = queue._forwarder._current().outage
    result_path = str(tmp_path / "result.txt")
    context = multiprocessing.get_context("fork")

    # The parent's thread may be logging a failure at the instant of fork().
    with outage._lock:
        child = context.Process(target=_log_outage_in_child, args=(queue, result_path))
        child.start()
    child.join(timeout=PATIENCE + 30)

    with open(result_path, encoding="utf-8") as result_file:
        assert result_file.read() == "logged"


def test_failed_delete_keeps_offset_key(make_spooled, spool_dir, redis_client, redis_namespace, monkeypatch):
    name = "4242-9-abc.spool"
    write_spool_file(spool_dir, name, b"".join(spool_line(f"m{n}", {"n": n}) for n in range(2)))
    queue = make_spooled()
    assert queue._forwarder.forward_waiting() == 2
    remove = os.remove

    def fail_to_remove_spool_files(path, *args, **kwargs):
        if path.endswith(".spool"):
            raise PermissionError(13, "Permission denied", path)
        return remove(path, *args, **kwargs)

    monkeypatch.setattr(os, "remove", fail_to_remove_spool_files)
    clean_up_now(queue)
    monkeypatch.setattr(os, "remove", remove)

    assert list(list_spool_files(spool_dir)) == [name]
    assert len(offset_keys(redis_client, redis_namespace)) == 1
    # A forwarder that has not seen the file before reads its offset from Redis.
    other = make_spooled()
    assert other._forwarder.forward_waiting() == 0
    assert redis_client.xlen(queue.stream) == 2
    clean_up_now(queue)
    assert list_spool_files(spool_dir) == {}
    assert offset_keys(redis_client, redis_namespace) == []


def test_lost_offset_key_adds_no_line_again(make_spooled, redis_client, redis_namespace, caplog):
    queue = make_spooled()
    for number in range(3):
        queue.put({"n": number})
    assert [delivery.body["n"] for delivery in collect(queue, 3)] == [0, 1, 2]

    # What a Redis restart without persistence does to the offsets of files that are still open.
    [key] = offset_keys(redis_client, redis_namespace)
    redis_client.delete(key)
    with caplog.at_level(logging.WARNING, logger="omnibot.backends.redis_spool"):
        queue.put({"n": 3})
        assert [delivery.body["n"] for delivery in collect(queue, 1)] == [3]
        assert queue.get(timeout=0.5) is None

    assert "went back from" in caplog.text
    assert int(redis_client.get(key)) > 0


# -- the host's forwarder process -------------------------------------------------------


@pytest.fixture
def stream_reader(redis_url, redis_namespace):
    """A queue on the test's keys without a spool, which reads only what is in the stream."""
    queue = RedisQueue(create_client(redis_url), name=redis_namespace, visibility_timeout=LONG_LEASE, block_interval=0.1)
    yield queue
    queue.close()


class HostForwarder:
    """Runs ``forward_spool_for_host`` of a queue in a thread, as ``omnibot spool-forwarder`` does."""

    def __init__(self, queue):
        self.stopping = threading.Event()
        self.result = None
        self.thread = threading.Thread(target=self._run, args=(queue,), daemon=True)

    def _run(self, queue):
        self.result = queue.forward_spool_for_host(self.stopping)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.stopping.set()
        self.thread.join(PATIENCE)
        assert not self.thread.is_alive()
        return self.result


def test_host_forwarder_forwards_every_file_and_deletes_finished(make_spooled, spool_dir, stream_reader, redis_client, redis_namespace):
    for number in range(3):
        writer = SpoolWriter(spool_dir)
        writer.append(spool_line(f"m{number}", {"n": number}).rstrip(b"\n"))
        writer.close()
    forwarder = HostForwarder(make_spooled()).start()

    try:
        assert sorted(delivery.body["n"] for delivery in collect(stream_reader, 3)) == [0, 1, 2]
        wait_until(lambda: list_spool_files(spool_dir) == {}, "deletion of the forwarded files")
        wait_until(lambda: offset_keys(redis_client, redis_namespace) == [], "deletion of their offset keys")
    finally:
        assert forwarder.stop() is True


def test_web_thread_pauses_while_host_forwarder_runs(make_spooled, spool_dir, stream_reader, caplog):
    host = HostForwarder(make_spooled()).start()
    wait_until(lambda: os.path.exists(os.path.join(spool_dir, "forwarder.lock")), "the host forwarder's lock")
    web = make_spooled()

    with caplog.at_level(logging.INFO, logger="omnibot.backends.redis_spool"):
        ids = [web.put({"n": number}) for number in range(5)]
        assert sorted(delivery.id for delivery in collect(stream_reader, 5)) == sorted(ids)
        wait_until(lambda: f"the forwarder thread of process {os.getpid()} is paused" in caplog.text, "the web thread pausing")

        host.stop()
        later = web.put({"n": 5})
        [delivery] = collect(stream_reader, 1)

    assert delivery.id == later
    assert "(it stopped or died); the forwarder thread of process" in caplog.text


def test_exact_put_forwards_while_host_forwarder_holds_lock(make_spooled, spool_dir, stream_reader):
    lock = HostForwarderLock(spool_dir)
    assert lock.acquire(threading.Event())
    web = make_spooled()

    try:
        spooled = web.put_unless_claimed({"n": 1}, ["claim-a"], LONG_TTL)
        exact = web.put_unless_claimed({"n": 2}, ["claim-a"], LONG_TTL, exact=True)

        assert exact is None
        assert [delivery.id for delivery in collect(stream_reader, 1)] == [spooled]
    finally:
        lock.release()


def test_second_host_forwarder_waits_for_the_lock(make_spooled, spool_dir, caplog):
    lock = HostForwarderLock(spool_dir)
    assert lock.acquire(threading.Event())

    try:
        with caplog.at_level(logging.INFO, logger="omnibot.backends.spool_host_lock"):
            second = HostForwarder(make_spooled()).start()
            wait_until(lambda: "is taken by another process; waiting" in caplog.text, "the second forwarder's wait")
            assert second.stop() is False
    finally:
        lock.release()


def test_lock_held_by_another_is_seen(spool_dir):
    assert held_by_another(spool_dir) is False
    lock = HostForwarderLock(spool_dir)
    assert lock.acquire(threading.Event())
    try:
        assert held_by_another(spool_dir) is True
    finally:
        lock.release()
    assert held_by_another(spool_dir) is False


def test_web_thread_takes_over_from_stale_forwarder(make_spooled, spool_dir, stream_reader, caplog):
    lock = HostForwarderLock(spool_dir)
    assert lock.acquire(threading.Event())
    long_ago = time.time() - 600
    os.utime(lock.path, (long_ago, long_ago))
    web = make_spooled()

    try:
        with caplog.at_level(logging.INFO, logger="omnibot.backends.redis_spool"):
            message_id = web.put({"n": 1})
            [delivery] = collect(stream_reader, 1)
    finally:
        lock.release()

    assert delivery.id == message_id
    assert "has not forwarded for 600 s (stopped, hung or without CPU time)" in caplog.text
    assert "is paused" not in caplog.text


@pytest.mark.parametrize("redis_reachable", [True, False], ids=["idle", "redis-down"])
def test_host_forwarder_beats(make_spooled, spool_dir, redis_reachable):
    # On the unused port nothing listens, so every forward fails.
    url = None if redis_reachable else f"redis://127.0.0.1:{unused_port()}/0"
    forwarder = HostForwarder(make_spooled(url, client_settings=FAIL_FAST_CLIENT))
    write_spool_file(spool_dir, "4242-9-abc.spool", spool_line("m1", {"n": 1}))
    forwarder.start()
    lock_file = os.path.join(spool_dir, "forwarder.lock")
    wait_until(lambda: os.path.exists(lock_file), "the host forwarder's lock")
    long_ago = time.time() - 600

    try:
        os.utime(lock_file, (long_ago, long_ago))
        wait_until(lambda: seconds_since_beat(spool_dir) < 60, "a beat of the forwarder")
    finally:
        forwarder.stop()


def test_exact_put_over_budget_is_spooled(make_spooled, spool_dir, stream_reader, monkeypatch, caplog):
    monkeypatch.setattr(redis_queue, "EXACT_FORWARD_BUDGET", 0.0)
    lock = HostForwarderLock(spool_dir)
    assert lock.acquire(threading.Event())
    web = make_spooled()

    try:
        with caplog.at_level(logging.INFO):
            first = web.put_unless_claimed({"n": 1}, ["claim-b"], LONG_TTL)
            retry = web.put_unless_claimed({"n": 2}, ["claim-b"], LONG_TTL, exact=True)
    finally:
        lock.release()

    assert retry is not None
    assert f"spooling message {retry} like any put" in caplog.text
    assert [delivery.id for delivery in collect(stream_reader, 1)] == [first]
    assert stream_reader.get(timeout=0.5) is None


def test_paused_thread_ignores_its_old_failure(make_spooled, spool_dir, stream_reader, caplog):
    lock = HostForwarderLock(spool_dir)
    assert lock.acquire(threading.Event())
    web = make_spooled()

    try:
        with caplog.at_level(logging.INFO, logger="omnibot.backends.redis_spool"):
            web.start()
            wait_until(lambda: "is paused" in caplog.text, "the web thread pausing")
        # As if the thread had failed to reach Redis before the forwarder process took over.
        web._forwarder._current().last_error = BackendUnavailable("Redis was unreachable")
        message_id = web.put_unless_claimed({"n": 2}, ["claim-c"], LONG_TTL, exact=True)
    finally:
        lock.release()

    assert [delivery.id for delivery in collect(stream_reader, 1)] == [message_id]
