"""Behaviour every cache backend shares, run against SQLite and Redis (see conftest.py)."""

import contextlib
import time

import pytest

# Upper bound for waits on an expiry. Tests end as soon as it happens; the
# bound only stops a broken backend from hanging the run.
PATIENCE = 10.0

# Long enough that nothing expires while a test runs.
LONG_TTL = 60.0


def wait_until(condition):
    """Poll ``condition`` until it returns True; fail after PATIENCE seconds."""
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    pytest.fail(f"condition still false after {PATIENCE} s")


def test_get_missing_key_returns_none(cache):
    assert cache.get("missing") is None


def test_set_then_get(cache):
    cache.set("user:U1", '{"name": "ana"}')

    assert cache.get("user:U1") == '{"name": "ana"}'


def test_set_replaces_value(cache):
    cache.set("key", "old")
    cache.set("key", "new", ttl=LONG_TTL)

    assert cache.get("key") == "new"


def test_set_with_ttl_expires(cache):
    cache.set("short", "value", ttl=0.2)
    cache.set("long", "value", ttl=LONG_TTL)

    wait_until(lambda: cache.get("short") is None)

    assert cache.get("long") == "value"


def test_set_without_ttl_removes_expiry(cache):
    cache.set("key", "expiring", ttl=0.2)
    cache.set("key", "kept")

    time.sleep(0.3)

    assert cache.get("key") == "kept"


def test_add_stores_only_when_missing(cache):
    first = cache.add("dedup:Ev1", "1", ttl=LONG_TTL)
    second = cache.add("dedup:Ev1", "2", ttl=LONG_TTL)

    assert first is True
    assert second is False
    assert cache.get("dedup:Ev1") == "1"


def test_add_succeeds_after_expiry(cache):
    assert cache.add("dedup:Ev1", "1", ttl=0.2) is True

    wait_until(lambda: cache.add("dedup:Ev1", "2", ttl=LONG_TTL))

    assert cache.get("dedup:Ev1") == "2"


def test_add_is_exclusive_across_instances(make_cache):
    first = make_cache()
    second = make_cache()

    results = [first.add("dedup:Ev1", "first", ttl=LONG_TTL), second.add("dedup:Ev1", "second", ttl=LONG_TTL)]

    assert results == [True, False]
    assert second.get("dedup:Ev1") == "first"


def test_get_many_keeps_order_and_marks_missing(cache):
    cache.set("a", "1")
    cache.set("c", "3")

    assert cache.get_many(["c", "missing", "a"]) == ["3", None, "1"]


def test_get_many_of_no_keys(cache):
    assert cache.get_many([]) == []


def test_set_many_stores_a_page_of_users(cache):
    page = {f"user:U{n:05d}": f'{{"id": "U{n:05d}"}}' for n in range(1000)}

    cache.set_many(page, ttl=LONG_TTL)

    assert cache.get_many(list(page)) == list(page.values())


def test_set_many_with_ttl_expires(cache):
    cache.set_many({"a": "1", "b": "2"}, ttl=0.2)

    wait_until(lambda: cache.get_many(["a", "b"]) == [None, None])


def test_set_many_of_no_items(cache):
    cache.set_many({})

    assert cache.get("anything") is None


def test_delete_removes_key(cache):
    cache.set("key", "value")

    cache.delete("key")
    cache.delete("never-set")

    assert cache.get("key") is None


def test_values_are_shared_across_instances(make_cache):
    writer = make_cache()
    reader = make_cache()

    writer.set("key", "value")

    assert reader.get("key") == "value"


@pytest.mark.parametrize(
    "value",
    [
        b"bytes",  # callers encode to str themselves
        42,  # no implicit str()
        None,  # delete() removes keys
    ],
)
def test_non_str_value_raises(cache, value):
    with pytest.raises(TypeError, match="str"):
        cache.set("key", value)


@pytest.mark.parametrize(
    "ttl",
    [
        0,  # would expire at once
        -1,  # already expired
    ],
)
def test_non_positive_ttl_raises(cache, ttl):
    with pytest.raises(ValueError, match="ttl"):
        cache.set("key", "value", ttl=ttl)
    with pytest.raises(ValueError, match="ttl"):
        cache.add("key", "value", ttl=ttl)


def test_lock_is_exclusive(make_cache):
    first = make_cache()
    second = make_cache()

    with first.lock("refresh-users", timeout=LONG_TTL) as held_by_first:
        with second.lock("refresh-users", timeout=LONG_TTL) as held_by_second:
            assert held_by_first is True
            assert held_by_second is False


def test_lock_released_on_exit(cache):
    with cache.lock("refresh-users", timeout=LONG_TTL) as first:
        assert first is True

    with cache.lock("refresh-users", timeout=LONG_TTL) as second:
        assert second is True


def test_lock_released_when_block_raises(cache):
    with pytest.raises(RuntimeError):
        with cache.lock("refresh-users", timeout=LONG_TTL):
            raise RuntimeError("callback failed")

    with cache.lock("refresh-users", timeout=LONG_TTL) as acquired:
        assert acquired is True


def test_locks_with_different_names_are_independent(cache):
    with cache.lock("refresh-users", timeout=LONG_TTL) as users:
        with cache.lock("refresh-channels", timeout=LONG_TTL) as channels:
            assert users is True
            assert channels is True


def test_lock_and_key_with_same_name_are_independent(cache):
    cache.set("refresh-users", "last run")

    with cache.lock("refresh-users", timeout=LONG_TTL) as acquired:
        assert acquired is True
        assert cache.get("refresh-users") == "last run"


def test_expired_lock_passes_to_new_holder(make_cache):
    # The old holder's exit after expiry must not release the new holder's lock.
    old_holder = make_cache()
    new_holder = make_cache()

    with contextlib.ExitStack() as new_holder_stack:
        with old_holder.lock("refresh-users", timeout=0.2) as old_acquired:
            assert old_acquired is True

            def take_lock():
                return new_holder_stack.enter_context(new_holder.lock("refresh-users", timeout=LONG_TTL))

            wait_until(take_lock)

        with old_holder.lock("refresh-users", timeout=LONG_TTL) as third:
            assert third is False


@pytest.mark.parametrize(
    "timeout",
    [
        0,  # would never be held
        -1,  # already expired
    ],
)
def test_non_positive_lock_timeout_raises(cache, timeout):
    with pytest.raises(ValueError, match="timeout"):
        with cache.lock("refresh-users", timeout=timeout):
            pass
