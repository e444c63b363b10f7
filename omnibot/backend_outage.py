"""Logging of a backend outage: one line when it starts and one when it ends, whatever the number of threads.

Every thread of a worker meets an outage on its own, so logging each
failure would repeat the same error once per thread and per retry.
:class:`OutageLog` logs the first failure at ERROR, repeats it at most once
per :data:`REPEAT_INTERVAL` while the outage lasts, and logs at INFO when a
thread reaches the backend again, with how long the outage lasted.
"""

import logging
import threading
import time
import typing

# Seconds between two ERROR lines of one outage.
REPEAT_INTERVAL = 60.0


class OutageLog:
    """The state of one backend outage as the threads of one process see it.

    Args:
        logger: Where the lines go.
        backend: The backend's name in the lines, such as ``"queue backend"``.
        clock: Returns seconds; ``time.monotonic`` unless a test gives another.
    """

    def __init__(self, logger: logging.Logger, backend: str, clock: typing.Callable[[], float] = time.monotonic):
        self._logger = logger
        self._backend = backend
        self._clock = clock
        self._lock = threading.Lock()
        self._since: typing.Optional[float] = None
        self._last_logged = 0.0
        self._failures = 0

    def failed(self, error: BaseException, retry_in: float) -> None:
        """Record that a thread could not reach the backend and will try again in ``retry_in`` seconds.

        Logs at ERROR for the first failure of an outage and then at most
        once per :data:`REPEAT_INTERVAL`; at DEBUG otherwise.
        """
        now = self._clock()
        with self._lock:
            self._failures += 1
            first = self._since is None
            if first:
                self._since = now
            due = first or now - self._last_logged >= REPEAT_INTERVAL
            if due:
                self._last_logged = now
            failures, since = self._failures, self._since

        if not due:
            self._logger.debug("%s unavailable (%s); this thread retries in %.1f s", self._backend, error, retry_in)
        elif first:
            self._logger.error("%s unavailable (%s); retrying in %.1f s", self._backend, error, retry_in)
        else:
            self._logger.error(
                "%s still unavailable after %.0f s and %d failed attempts (%s); retrying in %.1f s",
                self._backend, now - since, failures, error, retry_in,
            )

    def reached(self) -> None:
        """Record that a thread reached the backend; logs at INFO when that ends an outage."""
        if self._since is None:
            # The usual case, read without the lock. A thread that reads None
            # while another thread records a failure logs nothing; the next
            # call after a successful get logs the recovery.
            return
        now = self._clock()
        with self._lock:
            since, failures = self._since, self._failures
            self._since = None
            self._failures = 0
        if since is not None:
            self._logger.info("%s available again after %.1f s (%d failed attempts)", self._backend, now - since, failures)
