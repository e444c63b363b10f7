"""Daemon threads that run queued callbacks under a deadline, reused when idle.

A worker runs each callback in a thread of its own, so it can stop waiting
at ``CALLBACK_TIMEOUT`` while the callback keeps running. Starting a thread
for every callback made each call wait until the new thread was scheduled,
which on a busy 2-core machine was a fifth of a worker's wall time in a
profile of the end-to-end benchmark. :class:`CallbackThreads` keeps the
threads: a thread that finished its callback waits for the next one, and a
new thread starts only when every thread is busy, for example with
callbacks that timed out and still run.

The threads are daemon threads, so a callback that never returns does not
keep the process from exiting.
"""

import logging
import queue
import threading
import typing

from omnibot.per_process import PerProcess

logger = logging.getLogger(__name__)


class CallbackThreads:
    """A growing set of daemon threads that run submitted functions, one at a time each.

    Safe to share between threads. There is no upper bound: each thread is
    either idle or running a function, and a thread starts only when none is
    idle.
    """

    def __init__(self):
        self._jobs: "queue.SimpleQueue[typing.Callable[[], None]]" = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0
        self.started = 0

    def submit(self, function: typing.Callable[[], None]) -> None:
        """Run ``function`` in an idle thread, or in a new one when none is idle.

        ``function`` must catch its own exceptions; one that escapes is logged.
        """
        with self._lock:
            start = self._idle == 0
            if start:
                self.started += 1
            else:
                self._idle -= 1

        self._jobs.put(function)
        if start:
            threading.Thread(target=self._run, name="omnibot-callback", daemon=True).start()

    def _run(self) -> None:
        while True:
            function = self._jobs.get()
            try:
                function()
            except BaseException:  # noqa: BLE001 - the thread must stay available
                logger.exception("unexpected error in a callback thread; the thread stays available")
            with self._lock:
                self._idle += 1


_threads: PerProcess[CallbackThreads] = PerProcess(CallbackThreads)


def callback_threads() -> CallbackThreads:
    """Return this process's :class:`CallbackThreads`, created on first use and again after fork()."""
    return _threads.get()
