"""Renewing the leases of the messages a worker is processing, so a long message is not delivered twice.

A leased message goes back to the queue when its visibility timeout passes
without an ack or a fail, because its worker may have died. A worker that is
alive but slow, with several slow callbacks or a Slack call waiting for a
long ``Retry-After``, would then see its message handed to a second worker.
:class:`LeaseKeeper` restarts the visibility timeout of every message in hand
every sixth of that timeout, so a lease expires only when its worker died or
could not renew it for five sixths of the timeout.
"""

import contextlib
import logging
import threading
import typing

from omnibot.errors import BackendUnavailable

logger = logging.getLogger(__name__)

RENEWALS_PER_TIMEOUT = 6
"""Renewals per visibility timeout."""


class LeaseKeeper:
    """A thread that renews the leases registered with :meth:`hold`.

    Args:
        queue: Returns the queue the messages were leased from. It is
            called by the thread, not here, so a keeper can be made while
            the backend is unreachable.
        visibility_timeout: The queue's visibility timeout in seconds; read
            from ``queue().policy`` by the thread when None. Leases are
            renewed every sixth of it, so a lease expires only when no
            renewal succeeded for five sixths of it.
    """

    def __init__(self, queue: typing.Callable[[], typing.Any], visibility_timeout: typing.Optional[float] = None):
        self._queue = queue
        self.interval: typing.Optional[float] = None
        if visibility_timeout is not None:
            self.interval = visibility_timeout / RENEWALS_PER_TIMEOUT
        self._lock = threading.Lock()
        self._in_hand: typing.Dict[int, typing.Any] = {}
        self._stopping = threading.Event()
        self._thread: typing.Optional[threading.Thread] = None

    @contextlib.contextmanager
    def hold(self, delivery) -> typing.Iterator[None]:
        """Renew ``delivery``'s lease while the ``with`` block runs."""
        key = id(delivery)
        with self._lock:
            self._in_hand[key] = delivery
        try:
            yield
        finally:
            with self._lock:
                self._in_hand.pop(key, None)

    def start(self) -> "LeaseKeeper":
        """Start the renewing thread and return at once."""
        self._thread = threading.Thread(target=self._run, name="omnibot-lease-keeper", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop renewing. Leases still in hand then expire after the visibility timeout."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def renew(self) -> None:
        """Renew every lease in hand now; the thread calls this once per interval."""
        with self._lock:
            deliveries = list(self._in_hand.values())
        if not deliveries:
            return

        try:
            renewed = self._queue().extend_leases(deliveries)
        except BackendUnavailable as error:
            logger.warning(
                "could not renew the leases of %d messages in hand (%s); they go to another worker "
                "if their visibility timeout passes first",
                len(deliveries),
                error,
            )
            return

        for delivery, was_renewed in zip(deliveries, renewed):
            if not was_renewed and self._is_in_hand(delivery):
                logger.warning(
                    "the lease of message %s (attempt %d) passed to another worker before it was renewed; "
                    "both workers may carry out its results",
                    delivery.id,
                    delivery.attempts,
                )

    def _is_in_hand(self, delivery) -> bool:
        # A message whose processing ended while its renewal ran may be acked already, which is no loss.
        with self._lock:
            return id(delivery) in self._in_hand

    def _run(self) -> None:
        while self.interval is None:
            try:
                self.interval = self._queue().policy.visibility_timeout / RENEWALS_PER_TIMEOUT
            except BackendUnavailable:
                # The worker's threads log the outage; try again in a second.
                if self._stopping.wait(1.0):
                    return

        while not self._stopping.wait(self.interval):
            try:
                self.renew()
            except Exception:  # noqa: BLE001 - the thread must keep renewing the other leases
                logger.exception("renewing leases failed")
