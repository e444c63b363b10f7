"""When the Redis queue moves due retries and scans for expired leases: the schedule alone, then on Redis.

A busy ``get`` skips both steps. These tests therefore keep the stream
busy and check that a retry and an expired lease still reach a worker
within the bounds that docs/backends.rst states. A retry moves at most
``promote_interval`` (0.5 s) after it is due, and a lease is taken over at
most ``claim_interval`` (1 s) after it expired. The Redis cases run on the
server at ``REDIS_URL`` and on the local Redis Cluster (see conftest.py).
"""

import math
import multiprocessing
import threading
import time

import pytest

from omnibot.backends.redis_connection import create_client
from omnibot.backends.redis_queue import RedisQueue
from omnibot.backends.redis_queue_schedule import MaintenanceSchedule
from tests.support import FakeClock
from tests.unit.backends.conftest import _redis_target, open_redis_queue

# Upper bound for waits on something that must happen. Tests end as soon as it happens.
PATIENCE = 10.0

# Long enough that no lease expires and no interval passes while a test runs.
LONG = 60.0

# Added to each stated bound, because other processes on a loaded 2-core
# machine can delay any step of a test by some hundred milliseconds.
TOLERANCE = 0.5


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def schedule(clock):
    return MaintenanceSchedule(promote_interval=0.5, claim_interval=1.0, clock=clock)


def test_schedule_starts_with_both_steps_due(schedule):
    assert schedule.promote_due()
    assert schedule.claim_due()
    assert schedule.seconds_until_retry() == math.inf


def test_promote_waits_for_interval_without_retries(schedule, clock):
    schedule.record_promote(-1)

    assert not schedule.promote_due()
    clock.advance(0.49)
    assert not schedule.promote_due()
    clock.advance(0.01)
    assert schedule.promote_due()


def test_promote_due_at_earlier_retry(schedule, clock):
    schedule.record_promote(0.2)

    assert schedule.seconds_until_retry() == pytest.approx(0.2)
    clock.advance(0.19)
    assert not schedule.promote_due()
    clock.advance(0.01)
    assert schedule.promote_due()
    assert schedule.seconds_until_retry() == 0.0


def test_promote_interval_caps_later_retry(schedule, clock):
    schedule.record_promote(30.0)

    clock.advance(0.5)

    assert schedule.promote_due()
    assert schedule.seconds_until_retry() == pytest.approx(29.5)


def test_own_retry_makes_promote_due_sooner(schedule, clock):
    schedule.record_promote(30.0)

    schedule.record_retry(0.1)
    schedule.record_retry(0.3)  # a later retry keeps the earlier due time

    assert schedule.seconds_until_retry() == pytest.approx(0.1)
    clock.advance(0.1)
    assert schedule.promote_due()


def test_complete_scan_waits_for_claim_interval(schedule, clock):
    schedule.record_claim(complete=True)

    assert not schedule.claim_due()
    clock.advance(0.99)
    assert not schedule.claim_due()
    clock.advance(0.01)
    assert schedule.claim_due()


def test_incomplete_scan_stays_due(schedule):
    schedule.record_claim(complete=False)

    assert schedule.claim_due()


def test_idle_read_makes_scan_due(schedule):
    schedule.record_claim(complete=True)

    schedule.record_idle_read()

    assert schedule.claim_due()


@pytest.mark.parametrize(
    "settings, name",
    [
        ({"promote_interval": 0, "claim_interval": 1}, "promote_interval"),
        ({"promote_interval": 1, "claim_interval": -1}, "claim_interval"),
    ],
)
def test_schedule_rejects_non_positive_interval(settings, name):
    with pytest.raises(ValueError, match=name):
        MaintenanceSchedule(**settings)


def test_queue_rejects_non_positive_interval():
    # Building a client does not connect, so no server is needed.
    client = create_client("redis://127.0.0.1:6379/0")

    with pytest.raises(ValueError, match="claim_interval"):
        RedisQueue(client, claim_interval=0)
    client.close()


@pytest.fixture(
    params=[
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("redis-cluster", marks=pytest.mark.redis_cluster),
    ]
)
def make_redis_queue(request):
    """Return a function that opens a RedisQueue on the test's keys, with settings overriding FAST_QUEUE_SETTINGS.

    Every queue it opens has its own client and schedule, like a worker process of its own.
    """
    url, name = _redis_target(request.param, request)
    opened = []

    def open_queue(**settings):
        queue = open_redis_queue(url, name, **settings)
        opened.append(queue)
        return queue

    yield open_queue

    for queue in opened:
        queue.close()


def wait_in_busy_stream(queue, expected_ids):
    """Put and ack fillers through ``queue`` until it delivers one of ``expected_ids``; return that delivery and its time.

    The stream always contains a filler, so no ``get`` of ``queue`` finds it empty.
    """
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        queue.put({"filler": True})
        delivery = queue.get(timeout=PATIENCE)
        if delivery.id in expected_ids:
            return delivery, time.monotonic()
        queue.ack(delivery)
    pytest.fail(f"none of the messages {expected_ids} was delivered within {PATIENCE} s")


def test_other_process_retry_promoted_within_interval(make_redis_queue):
    busy = make_redis_queue(visibility_timeout=LONG, promote_interval=0.5, claim_interval=LONG)
    failing = make_redis_queue(visibility_timeout=LONG)
    busy.put({"filler": True})
    busy.ack(busy.get(timeout=PATIENCE))  # runs the promote step of busy before the retry exists
    message_id = failing.put({"n": 1})
    failing.fail(failing.get(timeout=PATIENCE), "boom")
    failed_at = time.monotonic()

    retried, delivered_at = wait_in_busy_stream(busy, {message_id})

    assert retried.attempts == 2
    assert delivered_at - failed_at <= 0.05 + 0.5 + TOLERANCE


def test_own_retry_promoted_when_due(make_redis_queue):
    # A promote_interval beyond the test leaves only the due time that fail() recorded.
    queue = make_redis_queue(visibility_timeout=LONG, promote_interval=LONG, claim_interval=LONG)
    message_id = queue.put({"n": 1})
    queue.fail(queue.get(timeout=PATIENCE), "boom")
    failed_at = time.monotonic()

    retried, delivered_at = wait_in_busy_stream(queue, {message_id})

    assert retried.attempts == 2
    assert delivered_at - failed_at <= 0.05 + TOLERANCE


def test_expired_lease_taken_over_within_claim_interval(make_redis_queue):
    dead_worker = make_redis_queue(visibility_timeout=0.5)
    busy = make_redis_queue(visibility_timeout=0.5, promote_interval=LONG, claim_interval=1.0)
    message_id = dead_worker.put({"n": 1})
    assert dead_worker.get(timeout=PATIENCE).id == message_id
    expires_at = time.monotonic() + 0.5

    taken_over, delivered_at = wait_in_busy_stream(busy, {message_id})

    assert taken_over.attempts == 2
    assert delivered_at - expires_at <= 1.0 + TOLERANCE


def test_idle_worker_takes_over_expired_lease(make_redis_queue):
    # A claim_interval beyond the test leaves only the scan after a read that found nothing.
    dead_worker = make_redis_queue(visibility_timeout=0.5)
    lone_worker = make_redis_queue(visibility_timeout=0.5, promote_interval=LONG, claim_interval=LONG)
    message_id = dead_worker.put({"n": 1})
    assert dead_worker.get(timeout=PATIENCE).id == message_id
    assert lone_worker.get(timeout=0) is None
    expires_at = time.monotonic() + 0.5

    taken_over = lone_worker.get(timeout=PATIENCE)
    delivered_at = time.monotonic()

    assert taken_over is not None
    assert taken_over.id == message_id
    assert taken_over.attempts == 2
    assert delivered_at - expires_at <= 0.1 + TOLERANCE  # one block_interval of the fixture


def test_busy_worker_claims_expired_leases_consecutively(make_redis_queue):
    dead_worker = make_redis_queue(visibility_timeout=0.5)
    busy = make_redis_queue(visibility_timeout=0.5, promote_interval=LONG, claim_interval=1.0)
    ids = [dead_worker.put({"n": n}) for n in range(5)]
    assert [dead_worker.get(timeout=PATIENCE).id for _ in ids] == ids

    first, _ = wait_in_busy_stream(busy, set(ids))
    busy.ack(first)
    taken_over = [first.id]
    for _ in ids[1:]:
        # A scan that claimed a lease leaves the next one due, so no claim_interval passes in between.
        busy.put({"filler": True})
        delivery = busy.get(timeout=PATIENCE)
        taken_over.append(delivery.id)
        busy.ack(delivery)

    assert sorted(taken_over) == sorted(ids)


@pytest.mark.redis
def test_busy_get_is_one_round_trip(redis_url, redis_namespace):
    queue = RedisQueue(
        create_client(redis_url),
        name=redis_namespace,
        visibility_timeout=LONG,
        block_interval=0.1,
        promote_interval=LONG,
        claim_interval=LONG,
    )
    queue.put({"n": 0})
    queue.ack(queue.get(timeout=PATIENCE))  # the first get runs the promote step and the scan
    commands = []
    send = queue._client.execute_command

    def record(*args, **options):
        commands.append(args[0])
        return send(*args, **options)

    queue._client.execute_command = record
    try:
        for n in range(1, 21):
            queue.put({"n": n})
            commands.clear()
            delivery = queue.get(timeout=PATIENCE)
            assert commands == ["XREADGROUP"], f"get of message {n} sent {commands}"
            queue.ack(delivery)
    finally:
        queue._client.execute_command = send
        queue.close()


def _get_twice_in_child(queue, results_path):
    deliveries = [queue.get(timeout=0), queue.get(timeout=0)]
    with open(results_path, "w", encoding="utf-8") as results:
        results.writelines(
            f"{delivery.id} {delivery.attempts}\n" if delivery else "none\n" for delivery in deliveries
        )
    for delivery in deliveries:
        if delivery:
            queue.ack(delivery)


def test_forked_child_runs_its_own_schedule(make_redis_queue, tmp_path):
    # The parent's schedule finds neither step due for a minute. A child that
    # inherited it would skip both, and get(timeout=0) would find nothing.
    parent = make_redis_queue(visibility_timeout=0.5, backoff_base=0, promote_interval=LONG, claim_interval=LONG)
    other = make_redis_queue(visibility_timeout=0.5, backoff_base=0)
    parent.put({"n": 0})
    parent.ack(parent.get(timeout=PATIENCE))
    expired_id = other.put({"n": 1})
    assert other.get(timeout=PATIENCE).id == expired_id
    retry_id = other.put({"n": 2})
    other.fail(other.get(timeout=PATIENCE), "boom")
    time.sleep(0.6)  # the lease of the first message expires

    results = tmp_path / "child.txt"
    child = multiprocessing.get_context("fork").Process(target=_get_twice_in_child, args=(parent, results))
    child.start()
    child.join(timeout=60)

    assert child.exitcode == 0
    received = sorted(results.read_text(encoding="utf-8").split("\n")[:2])
    assert received == sorted([f"{expired_id} 2", f"{retry_id} 2"])
    assert parent.depth() == 0


@pytest.mark.parametrize("shared", [False, True], ids=["queue-per-thread", "shared-queue"])
def test_consumers_sharing_stream_process_every_message(make_redis_queue, shared):
    # Threads with a queue each behave like worker processes, and threads
    # that share one queue share its schedule. Even messages fail once, and a
    # dead worker abandons the first 3, so retries and expired leases both
    # pass between consumers.
    settings = {"visibility_timeout": 3.0, "backoff_base": 0.05}
    producer = make_redis_queue(**settings)
    ids = [producer.put({"n": n}) for n in range(60)]
    dead_worker = make_redis_queue(**settings)
    abandoned = [dead_worker.get(timeout=PATIENCE).id for _ in range(3)]
    if shared:
        queues = [make_redis_queue(**settings)] * 3
    else:
        queues = [make_redis_queue(**settings) for _ in range(3)]
    acked = []
    lock = threading.Lock()
    deadline = time.monotonic() + 2 * PATIENCE

    def consume(queue):
        while time.monotonic() < deadline:
            with lock:
                if len(acked) >= len(ids):
                    return
            delivery = queue.get(timeout=0.2)
            if delivery is None:
                continue
            if delivery.attempts == 1 and delivery.body["n"] % 2 == 0:
                queue.fail(delivery, "first attempt fails")
                continue
            queue.ack(delivery)
            with lock:
                acked.append((delivery.id, delivery.attempts))

    threads = [threading.Thread(target=consume, args=(queue,)) for queue in queues]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    expected = {}
    for n, message_id in enumerate(ids):
        expected[message_id] = 2 if n % 2 == 0 or message_id in abandoned else 1
    assert sorted(message_id for message_id, _ in acked) == sorted(ids)
    assert dict(acked) == expected
    assert producer.depth() == 0
    assert producer.dead_letters() == []


def test_group_created_again_after_stream_deleted(make_redis_queue):
    queue = make_redis_queue(visibility_timeout=LONG)
    queue.put({"n": 1})
    queue.ack(queue.get(timeout=PATIENCE))
    queue._client.delete(queue.stream)

    message_id = queue.put({"n": 2})
    delivery = queue.get(timeout=PATIENCE)

    assert delivery.id == message_id
    assert delivery.attempts == 1
