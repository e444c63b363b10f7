"""``omnibot worker``: threads that take messages from the queue and process them.

Each thread leases one message at a time, so on SIGTERM a worker stops
taking new messages, finishes the ones in hand and exits. While a message is
in hand its lease is renewed (:class:`omnibot.lease_keeper.LeaseKeeper`), so
a slow message is not handed to a second worker. A message it never
acknowledged, because the process was killed, is delivered again after the
visibility timeout.

When the queue or cache backend is unavailable (``BackendUnavailable``), a
thread waits before its next ``queue.get``, doubling the wait from 0.5 s up
to :data:`MAX_BACKEND_BACKOFF`. The process logs one ERROR line when the
queue becomes unreachable, repeated once a minute, and one INFO line when
a thread reaches it again (:class:`omnibot.backend_outage.OutageLog`). A
message whose processing, ``ack`` or ``fail`` met an unavailable backend
stays leased, so the queue delivers it again after the visibility timeout
instead of losing it.
"""

import logging
import threading
import time
import typing

from omnibot.backend_outage import OutageLog
from omnibot.errors import BackendUnavailable, CallbackError
from omnibot.lease_keeper import LeaseKeeper
from omnibot.processing.processor import Processor, envelope_trace

logger = logging.getLogger(__name__)

MAX_BACKEND_BACKOFF = 30.0

# The outcome of a message whose processing, ack or fail met an unavailable backend.
STALLED = "stalled"


class Worker:
    """A pool of processing threads.

    Args:
        runtime: The :class:`omnibot.runtime.Runtime` to process with.
        concurrency: Number of threads.
        poll_timeout: Seconds one ``queue.get`` waits before checking for stop.
    """

    def __init__(self, runtime, concurrency: int = 10, poll_timeout: float = 1.0):
        self.runtime = runtime
        self.concurrency = max(1, int(concurrency))
        self.poll_timeout = poll_timeout
        self.processor = Processor(runtime)
        self._stopping = threading.Event()
        self._threads: typing.List[threading.Thread] = []
        self._queue_outage = OutageLog(logger, "queue backend")
        # The queue is opened at the first renewal, so a worker starts while its backend is down.
        self._leases = LeaseKeeper(lambda: runtime.queue)

    def start(self) -> "Worker":
        """Start the threads and return at once."""
        logger.info("worker starting with %d threads", self.concurrency)
        if not self.runtime.settings.post_metadata:
            logger.info(
                "posts carry no metadata marks (OMNIBOT_POST_METADATA is off), "
                "so a message delivered again can post its replies twice"
            )
        self._leases.start()
        for number in range(self.concurrency):
            thread = threading.Thread(target=self._loop, name=f"omnibot-worker-{number}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, grace_period: float = 30.0) -> bool:
        """Stop taking messages and wait up to ``grace_period`` seconds for those in hand.

        Returns:
            True when every thread finished within the grace period.
        """
        self._stopping.set()
        deadline = time.monotonic() + grace_period
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        finished = not any(thread.is_alive() for thread in self._threads)
        self._leases.stop()
        if finished:
            logger.info("worker stopped")
        else:
            logger.warning("worker stopped with messages still in hand; the queue will redeliver them")
        return finished

    def request_stop(self) -> None:
        """Ask the threads to stop after their current message; safe in signal handlers."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def wait(self) -> None:
        """Block until :meth:`stop` is called from another thread or a signal handler."""
        while not self._stopping.wait(0.5):
            pass

    def _loop(self):
        backoff = 0.0
        while not self._stopping.is_set():
            try:
                delivery = self.runtime.queue.get(timeout=self.poll_timeout)
            except BackendUnavailable as error:
                backoff = _next_backoff(backoff)
                self._queue_outage.failed(error, backoff)
                self._stopping.wait(backoff)
                continue

            self._queue_outage.reached()

            if delivery is None or self.handle(delivery):
                backoff = 0.0
                continue

            backoff = _next_backoff(backoff)
            logger.warning("backend unavailable while handling message %s; next get in %.1f s", delivery.id, backoff)
            self._stopping.wait(backoff)

    def handle(self, delivery) -> bool:
        """Process one leased message, then acknowledge it or record the failure.

        Returns:
            False when a backend was unavailable during processing, ``ack`` or
            ``fail``. The message then stays leased and is delivered again
            after the visibility timeout.
        """
        kind = delivery.body.get("kind")
        stats = self.runtime.stats
        stats.message_received(kind)
        bot = self.runtime.config.bot_by_app_id(delivery.body.get("app_id"))
        trace = dict(envelope_trace(bot, delivery.body), message_id=delivery.id, attempt=delivery.attempts)

        with stats.handling_message(kind):
            outcome = self._handle(delivery, trace)
        stats.message_finished(kind, outcome)
        return outcome != STALLED

    def _handle(self, delivery, trace) -> str:
        """Process, then ack or fail one message; return ``acked``, ``retried``, ``dead_lettered`` or ``stalled``."""
        queue = self.runtime.queue
        try:
            # The lease is renewed during processing only, because a renewal
            # that raced the ack would fail and log a false warning.
            with self._leases.hold(delivery):
                self.processor.process(delivery.body, delivery.id, delivery.attempts)
        except BackendUnavailable as error:
            # Not the message's fault, so no failure is recorded: fail() would
            # spend attempts quickly and could dead-letter it during an outage.
            logger.error(
                "backend unavailable while processing message %s (attempt %d): %s; "
                "it stays leased and is delivered again after the visibility timeout",
                delivery.id,
                delivery.attempts,
                error,
                extra=trace,
            )
            return STALLED
        except CallbackError as error:
            return self._fail(queue, delivery, str(error), trace)
        except Exception as error:  # noqa: BLE001 - one bad message must not stop the thread
            logger.exception("processing message %s failed", delivery.id, extra=trace)
            return self._fail(queue, delivery, f"{type(error).__name__}: {error}", trace)

        try:
            queue.ack(delivery)
        except BackendUnavailable as error:
            logger.error(
                "could not acknowledge message %s (%s); it will be delivered again", delivery.id, error, extra=trace
            )
            return STALLED
        return "acked"

    @staticmethod
    def _fail(queue, delivery, error, trace) -> str:
        try:
            dead = queue.fail(delivery, error)
        except BackendUnavailable as backend_error:
            logger.error(
                "could not record the failure of message %s (%s); it will be delivered again",
                delivery.id,
                backend_error,
                extra=trace,
            )
            return STALLED
        if dead:
            logger.error(
                "message %s failed %d times and was moved to the dead-letter store: %s",
                delivery.id,
                delivery.attempts,
                error,
                extra=trace,
            )
            return "dead_lettered"
        logger.warning(
            "message %s failed on attempt %d and will be retried: %s",
            delivery.id,
            delivery.attempts,
            error,
            extra=trace,
        )
        return "retried"


def _next_backoff(previous: float) -> float:
    """Return the seconds to wait after another backend error: 0.5, then double, at most MAX_BACKEND_BACKOFF."""
    return min(MAX_BACKEND_BACKOFF, max(0.5, previous * 2))
