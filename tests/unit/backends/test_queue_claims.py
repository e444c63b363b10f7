"""put_unless_claimed: claims and the message are stored together or not at all, on SQLite and Redis."""

import multiprocessing
import sqlite3
import threading
import time

import pytest

from omnibot.backends.redis_connection import create_client
from omnibot.backends.redis_queue import RedisQueue
from omnibot.backends.sqlite_queue import SqliteQueue
from omnibot.errors import BackendUnavailable
from tests.support import wait_until

LONG_TTL = 600.0
LONG_LEASE = 60.0


def test_first_put_is_stored_and_repeat_is_refused(queue):
    first = queue.put_unless_claimed({"n": 1}, ["event:Ev1", "message:C1:1.0"], LONG_TTL)
    repeat = queue.put_unless_claimed({"n": 2}, ["event:Ev1"], LONG_TTL)

    assert first is not None
    assert repeat is None
    assert queue.depth() == 1
    delivery = queue.get(timeout=1)
    assert delivery.id == first
    assert delivery.body == {"n": 1}


def test_any_claimed_key_makes_a_duplicate(queue):
    # An @-mention arrives as a message event and as an app_mention event with
    # another event id; the second shares only the channel-and-ts key.
    assert queue.put_unless_claimed({"type": "message"}, ["event:Ev1", "message:C1:1.0"], LONG_TTL) is not None
    assert queue.put_unless_claimed({"type": "app_mention"}, ["event:Ev2", "message:C1:1.0"], LONG_TTL) is None
    assert queue.depth() == 1


def test_distinct_keys_and_no_keys_are_all_stored(queue):
    ids = [
        queue.put_unless_claimed({"n": 1}, ["event:Ev1"], LONG_TTL),
        queue.put_unless_claimed({"n": 2}, ["event:Ev2"], LONG_TTL),
        queue.put_unless_claimed({"n": 3}, [], LONG_TTL),
        queue.put_unless_claimed({"n": 4}, [], LONG_TTL),
    ]

    assert None not in ids
    assert len(set(ids)) == 4
    assert queue.depth() == 4


def test_expired_claim_accepts_the_key_again(queue):
    assert queue.put_unless_claimed({"n": 1}, ["event:Ev1"], 0.2) is not None

    second = []
    wait_until(lambda: second.append(queue.put_unless_claimed({"n": 2}, ["event:Ev1"], LONG_TTL)) or second[-1] is not None)
    assert queue.depth() == 2


@pytest.mark.parametrize("ttl", [0, -1.0])
def test_non_positive_ttl_is_rejected(queue, ttl):
    with pytest.raises(ValueError, match="ttl"):
        queue.put_unless_claimed({"n": 1}, ["event:Ev1"], ttl)
    assert queue.depth() == 0


def test_threads_racing_for_one_key_store_it_once(make_queue):
    queue = make_queue(visibility_timeout=LONG_LEASE)
    start = threading.Barrier(8)
    results = []

    def put(number):
        start.wait()
        results.append(queue.put_unless_claimed({"n": number}, ["event:EvRace"], LONG_TTL))

    threads = [threading.Thread(target=put, args=(number,)) for number in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len([result for result in results if result is not None]) == 1
    assert queue.depth() == 1


def _put_keys_in_child(make_queue, keys, results_path):
    queue = make_queue(visibility_timeout=LONG_LEASE)
    stored = [key for key in keys if queue.put_unless_claimed({"key": key}, [key], LONG_TTL) is not None]
    queue.close()
    with open(results_path, "w", encoding="utf-8") as results:
        results.writelines(f"{key}\n" for key in stored)


def test_processes_putting_the_same_keys_store_each_once(make_queue, tmp_path):
    producer = make_queue(visibility_timeout=LONG_LEASE)
    keys = [f"event:Ev{number}" for number in range(100)]

    context = multiprocessing.get_context("fork")
    results = [tmp_path / f"producer-{number}.txt" for number in range(3)]
    children = [context.Process(target=_put_keys_in_child, args=(make_queue, keys, path)) for path in results]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=60)

    assert [child.exitcode for child in children] == [0, 0, 0]
    stored = [line for path in results for line in path.read_text(encoding="utf-8").splitlines()]
    assert sorted(stored) == sorted(keys)
    assert producer.depth() == len(keys)


def test_sqlite_failed_put_claims_nothing(tmp_path):
    path = str(tmp_path / "queue.db")
    queue = SqliteQueue(path, busy_timeout=0.2)
    queue.depth()  # creates the schema

    # Another program holds the write lock, so the put's transaction fails.
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(BackendUnavailable):
            queue.put_unless_claimed({"n": 1}, ["event:Ev1"], LONG_TTL)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()

    # Slack's retry of the same event is accepted.
    assert queue.put_unless_claimed({"n": 1}, ["event:Ev1"], LONG_TTL) is not None
    assert queue.depth() == 1
    queue.close()


def test_sqlite_expired_claims_are_purged(tmp_path):
    path = str(tmp_path / "queue.db")
    queue = SqliteQueue(path)
    queue.put_unless_claimed({"n": 1}, ["event:Ev1"], 0.1)

    def claims(where="1", *parameters):
        with sqlite3.connect(path) as conn:
            return conn.execute(f"SELECT COUNT(*) FROM claims WHERE {where}", parameters).fetchone()[0]

    wait_until(lambda: claims("expires_at <= ?", time.time()) == 1, message="the claim to expire")
    # The purge runs during a write at most once a minute; make the next one due.
    queue._next_claim_purge = 0.0
    queue.put_unless_claimed({"n": 2}, ["event:Ev2"], LONG_TTL)

    assert claims() == 1
    assert claims("key = 'event:Ev2'") == 1
    queue.close()


@pytest.mark.redis
def test_redis_claim_keys_share_hash_tag(redis_url, redis_namespace):
    client = create_client(redis_url)
    queue = RedisQueue(client, name=redis_namespace)
    queue.put_unless_claimed({"n": 1}, ["event:Ev1", "message:C1:1.0"], LONG_TTL)

    claim_keys = [key for key in client.scan_iter(match=f"*{{{redis_namespace}}}:claim:*")]
    assert len(claim_keys) == 2
    assert all(f"{{{redis_namespace}}}" in key for key in claim_keys)
    assert all(0 < client.pttl(key) <= LONG_TTL * 1000 for key in claim_keys)
    queue.close()
    client.close()


def test_duplicate_claims_none_of_its_new_keys(queue):
    assert queue.put_unless_claimed({"n": 1}, ["event:A"], LONG_TTL) is not None
    assert queue.put_unless_claimed({"n": 2}, ["event:A", "event:B"], LONG_TTL) is None

    # event:B was not claimed by the duplicate, on SQLite as on Redis.
    assert queue.put_unless_claimed({"n": 3}, ["event:B"], LONG_TTL) is not None
    assert queue.depth() == 2


@pytest.mark.parametrize("returning", [True, False], ids=["sqlite-3.35+", "sqlite-before-3.35"])
def test_sqlite_claims_with_and_without_returning(tmp_path, monkeypatch, returning):
    # SQLite before 3.35 has no INSERT ... RETURNING; the queue then checks the keys first.
    monkeypatch.setattr("omnibot.backends.sqlite_queue._HAS_RETURNING", returning)
    queue = SqliteQueue(str(tmp_path / "queue.db"))
    try:
        first = queue.put_unless_claimed({"n": 1}, ["event:A"], LONG_TTL)
        repeat = queue.put_unless_claimed({"n": 2}, ["event:A", "event:B"], LONG_TTL)
        other = queue.put_unless_claimed({"n": 3}, ["event:B"], LONG_TTL)
        short = queue.put_unless_claimed({"n": 4}, ["event:C"], 0.05)
        time.sleep(0.1)
        after_expiry = queue.put_unless_claimed({"n": 5}, ["event:C"], LONG_TTL)

        assert first is not None
        assert repeat is None
        assert other is not None
        assert short is not None
        assert after_expiry is not None
        assert queue.depth() == 4
    finally:
        queue.close()
