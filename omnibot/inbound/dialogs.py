"""Work done inside a Slack request: opening dialogs and running synchronous callbacks.

Slack shows the user an error when a slash command or interactive request
gets no response within 3 seconds, and a ``trigger_id`` can be exchanged for
a dialog only within 3 seconds of the interaction. So this work cannot wait
for the queue. Each step runs in a thread, and the request gives
up waiting once a shared :class:`Deadline` of :data:`SYNC_DEADLINE` seconds
has passed. A step that finishes later has its result discarded.
"""

import json
import logging
import threading
import time
import typing

from omnibot.errors import CallbackError
from omnibot.processing import callbacks

logger = logging.getLogger(__name__)

SYNC_DEADLINE = 2.5
"""Seconds a request waits for its inline work, which leaves about half a second of Slack's 3 for the rest."""

VIEW_TYPES = ("modal",)


class Deadline:
    """A point in time shared by every inline step of one request.

    Args:
        seconds: Time from now until the deadline; None means :data:`SYNC_DEADLINE`.
    """

    def __init__(self, seconds: typing.Optional[float] = None):
        self._end = time.monotonic() + (SYNC_DEADLINE if seconds is None else seconds)

    def remaining(self) -> float:
        """Return the seconds left, never less than 0."""
        return max(0.0, self._end - time.monotonic())


class TimedOut(Exception):
    """An inline step did not finish before the deadline."""


def run_with_deadline(function: typing.Callable[[], typing.Any], timeout: float, description: str, trace) -> typing.Any:
    """Call ``function`` in a daemon thread and return its result if it finishes within ``timeout`` seconds.

    Python cannot stop a thread, so a late ``function`` keeps running until
    it returns. Its result is then logged as discarded and never used. With
    no time left, ``function`` is not started at all.

    Raises:
        TimedOut: ``function`` did not finish in time, or was not started.
        Exception: Whatever ``function`` raised, re-raised in the caller's thread.
    """
    if timeout <= 0:
        raise TimedOut(f"{description} was not started because the request deadline has passed")

    outcome: typing.Dict[str, typing.Any] = {}
    abandoned = threading.Event()
    started = time.monotonic()

    def target():
        try:
            outcome["result"] = function()
        except BaseException as error:  # noqa: BLE001 - handed to the waiting thread
            outcome["error"] = error
        if abandoned.is_set():
            logger.warning(
                "%s finished %.1f s after it started, too late for the response; its result is discarded",
                description,
                time.monotonic() - started,
                extra=trace,
            )

    thread = threading.Thread(target=target, name="omnibot-inline", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        abandoned.set()
        raise TimedOut(f"{description} timed out after {timeout:.1f} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("result")


def dialog_call(dialog: typing.Mapping, trigger_id: str) -> typing.Tuple[str, dict]:
    """Return the Web API method and arguments that open a handler's ``dialog``.

    A ``dialog`` with ``blocks`` or a view ``type`` (``modal``) is a Block
    Kit view and opens with ``views.open``. Any other is a legacy dialog
    and opens with ``dialog.open``.
    """
    if "blocks" in dialog or dialog.get("type") in VIEW_TYPES:
        return "views.open", {"trigger_id": trigger_id, "view": dict(dialog)}
    return "dialog.open", {"trigger_id": trigger_id, "dialog": dict(dialog)}


def open_dialog(runtime, bot, dialog: typing.Mapping, trigger_id: str, deadline: Deadline, trace) -> bool:
    """Open ``dialog`` for the user who triggered ``trigger_id``; return whether Slack opened it.

    A failure or a timeout is logged and does not change the HTTP response.
    """
    method, kwargs = dialog_call(dialog, trigger_id)
    try:
        answer = run_with_deadline(
            lambda: runtime.clients.call(bot, method, kwargs, trace=trace),
            deadline.remaining(),
            method,
            trace,
        )
    except TimedOut as error:
        logger.error("could not open the handler's dialog: %s", error, extra=trace)
        return False

    if not answer.get("ok"):
        logger.error("Slack API %s failed: %s", method, answer.get("error"), extra=trace)
        return False
    logger.info("opened the handler's dialog with %s", method, extra=trace)
    return True


def run_synchronous(
    build_container: typing.Callable[[], typing.Any],
    specs: typing.Sequence,
    deadline: Deadline,
    trace,
) -> typing.Optional[dict]:
    """Build a container and call each synchronous callback with it, in config order.

    The returned body merges the callbacks' dicts, later keys winning. A
    callback that raises or returns something other than a dict is logged
    and adds nothing.

    Returns:
        The merged dict, or None when the deadline passed first or the
        merged dict cannot be encoded as JSON.
    """
    names = ", ".join(spec.module for spec in specs)

    def work():
        container = build_container()
        body = {}
        for spec in specs:
            logger.info("calling synchronous callback %s", spec.module, extra=trace)
            try:
                result = callbacks.call(spec, container)
            except CallbackError as error:
                logger.error("%s", error, exc_info=error.__cause__, extra=trace)
                continue
            if result:
                body.update(result)
        return body

    try:
        body = run_with_deadline(work, deadline.remaining(), f"synchronous callbacks {names}", trace)
    except TimedOut as error:
        logger.error("%s; responding without their result", error, extra=trace)
        return None

    try:
        json.dumps(body)
    except (TypeError, ValueError) as error:
        logger.error("synchronous callbacks %s returned a body that is not JSON: %s", names, error, extra=trace)
        return None
    return body
