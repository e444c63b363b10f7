"""Turning Slack's HTTP requests into queued work, independent of Flask.

Each entry point takes the raw body and headers and returns an
:class:`Answer`; the Flask views only translate it into a response.
"""

import dataclasses
import json
import typing


@dataclasses.dataclass
class Answer:
    """The HTTP response to a Slack request: status, JSON body (None for an empty body), headers."""

    status: int
    body: typing.Optional[typing.Any] = None
    headers: typing.Dict[str, str] = dataclasses.field(default_factory=dict)


def failure(status: int, error: str, **headers) -> Answer:
    """Return omnibot's error response ``{"status": "failure", "error": ...}``."""
    return Answer(status, {"status": "failure", "error": error}, dict(headers))


class BadRequest(ValueError):
    """The body cannot be decoded; the message names what is wrong."""


MAX_JSON_DEPTH = 64
"""Deepest nesting of arrays and objects accepted; Slack's payloads, Block Kit views included, stay far below it."""


def decode_json_object(raw: bytes, what: str = "request body") -> dict:
    """Decode ``raw`` as a UTF-8 JSON object.

    Raises:
        BadRequest: Not UTF-8, not JSON, not an object, or nested deeper
            than :data:`MAX_JSON_DEPTH` levels.
    """
    try:
        value = json.loads(raw)
    except UnicodeDecodeError:
        raise BadRequest(f"{what} is not valid UTF-8") from None
    except RecursionError:
        # json.loads gives up near the interpreter's recursion limit (1000 by default).
        raise BadRequest(f"{what} is nested more than {MAX_JSON_DEPTH} levels deep") from None
    except ValueError as error:
        raise BadRequest(f"{what} is not valid JSON: {error.args[0] if error.args else error}") from None
    if not isinstance(value, dict):
        raise BadRequest(f"{what} must be a JSON object, not {type(value).__name__}")
    # Nesting needs one bracket per level, so a body with few brackets skips the walk over the decoded value.
    if raw.count(b"{") + raw.count(b"[") > MAX_JSON_DEPTH and _nested_deeper_than(value, MAX_JSON_DEPTH):
        # Code that walks the payload later (queueing, containers, logging) would hit the recursion limit.
        raise BadRequest(f"{what} is nested more than {MAX_JSON_DEPTH} levels deep")
    return value


def _nested_deeper_than(value, limit: int) -> bool:
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if depth > limit:
            return True
        if isinstance(item, dict):
            pending.extend((child, depth + 1) for child in item.values() if isinstance(child, (dict, list)))
        elif isinstance(item, list):
            pending.extend((child, depth + 1) for child in item if isinstance(child, (dict, list)))
    return False
