"""The lock that makes one process the spool forwarder of a host.

``omnibot spool-forwarder`` holds an exclusive flock on
``<spool directory>/forwarder.lock`` while it runs. The forwarder thread of
each process that opened the queue tests the lock once a second: while
another process holds it, the thread leaves the forwarding to that process. The kernel releases
the lock when its holder exits or dies, so the threads take over within a
second, and nothing depends on a process cleaning up after itself.

The holder also sets the lock file's modification time at least once a
second while it forwards (:meth:`HostForwarderLock.beat`), so that the
threads can distinguish a holder that is stopped or hung from one that works.
"""

import fcntl
import logging
import os
import threading
import time
import typing

logger = logging.getLogger(__name__)

LOCK_NAME = "forwarder.lock"

# Seconds between two attempts to take a lock that another process holds.
_RETRY_INTERVAL = 0.5

# Seconds between two updates of the lock file's modification time.
_BEAT_INTERVAL = 1.0

# Seconds before the second attempt. A web thread's test holds the lock for
# microseconds, so a lock that is still held then is held by a forwarder.
_FIRST_RETRY_INTERVAL = 0.05


def lock_path(directory: str) -> str:
    """Return the path of the forwarder lock of the spool ``directory``."""
    return os.path.join(directory, LOCK_NAME)


def held_by_another(directory: str) -> bool:
    """Return True when a process holds the forwarder lock of ``directory``; False when it is free or missing.

    A process that holds the lock through another file descriptor counts
    as another process here, because flock locks belong to open files.
    """
    try:
        fd = os.open(lock_path(directory), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        # A shared lock, so that the threads that test at the same moment do not block one another.
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        # Closing the descriptor releases the shared lock.
        os.close(fd)


def seconds_since_beat(directory: str) -> float:
    """Return the seconds since the holder of the forwarder lock of ``directory`` last showed it works.

    Raises:
        OSError: The lock file cannot be read, for example because it is missing.
    """
    return time.time() - os.stat(lock_path(directory)).st_mtime


class HostForwarderLock:
    """The exclusive forwarder lock of one spool directory, held until :meth:`release` or process exit."""

    def __init__(self, directory: str):
        self.path = lock_path(directory)
        self._fd: typing.Optional[int] = None
        self._next_beat = 0.0

    def acquire(self, stopping: threading.Event) -> bool:
        """Take the lock, waiting while another process holds it; return False when ``stopping`` was set first.

        Raises:
            OSError: The lock file cannot be created or opened.
        """
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        # Readable by all, so that web processes of another user can test the lock; it contains nothing.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        attempts = 0
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._fd = fd
                self.beat()
                return True
            except BlockingIOError:
                attempts += 1
                if attempts == 2:
                    logger.info("the spool forwarder lock %s is taken by another process; waiting until it is released", self.path)
            if stopping.wait(_FIRST_RETRY_INTERVAL if attempts == 1 else _RETRY_INTERVAL):
                os.close(fd)
                return False

    def beat(self) -> None:
        """Set the lock file's modification time to now, at most once per second, while the lock is held."""
        now = time.monotonic()
        if self._fd is None or now < self._next_beat:
            return
        self._next_beat = now + _BEAT_INTERVAL
        os.utime(self._fd)

    def release(self) -> None:
        """Release the lock; the file stays, so that the other processes find it free."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
