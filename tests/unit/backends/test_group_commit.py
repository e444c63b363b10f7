"""GroupCommit: concurrent submissions share batches, and every submitter gets its own result or the batch's error."""

import threading
import time

import pytest

from omnibot.backends.group_commit import GroupCommit


def run_threads(count, target):
    start = threading.Barrier(count)
    results = [None] * count

    def run(index):
        start.wait()
        try:
            results[index] = ("ok", target(index))
        except Exception as error:  # noqa: BLE001 - the test inspects it
            results[index] = ("error", error)

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


def test_lone_submit_returns_its_result():
    batches = []
    group = GroupCommit(lambda items: batches.append(list(items)) or [item * 2 for item in items])

    assert group.submit(21) == 42
    assert batches == [[21]]


def test_concurrent_submits_each_get_their_own_result():
    batches = []
    lock = threading.Lock()

    def write_batch(items):
        with lock:
            batches.append(list(items))
        return [f"result-{item}" for item in items]

    group = GroupCommit(write_batch)
    results = run_threads(16, group.submit)

    assert results == [("ok", f"result-{index}") for index in range(16)]
    written = sorted(item for batch in batches for item in batch)
    assert written == list(range(16))


def test_failed_batch_raises_in_every_submitter():
    group = GroupCommit(lambda items: (_ for _ in ()).throw(OSError("disk full")))

    results = run_threads(8, group.submit)

    assert all(kind == "error" for kind, _ in results)
    assert all(isinstance(error, OSError) for _, error in results)


def test_wrong_number_of_results_is_an_error():
    group = GroupCommit(lambda items: [])

    with pytest.raises(RuntimeError, match="returned 0 results for 1 items"):
        group.submit("item")


def test_group_keeps_working_after_a_failed_batch():
    failures = iter([True, False])
    group = GroupCommit(lambda items: (_ for _ in ()).throw(ValueError("once")) if next(failures) else list(items))

    with pytest.raises(ValueError):
        group.submit(1)
    assert group.submit(2) == 2


def test_submit_during_a_write_joins_the_next_batch():
    first_batch_started = threading.Event()
    release_first_batch = threading.Event()
    batches = []

    def write_batch(items):
        batches.append(list(items))
        if len(batches) == 1:
            first_batch_started.set()
            release_first_batch.wait(timeout=10)
        return [item + 100 for item in items]

    group = GroupCommit(write_batch)
    results = {}

    def submit(item):
        results[item] = group.submit(item)

    leader = threading.Thread(target=submit, args=(0,))
    leader.start()
    assert first_batch_started.wait(timeout=10)

    followers = [threading.Thread(target=submit, args=(item,)) for item in (1, 2, 3)]
    for follower in followers:
        follower.start()
    # The followers queue behind the leader's batch, which is still being written.
    deadline = time.monotonic() + 10
    while len(group._state.pending) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    release_first_batch.set()

    for thread in [leader, *followers]:
        thread.join(timeout=10)
    assert len(batches) == 2
    assert batches[0] == [0]
    assert sorted(batches[1]) == [1, 2, 3]
    assert results == {0: 100, 1: 101, 2: 102, 3: 103}


def test_waiters_raise_copied_batch_error():
    writing = threading.Event()
    release = threading.Event()
    errors = {}

    def write_batch(items):
        writing.set()
        release.wait(timeout=10)
        raise OSError(28, "No space left on device")

    group = GroupCommit(write_batch)

    def submit(item):
        try:
            group.submit(item)
        except OSError as error:
            errors[item] = error

    threads = [threading.Thread(target=submit, args=(item,)) for item in range(4)]
    threads[0].start()
    assert writing.wait(timeout=10)
    for thread in threads[1:]:
        thread.start()
    deadline = time.monotonic() + 10
    while len(group._state.pending) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    release.set()
    for thread in threads:
        thread.join(timeout=10)

    assert sorted(errors) == [0, 1, 2, 3]
    assert len({id(error) for error in errors.values()}) == 4
    assert all(type(error) is OSError and error.errno == 28 for error in errors.values())
    # Batches [0] and [1, 2, 3]: each batch's writer raises the original, the others copies caused by it.
    assert errors[0].__cause__ is None
    copies = [error for error in errors.values() if error.__cause__ is not None]
    assert len(copies) == 2
    assert all(error.__cause__ is copies[0].__cause__ and error.__cause__ is not errors[0] for error in copies)
