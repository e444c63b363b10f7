"""Calling a configured callback, with an optional deadline, and checking what it returned.

Python cannot stop a thread, so a callback with a deadline runs in a daemon
thread of its own while the calling worker thread waits for it. When the
deadline passes, the worker thread stops waiting and reports a
:class:`~omnibot.errors.CallbackError`, exactly as if the callback had
raised. The queue then retries the message. The abandoned thread keeps
running until the callback returns by itself, and whatever it returns then
is logged and discarded, never applied.
"""

import logging
import threading
import time
import typing

from omnibot.config import imports
from omnibot.errors import CallbackError
from omnibot.processing.callback_threads import callback_threads

logger = logging.getLogger(__name__)


class _Abandoned:
    """The count of timed-out callbacks whose threads are still running in this process."""

    def __init__(self):
        self._lock = threading.Lock()
        self._count = 0

    def add(self) -> int:
        with self._lock:
            self._count += 1
            return self._count

    def remove(self) -> int:
        with self._lock:
            self._count -= 1
            return self._count

    @property
    def count(self) -> int:
        with self._lock:
            return self._count


_abandoned = _Abandoned()


def abandoned_count() -> int:
    """Return how many timed-out callbacks are still running in this process."""
    return _abandoned.count


def resolve(spec) -> typing.Callable:
    """Return the callable of a :class:`CallbackSpec`, importing it when the config did not."""
    if spec.function is not None:
        return spec.function
    try:
        return imports.import_callable(spec.module)
    except imports.ImportProblem as problem:
        raise CallbackError(str(problem)) from problem


def call(spec, container, timeout: typing.Optional[float] = None) -> typing.Optional[dict]:
    """Call ``function(container=container, **kwargs)``, waiting at most ``timeout`` seconds.

    Args:
        spec: The :class:`~omnibot.config.model.CallbackSpec` to call.
        container: The container passed as ``container``.
        timeout: Seconds to wait for the callback. None or a value of 0 or
            less calls it in the current thread without a deadline.

    Returns:
        The result dict (``{}`` for a callback that returned None), or None
        when the callback returned something that is not a dict (logged,
        because retrying would not change it).

    Raises:
        CallbackError: The callback raised (the original exception is
            chained) or did not return within ``timeout`` seconds.
    """
    function = resolve(spec)
    kwargs = dict(spec.kwargs)

    if timeout is None or timeout <= 0:
        try:
            result = function(container=container, **kwargs)
        except Exception as error:  # noqa: BLE001 - callbacks are user code
            raise CallbackError(f"callback {spec.module} raised {type(error).__name__}: {error}") from error
    else:
        result = _call_with_deadline(spec.module, lambda: function(container=container, **kwargs), timeout, container.event_trace)

    return _checked(spec, container, result)


def _checked(spec, container, result) -> typing.Optional[dict]:
    if result is None:
        return {}
    if not isinstance(result, dict):
        logger.error(
            "callback %s returned %s instead of a dict; its result is ignored",
            spec.module,
            type(result).__name__,
            extra=container.event_trace,
        )
        return None
    return result


class _Outcome:
    """The result or exception that a callback thread hands to the waiting thread.

    One lock makes "the callback finished" and "the waiter gave up" exclusive,
    so a result stored after the deadline is never read by the waiter.
    """

    def __init__(self):
        self.lock = threading.Lock()
        self.finished = threading.Event()
        self.abandoned = False
        self.result = None
        self.error: typing.Optional[BaseException] = None


def _call_with_deadline(name: str, function: typing.Callable[[], typing.Any], timeout: float, trace) -> typing.Any:
    """Run ``function`` in a callback thread and return its result if it finishes within ``timeout`` seconds.

    Raises:
        CallbackError: ``function`` raised, or did not finish in time.
    """
    outcome = _Outcome()
    started = time.monotonic()

    def target():
        try:
            result, error = function(), None
        except BaseException as raised:  # noqa: BLE001 - handed to the waiting thread or logged
            result, error = None, raised

        with outcome.lock:
            if not outcome.abandoned:
                outcome.result, outcome.error = result, error
                outcome.finished.set()
                return

        _log_late_finish(name, time.monotonic() - started, timeout, error, trace)

    callback_threads().submit(target)
    outcome.finished.wait(timeout)

    with outcome.lock:
        if not outcome.finished.is_set():
            outcome.abandoned = True
            still_running = _abandoned.add()

    if outcome.abandoned:
        raise CallbackError(
            f"callback {name} timed out after {timeout:g} s (CALLBACK_TIMEOUT), "
            f"and {still_running} timed-out callback(s) are still running in this process"
        )

    if outcome.error is not None:
        error = outcome.error
        if not isinstance(error, Exception):
            # SystemExit and KeyboardInterrupt pass through, as they do when the callback runs inline.
            raise error
        raise CallbackError(f"callback {name} raised {type(error).__name__}: {error}") from error
    return outcome.result


def _log_late_finish(name, elapsed, timeout, error, trace) -> None:
    still_running = _abandoned.remove()
    ending = f"raised {type(error).__name__}" if error is not None else "returned"
    logger.warning(
        "callback %s %s %.1f s after it started, %.1f s past its deadline, so its result is discarded "
        "(%d timed-out callback(s) still running)",
        name,
        ending,
        elapsed,
        elapsed - timeout,
        still_running,
        extra=trace,
    )
