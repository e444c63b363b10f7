"""CallbackThreads reuses idle daemon threads and starts new ones only when all are busy."""

import os
import threading
import time

from omnibot.processing.callback_threads import CallbackThreads, callback_threads


def run_and_wait(threads, function):
    done = threading.Event()

    def job():
        function()
        done.set()

    threads.submit(job)
    assert done.wait(5)


def wait_idle(threads):
    """Wait until one thread has finished its function and waits for the next."""
    deadline = time.monotonic() + 5
    while threads._idle == 0 and time.monotonic() < deadline:
        time.sleep(0.01)


def test_idle_thread_is_reused():
    threads = CallbackThreads()
    names = []

    for _ in range(5):
        run_and_wait(threads, lambda: names.append(threading.current_thread().ident))
        wait_idle(threads)

    assert threads.started == 1
    assert len(set(names)) == 1


def test_busy_thread_gets_company():
    threads = CallbackThreads()
    release = threading.Event()
    threads.submit(lambda: release.wait(5))

    run_and_wait(threads, lambda: None)
    release.set()

    assert threads.started == 2


def test_threads_are_daemons():
    threads = CallbackThreads()
    daemon = []

    run_and_wait(threads, lambda: daemon.append(threading.current_thread().daemon))

    assert daemon == [True]


def test_escaped_exception_keeps_thread(caplog):
    threads = CallbackThreads()

    def explode():
        raise RuntimeError("boom")

    threads.submit(explode)
    wait_idle(threads)
    run_and_wait(threads, lambda: None)

    assert threads.started == 1
    assert "unexpected error in a callback thread" in caplog.text


def test_forked_child_gets_its_own_threads():
    parent = callback_threads()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        child = callback_threads()
        done = threading.Event()
        child.submit(done.set)
        ok = child is not parent and done.wait(5)
        os.write(write_end, b"1" if ok else b"0")
        os._exit(0)

    os.close(write_end)
    os.waitpid(pid, 0)
    assert os.read(read_end, 1) == b"1"
    os.close(read_end)
