"""When a process reading a Redis queue moves due retries to the stream and scans for expired leases.

Both steps cost a round trip to Redis, and on most calls of ``get`` under
load neither has anything to do: a retry is due only after its backoff, and
a lease can expire only after the visibility timeout. :class:`MaintenanceSchedule`
lets a process skip them in between, within stated bounds.
"""

import math
import time
import typing


class MaintenanceSchedule:
    """The due times of one process's next promote step and next scan for expired leases.

    The *promote step* moves the retries whose backoff has passed from the
    delayed set back to the stream. It is due when the earliest retry that
    this process has recorded is due, and at least ``promote_interval`` seconds
    after the previous step, because another process may have scheduled an
    earlier retry. The *scan* claims entries whose lease expired. It is due
    ``claim_interval`` seconds after the previous complete scan that found
    nothing, and at once after a read found no new entry.

    Every step starts due, so a new process, or one just forked, runs both on
    its first ``get``. Threads of a process share one schedule without a
    lock. A race between two threads can make both run a step, or make one
    thread's record of a retry be replaced by an older promote result, which
    delays that retry by at most ``promote_interval``.

    Args:
        promote_interval: Maximum seconds between two promote steps.
        claim_interval: Maximum seconds between two scans while reads keep finding new entries.
        clock: Returns the current time in seconds; ``time.monotonic`` unless a test passes another.

    Raises:
        ValueError: When an interval is not positive.
    """

    def __init__(
        self,
        promote_interval: float,
        claim_interval: float,
        clock: typing.Callable[[], float] = time.monotonic,
    ):
        for name, value in (("promote_interval", promote_interval), ("claim_interval", claim_interval)):
            if not value > 0:
                raise ValueError(f"{name} must be more than 0 seconds, got {value!r}")

        self.promote_interval = promote_interval
        self.claim_interval = claim_interval
        self._clock = clock
        self._next_promote = -math.inf
        self._next_retry = math.inf
        self._next_claim = -math.inf

    def promote_due(self) -> bool:
        """Return True when the promote step should run now."""
        return self._clock() >= min(self._next_promote, self._next_retry)

    def record_promote(self, next_retry: float) -> None:
        """Record a promote step that found the next retry due in ``next_retry`` seconds, or none when negative."""
        now = self._clock()
        self._next_promote = now + self.promote_interval
        self._next_retry = now + next_retry if next_retry >= 0 else math.inf

    def record_retry(self, delay: float) -> None:
        """Record a retry that this process scheduled ``delay`` seconds from now."""
        self._next_retry = min(self._next_retry, self._clock() + delay)

    def seconds_until_retry(self) -> float:
        """Return the seconds until the earliest known retry is due: 0 when it is due, infinity when none is known."""
        return max(self._next_retry - self._clock(), 0.0)

    def claim_due(self) -> bool:
        """Return True when the scan for expired leases should run now."""
        return self._clock() >= self._next_claim

    def record_claim(self, complete: bool) -> None:
        """Record a scan for expired leases.

        Args:
            complete: True when the scan reached the end of the pending
                entries list and found no expired lease. Otherwise the next
                scan stays due, so that it goes on where this one stopped.
        """
        self._next_claim = self._clock() + self.claim_interval if complete else -math.inf

    def record_idle_read(self) -> None:
        """Make the next scan due at once, because a read found no new entry."""
        self._next_claim = -math.inf
