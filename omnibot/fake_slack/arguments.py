"""Argument helpers shared by the fake Web API methods.

Slack accepts the same arguments as form fields, where every value is a
string, or as a JSON body, where values keep their JSON types. The helpers
accept both forms.
"""

import base64
import binascii
import json


class SlackMethodError(Exception):
    """A Web API method failed. ``error`` is Slack's error code, such as ``channel_not_found``."""

    def __init__(self, error: str):
        super().__init__(error)
        self.error = error


def require_str(args: dict, name: str, error: str = "invalid_arguments") -> str:
    """Return a non-empty string argument.

    Raises:
        SlackMethodError: With ``error`` when the argument is missing or empty.
    """
    value = args.get(name)
    if value is None or value == "":
        raise SlackMethodError(error)
    return str(value)


def optional_str(args: dict, name: str):
    """Return a string argument, or None when it is missing or empty."""
    value = args.get(name)
    if value is None or value == "":
        return None
    return str(value)


def as_bool(value, default: bool = False) -> bool:
    """Read a Slack boolean: JSON true/false, or the form strings ``true``, ``1``, ``false``, ``0``."""
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value != 0
    return str(value).strip().lower() in ("true", "1", "yes")


def as_int(args: dict, name: str, default: int) -> int:
    """Return an integer argument, or ``default`` when it is missing.

    Raises:
        SlackMethodError: ``invalid_arguments`` when the value is not an integer.
    """
    value = args.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise SlackMethodError("invalid_arguments") from exc


def as_list(value) -> list:
    """Read a list argument given as a JSON list or as a comma-separated string."""
    if value is None or value == "":
        return []
    if isinstance(value, list):
        return [str(item).strip() for item in value if str(item).strip()]
    return [item.strip() for item in str(value).split(",") if item.strip()]


def as_json(args: dict, name: str):
    """Return a structured argument such as ``blocks`` or ``view``, or None when missing.

    Form requests carry these as JSON-encoded strings, JSON requests as
    objects. Both give the decoded value.

    Raises:
        SlackMethodError: ``invalid_arguments`` when a string value is not valid JSON.
    """
    value = args.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError as exc:
        raise SlackMethodError("invalid_arguments") from exc


def page(items: list, args: dict, default_limit: int, max_limit: int = 1000) -> tuple:
    """Slice one page out of ``items`` using the ``cursor`` and ``limit`` arguments.

    The cursor is an opaque base64 string that encodes the offset of the next
    item. A limit below 1 means ``default_limit``, and a limit above
    ``max_limit`` is lowered to it. Offsets count from the start of ``items``
    as it is now, so a list that changes between pages may skip or repeat
    entries.

    Returns:
        ``(page_items, next_cursor)``. ``next_cursor`` is ``""`` on the last page.

    Raises:
        SlackMethodError: ``invalid_cursor`` when the cursor cannot be decoded.
    """
    limit = as_int(args, "limit", default_limit)
    if limit < 1:
        limit = default_limit
    limit = min(limit, max_limit)

    start = decode_cursor(args.get("cursor"))
    end = start + limit
    next_cursor = encode_cursor(end) if end < len(items) else ""
    return items[start:end], next_cursor


def encode_cursor(offset: int) -> str:
    """Return the cursor that resumes a listing at ``offset``."""
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode()


def decode_cursor(cursor) -> int:
    """Return the offset stored in a cursor, 0 for a missing one.

    Raises:
        SlackMethodError: ``invalid_cursor`` when the cursor is not one of ours.
    """
    if cursor is None or cursor == "":
        return 0

    try:
        text = base64.urlsafe_b64decode(str(cursor).encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise SlackMethodError("invalid_cursor") from exc

    prefix, _, number = text.partition(":")
    if prefix != "offset" or not number.isdigit():
        raise SlackMethodError("invalid_cursor")
    return int(number)


def resolve_channel(state, args: dict, allow_user: bool = False) -> tuple:
    """Find the conversation named by the ``channel`` argument.

    The argument may be a conversation id, a channel name with or without
    ``#``, or, when ``allow_user`` is set, a user id that means the
    bot's IM with that user (opened when missing, as ``chat.postMessage``
    does). An unknown id is accepted when the workspace sets
    ``accept_any_channel``.

    Returns:
        ``(channel_id, conversation)``. ``conversation`` is None for an
        unknown id accepted through ``accept_any_channel``.

    Raises:
        SlackMethodError: ``channel_not_found`` when the argument is missing,
            names no known channel, and unknown ids are not accepted.
    """
    value = require_str(args, "channel", "channel_not_found")

    conversation = state.conversation(value)
    if conversation is not None:
        return conversation["id"], conversation

    if allow_user and state.user(value) is not None:
        im, _ = state.open_im(value)
        return im["id"], im

    conversation = state.conversation_by_name(value.lstrip("#"))
    if conversation is not None:
        return conversation["id"], conversation

    if state.accept_any_channel and not value.startswith("#"):
        return value, None
    raise SlackMethodError("channel_not_found")
