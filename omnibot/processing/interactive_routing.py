"""Routing of interactive payloads to interactive component handlers.

A handler may set ``action_id``, ``block_id`` and ``callback_id``; it matches
when every key it sets matches the payload. Handlers are tried by
precedence: those with an ``action_id`` first, then those with a
``block_id``, then those with only a ``callback_id``. Within one level the
first action in payload order wins, and for that action the first handler
in config order.

What each key is compared with depends on the payload ``type``:

- ``block_actions``: ``action_id`` and ``block_id`` with each entry of
  ``actions``, not only the first. ``callback_id`` with the action's
  ``block_id`` (as Lyft's omnibot did), else with ``view.callback_id`` for
  actions inside a modal.
- ``block_suggestion``: ``action_id`` and ``block_id`` with the payload's
  own fields, ``callback_id`` with ``view.callback_id``.
- ``view_submission`` and ``view_closed``: ``callback_id`` with
  ``view.callback_id``.
- every other type: ``callback_id`` with the payload's ``callback_id``.
"""

import logging
import typing

from omnibot.config.model import Handler

logger = logging.getLogger(__name__)

SUPPORTED_TYPES = (
    "interactive_message",
    "message_action",
    "dialog_submission",
    "block_actions",
    "view_submission",
    "view_closed",
    "shortcut",
    "block_suggestion",
)
"""Interactive payload types omnibot routes; any other type is rejected with 400."""

VIEW_TYPES = ("view_submission", "view_closed")

ACTION_ID = "action_id"
BLOCK_ID = "block_id"
CALLBACK_ID = "callback_id"


class Route(typing.NamedTuple):
    """The handler an interactive payload reaches, and why.

    Attributes:
        handler: The matching handler.
        key: The key that decided the match: ``action_id``, ``block_id`` or ``callback_id``.
        value: The value of that key, which the handler and the payload share.
        action: The entry of ``actions`` that matched, for ``block_actions``;
            the payload itself for ``block_suggestion``; None otherwise.
    """

    handler: Handler
    key: str
    value: str
    action: typing.Optional[typing.Mapping]


def has_no_actions(payload: typing.Mapping) -> bool:
    """Return whether ``payload`` is a ``block_actions`` payload with an empty or missing ``actions`` list."""
    if payload.get("type") != "block_actions":
        return False
    return not _actions(payload)


def callback_id_of(payload: typing.Mapping, action: typing.Optional[typing.Mapping] = None) -> typing.Optional[str]:
    """Return the payload's callback id as Lyft's omnibot defined it.

    That is the ``block_id`` of ``action`` (default: the first action) for
    ``block_actions``, ``view.callback_id`` for views and block suggestions,
    and the top-level ``callback_id`` otherwise.
    """
    payload_type = payload.get("type")
    if payload_type == "block_actions":
        if action is None:
            actions = _actions(payload)
            action = actions[0] if actions else None
        block_id = action.get(BLOCK_ID) if action is not None else None
        return block_id if isinstance(block_id, str) else _view_callback_id(payload)
    if payload_type in VIEW_TYPES or payload_type == "block_suggestion":
        return _view_callback_id(payload)
    value = payload.get(CALLBACK_ID)
    return value if isinstance(value, str) else None


def find_route(handlers: typing.Sequence[Handler], payload: typing.Mapping, trace=None) -> typing.Optional[Route]:
    """Return the route of ``payload`` among ``handlers`` (one bot's interactive handlers), or None.

    A ``block_actions`` payload without actions reaches no handler and is
    logged as "no actions".
    """
    trace = trace or {}
    if has_no_actions(payload):
        logger.info("block_actions payload has no actions; no handler is called", extra=trace)
        return None

    candidates = _candidates(payload)
    for level in (ACTION_ID, BLOCK_ID, CALLBACK_ID):
        for action, keys in candidates:
            for handler in handlers:
                if _level(handler) == level and _matches(handler, keys):
                    return Route(handler, level, getattr(handler, level), action)

    logger.debug(
        "no interactive handler matches %s payload (callback id %r)",
        payload.get("type"),
        callback_id_of(payload),
        extra=trace,
    )
    return None


def _level(handler: Handler) -> str:
    if handler.action_id:
        return ACTION_ID
    if handler.block_id:
        return BLOCK_ID
    return CALLBACK_ID


def _matches(handler: Handler, keys: typing.Mapping[str, typing.Sequence[str]]) -> bool:
    """Return whether every key ``handler`` sets is among the payload's values for that key."""
    for key in (ACTION_ID, BLOCK_ID, CALLBACK_ID):
        expected = getattr(handler, key)
        if expected and expected not in keys[key]:
            return False
    return True


def _candidates(payload: typing.Mapping):
    """Return ``(action, {key: values})`` pairs to compare handlers with, in payload order."""
    payload_type = payload.get("type")
    view_callback_id = _view_callback_id(payload)

    if payload_type == "block_actions":
        candidates = []
        for action in _actions(payload):
            block_id = _string(action.get(BLOCK_ID))
            keys = {
                ACTION_ID: _present(_string(action.get(ACTION_ID))),
                BLOCK_ID: _present(block_id),
                CALLBACK_ID: _present(block_id, view_callback_id),
            }
            candidates.append((action, keys))
        return candidates

    if payload_type == "block_suggestion":
        keys = {
            ACTION_ID: _present(_string(payload.get(ACTION_ID))),
            BLOCK_ID: _present(_string(payload.get(BLOCK_ID))),
            CALLBACK_ID: _present(view_callback_id),
        }
        return [(payload, keys)]

    callback_id = callback_id_of(payload)
    return [(None, {ACTION_ID: [], BLOCK_ID: [], CALLBACK_ID: _present(callback_id)})]


def _actions(payload: typing.Mapping) -> typing.List[typing.Mapping]:
    actions = payload.get("actions")
    if not isinstance(actions, list):
        return []
    return [action for action in actions if isinstance(action, dict)]


def _view_callback_id(payload: typing.Mapping) -> typing.Optional[str]:
    view = payload.get("view")
    if not isinstance(view, dict):
        return None
    return _string(view.get(CALLBACK_ID))


def _string(value) -> typing.Optional[str]:
    return value if isinstance(value, str) and value else None


def _present(*values) -> typing.List[str]:
    return [value for value in values if value]
