"""Turns for the writers of one SQLite file, across threads and processes.

SQLite lets one connection write at a time. A connection that finds the
file locked waits in SQLite's busy handler, which sleeps 1 ms, then 2,
then 5 and more before it tries again, however soon the lock is released.
Under a burst of events most writers would sleep. omnibot's writers take
turns on a lock that wakes the next one at once instead: a thread lock
inside a process, and ``flock`` on a lock file beside the database between
processes. The kernel drops an ``flock`` when its process dies, so a
crashed writer never leaves the file locked. A writer that hangs while it
has the turn makes the others give up after a timeout, as SQLite's busy
timeout would.
"""

import contextlib
import fcntl
import logging
import os
import threading
import time
import typing
import weakref

from omnibot.errors import BackendUnavailable

logger = logging.getLogger(__name__)

# A process that waits for another process's turn tries again after this
# pause, doubling it up to the maximum, in seconds. A turn lasts about 0.1 to
# 0.5 ms, and a maximum of 2 ms doubled the p99 of the acknowledgement benchmark.
_FIRST_RETRY_PAUSE = 0.00005
_MAX_RETRY_PAUSE = 0.0005


class WriterTurns:
    """A lock shared by every writer of one database file on this host.

    Turns nest: a thread that has a turn may take it again. Where the lock
    file cannot be opened (a read-only folder, say), only the threads of
    each process take turns, and SQLite's busy timeout orders the processes.

    Args:
        path: The lock file, created when missing.
        timeout: Seconds to wait for a turn before raising BackendUnavailable.
    """

    def __init__(self, path: str, timeout: float = 5.0):
        self.path = path
        self.timeout = timeout
        self._state: typing.Optional[_ProcessTurns] = None

        # A weak reference, so that the fork hook does not keep this object alive.
        turns = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: (alive := turns()) is not None and alive._close_inherited())

    @contextlib.contextmanager
    def turn(self) -> typing.Iterator[None]:
        """Wait for this thread's turn, and hold it for the ``with`` block.

        Raises:
            BackendUnavailable: No turn came within ``timeout`` seconds.
        """
        state = self._process_state()
        deadline = time.monotonic() + self.timeout
        if not state.thread_lock.acquire(timeout=self.timeout):
            raise BackendUnavailable(
                f"timed out after {self.timeout:g} s waiting to write {self.path}: another thread of this process is writing it"
            )
        try:
            if state.depth == 0 and state.fd is not None:
                self._lock_file(state.fd, deadline)
            state.depth += 1
            try:
                yield
            finally:
                state.depth -= 1
                if state.depth == 0 and state.fd is not None:
                    fcntl.flock(state.fd, fcntl.LOCK_UN)
        finally:
            state.thread_lock.release()

    def _lock_file(self, fd: int, deadline: float) -> None:
        """Take the flock of ``fd``, trying again after short pauses until ``deadline``.

        A blocking flock cannot time out, so a process that hangs with the
        lock would block every other writer for good.
        """
        pause = _FIRST_RETRY_PAUSE
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise BackendUnavailable(
                        f"timed out after {self.timeout:g} s waiting to write {self.path}: another process is writing it"
                    ) from None
            time.sleep(pause)
            pause = min(pause * 2, _MAX_RETRY_PAUSE)

    def _process_state(self) -> "_ProcessTurns":
        """Return this process's state, made on first use after start or fork.

        A thread lock inherited through fork() may be held by a parent thread
        that does not exist in the child, and an inherited file descriptor
        shares its flock with the parent, so a child makes both anew. Two
        threads racing here may each make one; their flocks, on separate
        file descriptors, still exclude each other.
        """
        state = self._state
        if state is None or state.pid != os.getpid():
            state = _ProcessTurns(os.getpid(), threading.RLock(), self._open_lock_file())
            self._state = state
        return state

    def _close_inherited(self) -> None:
        """Close the lock file descriptor inherited through fork(); run in the child before any other thread starts.

        The inherited descriptor shares the parent's flock, which would
        outlive the parent while the child keeps it open. Closing the child's
        copy leaves the parent's lock as it is.
        """
        state = self._state
        self._state = None
        if state is not None and state.fd is not None:
            os.close(state.fd)

    def _open_lock_file(self) -> typing.Optional[int]:
        try:
            # Readable and writable by every user the umask allows, so that a
            # command run as another user does not lock the service out of it.
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError as error:
            logger.warning("cannot open %s (%s); processes writing the same SQLite file will wait in SQLite's busy handler", self.path, error)
            return None


class _ProcessTurns:
    """The lock state of one process: its thread lock, its lock file descriptor, and the nesting depth."""

    def __init__(self, pid: int, thread_lock: threading.RLock, fd: typing.Optional[int]):
        self.pid = pid
        self.thread_lock = thread_lock
        self.fd = fd
        self.depth = 0
