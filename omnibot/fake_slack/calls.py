"""The ordered log of requests that the fake Slack server received."""

import copy
import threading
import time

# The oldest tenth of the log is dropped when it grows beyond this many
# calls, so that a server left running under load keeps bounded memory.
MAX_CALLS = 100_000


class CallLog:
    """A thread-safe, ordered list of call records.

    Each record is a dict with ``method``, ``path``, ``args``, ``headers``,
    ``status``, ``error`` and ``time``. Calls are numbered from 0 in arrival order, and
    the numbering restarts when the log is cleared. Dropping old calls beyond
    ``max_calls`` does not renumber the remaining ones.
    """

    def __init__(self, max_calls: int = MAX_CALLS):
        self._max_calls = max_calls
        self._calls = []
        self._first_index = 0
        self._condition = threading.Condition()

    def record(self, call: dict) -> None:
        """Append a call record and wake up threads in :meth:`wait_for`."""
        with self._condition:
            self._calls.append(call)
            if len(self._calls) > self._max_calls:
                dropped = max(1, self._max_calls // 10)
                del self._calls[:dropped]
                self._first_index += dropped
            self._condition.notify_all()

    def select(self, method=None, since: int = 0) -> list:
        """Return the recorded calls numbered ``since`` and later, optionally of one method.

        The records are the log's own dicts. Callers that hand them out should copy them.
        """
        with self._condition:
            start = max(since - self._first_index, 0)
            calls = self._calls[start:]
        if method is not None:
            calls = [call for call in calls if call["method"] == method]
        return calls

    def next_index(self) -> int:
        """Return the number that the next recorded call gets."""
        with self._condition:
            return self._first_index + len(self._calls)

    def clear(self) -> None:
        """Forget every call and restart the numbering at 0."""
        with self._condition:
            self._calls = []
            self._first_index = 0

    def wait_for(self, method: str, count: int, timeout: float) -> list:
        """Wait until at least ``count`` calls of ``method`` were recorded and return copies of all of them.

        Raises:
            AssertionError: Fewer calls arrived within ``timeout`` seconds. The
                message lists the calls recorded so far.
        """
        deadline = time.monotonic() + timeout
        with self._condition:
            while True:
                matching = [call for call in self._calls if call["method"] == method]
                if len(matching) >= count:
                    return copy.deepcopy(matching)

                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = [describe_call(call) for call in self._calls]
                    break
                self._condition.wait(remaining)

        listing = "\n  ".join(seen) if seen else "(none)"
        raise AssertionError(
            f"timed out after {timeout} s waiting for {count} {method} calls; "
            f"{len(matching)} arrived. Calls recorded:\n  {listing}"
        )


def describe_call(call: dict, text_limit: int = 80) -> str:
    """Return a one-line summary of a call: its method and main arguments, text cut to ``text_limit`` characters."""
    args = call.get("args") or {}
    parts = [call["method"]]
    if call["method"] == "response_url":
        parts.append(call["path"])

    for name in ("channel", "thread_ts", "user", "users", "ts", "name"):
        value = args.get(name)
        if value not in (None, ""):
            parts.append(f"{name}={value}")

    text = args.get("text")
    if isinstance(text, str) and text:
        if len(text) > text_limit:
            text = text[: text_limit - 3] + "..."
        parts.append(f"text={text!r}")

    status = call.get("status")
    if status is not None and status != 200:
        parts.append(f"-> HTTP {status}")
    if call.get("error"):
        parts.append(f"-> {call['error']}")
    return " ".join(parts)
