"""Decode and check the JSON bodies of the internal API's POST routes."""

import dataclasses
import re
import typing

from omnibot.inbound import BadRequest, decode_json_object

# Web API method names are dot-separated words such as chat.postMessage or
# admin.conversations.setTeams. Anything else could make the client request
# another path of the API host, so it is rejected.
_METHOD_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]*(?:\.[A-Za-z][A-Za-z0-9]*)+$")

DEFAULT_IM_ACTION = "chat.postMessage"

_ACTION_EXAMPLE = '{"action": "chat.postMessage", "kwargs": {"channel": "C123", "text": "hi"}}'


@dataclasses.dataclass(frozen=True)
class ActionRequest:
    """A Slack Web API call requested by a backend service.

    Attributes:
        action: The Web API method, such as ``chat.postMessage``.
        kwargs: The method's arguments, possibly with ``omnibot_parse``.
    """

    action: str
    kwargs: typing.Dict[str, typing.Any]


def parse_action_body(raw: bytes) -> ActionRequest:
    """Decode the body of ``/api/v2/slack/action``: ``{"action": ..., "kwargs": {...}}``.

    An ``omnibot_parse`` next to ``kwargs`` is moved into them unless they
    carry their own.

    Raises:
        BadRequest: The body is not a JSON object, ``action`` or ``kwargs``
            is missing, ``action`` is not a Web API method name, or
            ``kwargs`` is not an object.
    """
    body = decode_json_object(raw)
    missing = [field for field in ("action", "kwargs") if field not in body]
    if missing:
        raise BadRequest(
            f"{' and '.join(missing)} missing from the request body; expected {_ACTION_EXAMPLE}"
        )
    return _action_request(body)


def parse_send_im_body(raw: bytes) -> ActionRequest:
    """Decode the body of ``/api/v1/slack/send_im``.

    Two forms are accepted. A body with ``action`` or ``kwargs`` is the
    envelope of :func:`parse_action_body`, with ``action`` defaulting to
    ``chat.postMessage``. Any other object is taken whole as the kwargs of
    ``chat.postMessage``.

    Raises:
        BadRequest: As :func:`parse_action_body`; ``kwargs`` is also
            required in the envelope form.
    """
    body = decode_json_object(raw)
    if "action" not in body and "kwargs" not in body:
        return ActionRequest(action=DEFAULT_IM_ACTION, kwargs=body)

    if "kwargs" not in body:
        raise BadRequest(f"kwargs missing from the request body; expected {_ACTION_EXAMPLE}")
    return _action_request({"action": DEFAULT_IM_ACTION, **body})


def _action_request(body: dict) -> ActionRequest:
    action = body["action"]
    if not isinstance(action, str):
        raise BadRequest(f"action must be a string such as \"chat.postMessage\", not {_json_type(action)}")
    if not _METHOD_NAME.match(action):
        raise BadRequest(f"action {action!r} is not a Slack Web API method name such as \"chat.postMessage\"")

    kwargs = body["kwargs"]
    if not isinstance(kwargs, dict):
        raise BadRequest(f"kwargs must be a JSON object of the method's arguments, not {_json_type(kwargs)}")

    kwargs = dict(kwargs)
    if "omnibot_parse" in body and "omnibot_parse" not in kwargs:
        kwargs["omnibot_parse"] = body["omnibot_parse"]
    return ActionRequest(action=action, kwargs=kwargs)


def _json_type(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"
