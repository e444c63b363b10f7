"""WriterTurns: one writer at a time across processes, nested turns, and a fallback without a lock file."""

import multiprocessing
import os
import time

import pytest

from omnibot.backends.writer_turns import WriterTurns
from omnibot.errors import BackendUnavailable


def _take_turn_and_record(lock_path, log_path):
    turns = WriterTurns(lock_path)
    with turns.turn():
        with open(log_path, "a", encoding="utf-8") as log:
            log.write("child\n")


def test_turn_waits_for_other_process(tmp_path):
    lock_path = str(tmp_path / "queue.db.writer-lock")
    log_path = tmp_path / "order.log"
    turns = WriterTurns(lock_path)
    context = multiprocessing.get_context("fork")

    with turns.turn():
        child = context.Process(target=_take_turn_and_record, args=(lock_path, str(log_path)))
        child.start()
        # The child is blocked on the flock; give it time to write if it were not.
        time.sleep(0.3)
        with open(log_path, "a", encoding="utf-8") as log:
            log.write("parent done\n")

    child.join(timeout=30)
    assert child.exitcode == 0
    assert log_path.read_text(encoding="utf-8").splitlines() == ["parent done", "child"]


def test_turns_nest_in_one_thread(tmp_path):
    turns = WriterTurns(str(tmp_path / "lock"))

    with turns.turn():
        with turns.turn():
            pass
        # The outer turn still holds the flock: another descriptor cannot take it.
        assert not _flock_is_free(str(tmp_path / "lock"))

    assert _flock_is_free(str(tmp_path / "lock"))


def test_unopenable_lock_file_falls_back_to_thread_turns(tmp_path, caplog):
    turns = WriterTurns(str(tmp_path / "missing-folder" / "lock"))

    with turns.turn():
        pass

    assert "cannot open" in caplog.text


def _flock_is_free(path):
    import fcntl

    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def _hold_turn(lock_path, ready_path, seconds):
    turns = WriterTurns(lock_path)
    with turns.turn():
        open(ready_path, "w").close()
        time.sleep(seconds)


def test_turn_times_out_behind_hung_holder(tmp_path):
    lock_path = str(tmp_path / "queue.db.writer-lock")
    ready = tmp_path / "ready"
    holder = multiprocessing.get_context("fork").Process(target=_hold_turn, args=(lock_path, str(ready), 5))
    holder.start()
    try:
        deadline = time.monotonic() + 10
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ready.exists()

        with pytest.raises(BackendUnavailable, match="another process is writing it"):
            with WriterTurns(lock_path, timeout=0.3).turn():
                pass
    finally:
        holder.terminate()
        holder.join(timeout=10)
