"""Behaviour every queue backend shares, run against SQLite and Redis (see conftest.py)."""

import logging
import multiprocessing
import sqlite3
import threading
import time

import pytest

from omnibot.backends.redis_connection import create_client
from omnibot.backends.redis_queue import RedisQueue
from omnibot.backends.sqlite_queue import SqliteQueue
from omnibot.errors import BackendUnavailable

# Upper bound for waits on something that must happen (a lease expiring, a
# backoff passing). Tests end as soon as it happens; the bound only stops a
# broken backend from hanging the run.
PATIENCE = 10.0

# Long enough that no lease expires while a test runs.
LONG_LEASE = 60.0

# Every case here holds for the SQLite and the Redis queue with puts through spool files too.
WITH_SQLITE_SPOOL = True
WITH_REDIS_SPOOL = True


def wait_for_dead_letters(queue):
    """Poll ``queue`` with get() until a dead letter appears; fail if a message is delivered instead."""
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        dead = queue.dead_letters()
        if dead:
            return dead
        assert queue.get(timeout=0.1) is None
    pytest.fail(f"no dead letter appeared within {PATIENCE} s")


def dead_letter_one(queue, body, error="boom"):
    """Put ``body``, then fail it until it is dead-lettered; return its id."""
    message_id = queue.put(body)
    while True:
        delivery = queue.get(timeout=PATIENCE)
        assert delivery is not None
        assert delivery.id == message_id
        if queue.fail(delivery, error):
            return message_id


def consume_until_idle(queue, processed, idle_timeout=0.5):
    """Get and ack messages until ``get`` returns None, appending (id, attempts) to ``processed``."""
    while True:
        delivery = queue.get(timeout=idle_timeout)
        if delivery is None:
            return
        processed.append((delivery.id, delivery.attempts))
        queue.ack(delivery)


def test_put_get_ack_roundtrip(queue):
    body = {"type": "event_callback", "text": "héllo ✓", "nested": {"list": [1, 2.5, None, True]}}

    message_id = queue.put(body)
    delivery = queue.get(timeout=PATIENCE)

    assert delivery is not None
    assert delivery.id == message_id
    assert delivery.body == body
    assert delivery.attempts == 1
    assert queue.depth() == 1

    queue.ack(delivery)

    assert queue.depth() == 0
    assert queue.get(timeout=0.1) is None


@pytest.mark.parametrize(
    "timeout",
    [
        0,  # a single non-blocking try
        0.2,  # polls or blocks, then gives up
    ],
)
def test_get_on_empty_queue_returns_none(queue, timeout):
    assert queue.get(timeout=timeout) is None


def test_get_returns_messages_in_put_order(queue):
    ids = [queue.put({"n": n}) for n in range(5)]

    received = []
    for _ in ids:
        delivery = queue.get(timeout=PATIENCE)
        received.append(delivery.id)
        queue.ack(delivery)

    assert received == ids


def test_leased_message_hidden_from_other_consumers(make_queue):
    first = make_queue(visibility_timeout=LONG_LEASE)
    second = make_queue(visibility_timeout=LONG_LEASE)
    first.put({"n": 1})

    delivery = first.get(timeout=PATIENCE)

    assert delivery is not None
    assert second.get(timeout=0.3) is None
    assert first.depth() == 1


def test_expired_lease_is_redelivered(make_queue):
    first = make_queue()
    second = make_queue()
    message_id = first.put({"n": 1})

    leased = first.get(timeout=PATIENCE)
    redelivered = second.get(timeout=PATIENCE)

    assert redelivered is not None
    assert redelivered.id == message_id == leased.id
    assert redelivered.body == {"n": 1}
    assert redelivered.attempts == 2


def test_stale_ack_keeps_message_of_new_lease(make_queue, caplog):
    first = make_queue()
    second = make_queue()
    first.put({"n": 1})
    stale = first.get(timeout=PATIENCE)
    current = second.get(timeout=PATIENCE)
    assert current is not None

    with caplog.at_level(logging.WARNING, logger="omnibot.backends"):
        first.ack(stale)

    assert first.depth() == 1
    assert "lease is no longer held" in caplog.text

    second.ack(current)

    assert first.depth() == 0


def test_stale_fail_changes_nothing(make_queue, caplog):
    first = make_queue(max_attempts=2)
    second = make_queue(max_attempts=2)
    first.put({"n": 1})
    stale = first.get(timeout=PATIENCE)
    current = second.get(timeout=PATIENCE)
    assert current is not None

    with caplog.at_level(logging.WARNING, logger="omnibot.backends"):
        dead_lettered = first.fail(stale, "too late")

    assert dead_lettered is False
    assert first.dead_letters() == []
    assert "lease is no longer held" in caplog.text

    second.ack(current)

    assert first.depth() == 0


def test_failed_message_redelivered_after_backoff(queue):
    message_id = queue.put({"n": 1})
    delivery = queue.get(timeout=PATIENCE)

    dead_lettered = queue.fail(delivery, "boom")
    retried = queue.get(timeout=PATIENCE)

    assert dead_lettered is False
    assert retried is not None
    assert retried.id == message_id
    assert retried.body == {"n": 1}
    assert retried.attempts == 2


def test_failed_message_waits_for_backoff(make_queue):
    queue = make_queue(backoff_base=LONG_LEASE, backoff_max=LONG_LEASE)
    queue.put({"n": 1})

    queue.fail(queue.get(timeout=PATIENCE), "boom")

    assert queue.get(timeout=0.3) is None
    assert queue.depth() == 1


def test_retry_keeps_original_body(queue):
    queue.put({"n": 1})
    delivery = queue.get(timeout=PATIENCE)
    delivery.body["n"] = "changed by the worker"

    queue.fail(delivery, "boom")
    retried = queue.get(timeout=PATIENCE)

    assert retried.body == {"n": 1}


def test_dead_letter_after_max_attempts(queue):
    message_id = queue.put({"n": 1})
    before = time.time()

    outcomes = []
    for attempt in range(1, 4):
        delivery = queue.get(timeout=PATIENCE)
        assert delivery.attempts == attempt
        outcomes.append(queue.fail(delivery, f"boom {attempt}"))

    assert outcomes == [False, False, True]
    assert queue.depth() == 0
    assert queue.get(timeout=0.1) is None

    [dead] = queue.dead_letters()
    assert dead.id == message_id
    assert dead.body == {"n": 1}
    assert dead.attempts == 3
    assert dead.error == "boom 3"
    # Redis stamps failures with its own clock, so allow for clock skew.
    assert dead.failed_at > before - 60


def test_expired_last_attempt_is_dead_lettered(make_queue):
    queue = make_queue(max_attempts=2)
    message_id = queue.put({"n": 1})
    assert queue.get(timeout=PATIENCE).attempts == 1
    assert queue.get(timeout=PATIENCE).attempts == 2

    [dead] = wait_for_dead_letters(queue)

    assert dead.id == message_id
    assert dead.attempts == 2
    assert "visibility timeout" in dead.error
    assert queue.depth() == 0


def test_dead_letter_lookup(make_queue):
    queue = make_queue(max_attempts=1)
    first = dead_letter_one(queue, {"n": 1}, "first error")
    second = dead_letter_one(queue, {"n": 2}, "second error")

    listed = queue.dead_letters()
    found = queue.dead_letter(second)

    assert [dead.id for dead in listed] == [first, second]
    assert [dead.id for dead in queue.dead_letters(limit=1)] == [first]
    assert found.id == second
    assert found.body == {"n": 2}
    assert found.error == "second error"
    assert found.attempts == 1
    assert queue.dead_letter("no-such-id") is None


def test_replay_requeues_dead_letter(make_queue):
    queue = make_queue(max_attempts=1)
    first = dead_letter_one(queue, {"n": 1})
    second = dead_letter_one(queue, {"n": 2})

    assert queue.replay(first) is True
    assert queue.replay(first) is False
    assert queue.replay("no-such-id") is False

    delivery = queue.get(timeout=PATIENCE)

    assert delivery.id == first
    assert delivery.body == {"n": 1, "replayed_at": delivery.body["replayed_at"]}
    assert delivery.body["replayed_at"] >= time.time() - 60
    assert delivery.attempts == 1
    assert [dead.id for dead in queue.dead_letters()] == [second]


def test_purge_dead_letters_by_age(make_queue):
    queue = make_queue(max_attempts=1)
    dead_letter_one(queue, {"n": 1})
    dead_letter_one(queue, {"n": 2})

    assert queue.purge_dead_letters(older_than=3600) == 0
    assert len(queue.dead_letters()) == 2
    assert queue.purge_dead_letters(older_than=0) == 2
    assert queue.dead_letters() == []


def test_purge_rejects_negative_age(queue):
    with pytest.raises(ValueError, match="older_than"):
        queue.purge_dead_letters(older_than=-1)


def test_stats_count_each_state(make_queue):
    queue = make_queue(max_attempts=2, visibility_timeout=LONG_LEASE, backoff_base=LONG_LEASE, backoff_max=LONG_LEASE)
    for n in range(3):
        queue.put({"n": n})

    queue.fail(queue.get(timeout=PATIENCE), "boom")
    queue.get(timeout=PATIENCE)

    assert queue.stats() == {"ready": 1, "leased": 1, "delayed": 1, "dead": 0}
    assert queue.depth() == 3


@pytest.mark.parametrize(
    "settings, name",
    [
        ({"visibility_timeout": 0}, "visibility_timeout"),  # a lease must last some time
        ({"max_attempts": 0}, "max_attempts"),  # at least one delivery
        ({"backoff_base": -1}, "backoff_base"),  # no negative delay
        ({"backoff_max": -1}, "backoff_max"),  # no negative cap
    ],
)
def test_invalid_settings_raise(make_queue, settings, name):
    with pytest.raises(ValueError, match=name):
        make_queue(**settings)


def test_threads_process_each_message_once(make_queue):
    queues = [make_queue(visibility_timeout=LONG_LEASE) for _ in range(4)]
    ids = [queues[0].put({"n": n}) for n in range(200)]
    processed = []

    threads = [threading.Thread(target=consume_until_idle, args=(queue, processed)) for queue in queues]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    received = [message_id for message_id, _ in processed]
    assert len(received) == len(set(received))
    assert sorted(received) == sorted(ids)
    assert {attempts for _, attempts in processed} == {1}
    assert queues[0].depth() == 0


def test_threads_share_one_queue_object(make_queue):
    queue = make_queue(visibility_timeout=LONG_LEASE)
    ids = [queue.put({"n": n}) for n in range(200)]
    processed = []

    threads = [threading.Thread(target=consume_until_idle, args=(queue, processed)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    received = [message_id for message_id, _ in processed]
    assert len(received) == len(set(received))
    assert sorted(received) == sorted(ids)
    assert queue.depth() == 0


def _consume_in_child(make_queue, results_path):
    queue = make_queue(visibility_timeout=LONG_LEASE)
    processed = []
    consume_until_idle(queue, processed)
    queue.close()
    with open(results_path, "w", encoding="utf-8") as results:
        results.writelines(f"{message_id} {attempts}\n" for message_id, attempts in processed)


def test_processes_process_each_message_once(make_queue, tmp_path):
    producer = make_queue(visibility_timeout=LONG_LEASE)
    ids = [producer.put({"n": n}) for n in range(200)]

    # fork, so the children inherit the fixture's queue opener; each opens its own connection.
    context = multiprocessing.get_context("fork")
    results = [tmp_path / f"consumer-{n}.txt" for n in range(2)]
    children = [context.Process(target=_consume_in_child, args=(make_queue, path)) for path in results]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=60)

    assert [child.exitcode for child in children] == [0, 0]
    lines = [line.split() for path in results for line in path.read_text(encoding="utf-8").splitlines()]
    received = [message_id for message_id, _ in lines]
    assert len(received) == len(set(received))
    assert sorted(received) == sorted(ids)
    assert {attempts for _, attempts in lines} == {"1"}
    assert producer.depth() == 0


def test_sqlite_file_uses_wal(tmp_path):
    path = str(tmp_path / "queue.db")
    queue = SqliteQueue(path)
    queue.put({"n": 1})

    with sqlite3.connect(path) as conn:
        journal_mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    queue.close()

    assert journal_mode == "wal"


def test_sqlite_unopenable_file_unavailable(tmp_path):
    # A directory cannot be opened as a database file.
    queue = SqliteQueue(str(tmp_path))

    with pytest.raises(BackendUnavailable, match="unavailable"):
        queue.put({"n": 1})


@pytest.mark.redis
def test_redis_long_stream_warns_and_keeps_messages(redis_url, redis_namespace, caplog):
    queue = RedisQueue(create_client(redis_url), name=redis_namespace, max_length_warning=2)

    with caplog.at_level(logging.WARNING, logger="omnibot.backends.redis_queue"):
        for n in range(5):
            queue.put({"n": n})

    assert queue.depth() == 5
    assert caplog.text.count("unprocessed messages") == 1
    queue.close()


@pytest.mark.redis
def test_redis_keys_share_hash_tag(redis_url, redis_namespace):
    queue = RedisQueue(create_client(redis_url), name=redis_namespace)

    assert all(f"{{{redis_namespace}}}" in key for key in queue.keys)
    queue.close()


@pytest.mark.redis
def test_redis_close_removes_idle_consumers(redis_url, redis_namespace):
    queue = RedisQueue(create_client(redis_url), name=redis_namespace)
    queue.put({"n": 1})
    queue.ack(queue.get(timeout=PATIENCE))
    queue.close()

    client = create_client(redis_url)
    consumers = client.xinfo_consumers(queue.stream, queue.group)
    client.close()

    assert consumers == []


@pytest.mark.redis
def test_redis_close_keeps_consumers_with_leases(redis_url, redis_namespace):
    queue = RedisQueue(create_client(redis_url), name=redis_namespace)
    queue.put({"n": 1})
    queue.get(timeout=PATIENCE)
    queue.close()

    client = create_client(redis_url)
    consumers = client.xinfo_consumers(queue.stream, queue.group)
    client.close()

    assert [consumer["pending"] for consumer in consumers] == [1]


def test_redis_block_interval_below_socket_timeout():
    # Building a client does not connect, so no server is needed.
    client = create_client("redis://127.0.0.1:6379/0", socket_timeout=1.0)

    with pytest.raises(ValueError, match="socket_timeout"):
        RedisQueue(client, block_interval=1.0)
    client.close()


def _put_and_consume_in_child(queue, results_path):
    queue.put({"from": "child"})
    delivery = queue.get(timeout=PATIENCE)
    queue.ack(delivery)
    results_path.write_text(str(delivery.body), encoding="utf-8")


def test_sqlite_queue_usable_after_fork(tmp_path):
    # gunicorn --preload opens backends in the parent and forks the workers.
    queue = SqliteQueue(str(tmp_path / "queue.db"))
    queue.put({"from": "parent"})
    results = tmp_path / "child.txt"

    child = multiprocessing.get_context("fork").Process(target=_put_and_consume_in_child, args=(queue, results))
    child.start()
    child.join(timeout=60)

    assert child.exitcode == 0
    assert results.read_text(encoding="utf-8") == "{'from': 'parent'}"
    assert queue.depth() == 1
    queue.close()


def test_sqlite_queue_usable_after_close(tmp_path):
    queue = SqliteQueue(str(tmp_path / "queue.db"))
    queue.put({"n": 1})

    queue.close()

    assert queue.depth() == 1
    queue.close()


@pytest.mark.parametrize(
    "limit",
    [
        0,  # nothing requested
        -1,  # SQLite would read this as "no limit"
    ],
)
def test_dead_letters_with_non_positive_limit(make_queue, limit):
    queue = make_queue(max_attempts=1)
    dead_letter_one(queue, {"n": 1})

    assert queue.dead_letters(limit=limit) == []


def test_extended_lease_stays_hidden_past_its_first_timeout(make_queue):
    first = make_queue(visibility_timeout=1.0)
    second = make_queue(visibility_timeout=1.0)
    first.put({"n": 1})
    leased = first.get(timeout=PATIENCE)

    # Renewed at about 0.6 and 1.2 s, the lease outlasts its first second.
    for _ in range(2):
        time.sleep(0.6)
        assert first.extend_leases([leased]) == [True]
    taken_early = second.get(timeout=0.3)
    first.ack(leased)

    assert taken_early is None
    assert first.depth() == 0


def test_extend_leases_reports_leases_no_longer_held(make_queue):
    first = make_queue(visibility_timeout=0.5)
    second = make_queue(visibility_timeout=0.5)
    first.put({"n": 1})
    first.put({"n": 2})
    lost = first.get(timeout=PATIENCE)
    acked = first.get(timeout=PATIENCE)
    first.ack(acked)
    taken_over = second.get(timeout=PATIENCE)

    assert taken_over.id == lost.id
    assert first.extend_leases([lost, acked]) == [False, False]
    assert first.extend_leases([]) == []
    assert second.extend_leases([taken_over]) == [True]
