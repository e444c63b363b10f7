"""Injected failures: rate limits, server errors, Slack errors and slow responses."""

import dataclasses
import random
import threading

# The method name that matches every method, hooks included.
ANY_METHOD = "*"

# Seconds sent in Retry-After for a 429 fault that does not set retry_after.
DEFAULT_RETRY_AFTER = 1


@dataclasses.dataclass
class Fault:
    """One injected failure for calls of ``method``.

    Attributes:
        method: A Web API method such as ``chat.postMessage``, ``response_url``
            for ``/hooks/`` posts, or ``*`` for every call.
        status: The HTTP status to respond with, such as 429 or 500. None keeps 200.
        error: Slack's error code for the body ``{"ok": false, "error": ...}``.
            None picks ``ratelimited`` for 429, ``internal_error`` for other
            statuses, and leaves a call without ``status`` unchanged.
        retry_after: Seconds for the ``Retry-After`` header. A 429 without it sends 1.
        times: How many more calls this fault hits. Ignored when ``rate`` is set.
        rate: The probability, from 0 to 1, that each call is hit. A fault
            with a rate stays until the faults are cleared.
        delay: Seconds to wait before responding.
    """

    method: str
    status: int | None = None
    error: str | None = None
    retry_after: int | None = None
    times: int | None = 1
    rate: float | None = None
    delay: float | None = None

    def __post_init__(self):
        _validate(self)

    @property
    def replaces_response(self) -> bool:
        """Whether the fault replaces the method's response, rather than only delaying it."""
        return self.status is not None or self.error is not None

    def error_response(self) -> tuple:
        """Return ``(status, error, headers)`` of the replacement response."""
        status = self.status if self.status is not None else 200
        error = self.error
        if error is None:
            error = "ratelimited" if status == 429 else "internal_error"

        headers = {}
        retry_after = self.retry_after
        if retry_after is None and status == 429:
            retry_after = DEFAULT_RETRY_AFTER
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        return status, error, headers

    def to_dict(self) -> dict:
        """Return the fault as the JSON object accepted by ``POST /_faults``."""
        return dataclasses.asdict(self)


def fault_from_dict(data) -> Fault:
    """Build a fault from the JSON object of a ``POST /_faults`` request.

    Raises:
        ValueError: A field is unknown, missing or out of range.
    """
    if not isinstance(data, dict):
        raise ValueError("a fault must be a JSON object")

    field_names = {field.name for field in dataclasses.fields(Fault)}
    unknown = sorted(set(data) - field_names)
    if unknown:
        raise ValueError(f"unknown fault fields: {', '.join(unknown)}; expected some of {', '.join(sorted(field_names))}")
    if "method" not in data:
        raise ValueError('a fault needs a "method", such as "chat.postMessage" or "*"')
    return Fault(**data)


def _validate(fault: Fault) -> None:
    if not isinstance(fault.method, str) or not fault.method:
        raise ValueError(f"fault method must be a non-empty string, not {fault.method!r}")
    if fault.status is None and fault.error is None and fault.delay is None:
        raise ValueError("a fault needs at least one of status, error and delay")

    if fault.status is not None and (not _is_int(fault.status) or not 200 <= fault.status <= 599):
        raise ValueError(f"fault status must be an HTTP status from 200 to 599, not {fault.status!r}")
    if fault.error is not None and (not isinstance(fault.error, str) or not fault.error):
        raise ValueError(f"fault error must be a non-empty Slack error code, not {fault.error!r}")
    if fault.retry_after is not None and (not _is_int(fault.retry_after) or fault.retry_after < 0):
        raise ValueError(f"fault retry_after must be a whole number of seconds >= 0, not {fault.retry_after!r}")
    if fault.delay is not None and (not _is_number(fault.delay) or fault.delay < 0):
        raise ValueError(f"fault delay must be a number of seconds >= 0, not {fault.delay!r}")

    if fault.rate is not None:
        if not _is_number(fault.rate) or not 0 <= fault.rate <= 1:
            raise ValueError(f"fault rate must be a number from 0 to 1, not {fault.rate!r}")
    elif not _is_int(fault.times) or fault.times < 1:
        raise ValueError(f"fault times must be a whole number >= 1, not {fault.times!r}")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class FaultRegistry:
    """The active faults, consulted once per call in the order they were added.

    Args:
        rng: The random source for faults with a ``rate``. Tests may pass a seeded one.
    """

    def __init__(self, rng: random.Random | None = None):
        self._rng = rng or random.Random()
        self._faults = []
        self._lock = threading.Lock()

    def add(self, fault: Fault) -> None:
        """Activate a fault after the ones already active."""
        with self._lock:
            self._faults.append(dataclasses.replace(fault))

    def clear(self) -> None:
        """Remove every fault."""
        with self._lock:
            self._faults = []

    def active(self) -> list:
        """Return the active faults as dicts, with ``times`` counting the calls left."""
        with self._lock:
            return [fault.to_dict() for fault in self._faults]

    def take(self, method: str):
        """Return the fault that hits this call, or None.

        The first fault for this method (or ``*``) that fires is used. A
        counted fault fires and loses one of its ``times``, and is removed at
        zero. A rate fault fires with its probability, and the next one is
        tried when it does not.
        """
        with self._lock:
            for index, fault in enumerate(self._faults):
                if fault.method not in (method, ANY_METHOD):
                    continue

                if fault.rate is not None:
                    if self._rng.random() < fault.rate:
                        return fault
                    continue

                fault.times -= 1
                if fault.times <= 0:
                    del self._faults[index]
                return fault
        return None
