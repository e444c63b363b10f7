"""``POST /api/v1/slack/interactive``: verify, acknowledge and queue interactive payloads.

Slack sends the payload as JSON in the ``payload`` field of a form body.
"""

import logging
import typing

from omnibot.containers.interactive_component import InteractiveComponent
from omnibot.inbound import Answer, BadRequest, decode_json_object, dedup, dialogs, failure
from omnibot.inbound.slash_commands import (
    claim,
    enqueue,
    handler_answer,
    has_credentials,
    identify_bot,
    read_form,
)
from omnibot.processing import interactive_routing

logger = logging.getLogger(__name__)

INTERACTIVE_KIND = "interactive_component"

NO_HANDLER_TEXT = "This interactive component does not have any omnibot handler associated with it."

SILENT_TYPES = ("dialog_submission", "view_submission", "view_closed", "block_suggestion", "shortcut")
"""Types whose response is an empty body unless a synchronous callback returns one.

Slack reads the response to a view or a block suggestion as a view response or
an option list, so a canned text there would show the user an error.
"""


def team_id_of(payload: typing.Mapping) -> typing.Optional[str]:
    """Return the id of the team an interactive payload belongs to, or None.

    For an Enterprise Grid org-wide install (``is_enterprise_install`` true
    and no ``team.id``) that is ``original_message.team``, else
    ``user.team_id``. For any other payload it is ``team.id``, else
    ``original_message.team``.
    """
    team_id = _field(payload, "team", "id")
    if payload.get("is_enterprise_install") is True and not team_id:
        candidates = (_field(payload, "original_message", "team"), _field(payload, "user", "team_id"))
    else:
        candidates = (team_id, _field(payload, "original_message", "team"))
    for candidate in candidates:
        if candidate:
            return candidate
    return None


def inject_team_id(payload: typing.Dict[str, typing.Any], team_id: str) -> None:
    """Set ``payload["team"]["id"]`` to ``team_id`` when the payload has no team id."""
    team = payload.get("team")
    if not isinstance(team, dict):
        payload["team"] = {"id": team_id}
    elif not team.get("id"):
        team["id"] = team_id


def accept_interactive(runtime, raw: bytes, headers) -> Answer:
    """Verify, acknowledge and queue one interactive component request.

    The checks run in Lyft's omnibot order, with its messages. A payload
    with a handler is de-duplicated by ``trigger_id``. Then the handler's
    dialog is opened, its synchronous callbacks run (their merged dict is
    the response body) and the payload is queued for its other callbacks.
    """
    fields, early = read_form(raw, headers)
    if early is not None:
        return early

    if "payload" not in fields:
        return failure(400, "Missing the payload form field.")
    try:
        payload = decode_json_object(fields["payload"].encode("utf-8"), "The payload form field")
    except BadRequest as error:
        return failure(400, str(error))

    payload_type = payload.get("type")
    if payload_type not in interactive_routing.SUPPORTED_TYPES:
        shown = str(payload_type)
        shown = shown if len(shown) <= 64 else shown[:61] + "..."
        logger.debug("rejected an interactive payload of unsupported type %s", shown)
        return failure(400, f"Unsupported type={shown} in interactive component.")

    token = payload.get("token")
    if not has_credentials(runtime, headers, token):
        return failure(403, "No verification token in interactive component.")
    team_id = team_id_of(payload)
    if not team_id:
        return failure(403, "No team id found in interactive component.")
    team = runtime.config.team_by_id(team_id)
    if team is None:
        logger.debug("rejected an interactive payload of unsupported team %r", team_id)
        return failure(403, "Unsupported team")

    bot = identify_bot(runtime, team, payload.get("api_app_id"), raw, headers, token, "interactive component")
    if isinstance(bot, Answer):
        return bot
    inject_team_id(payload, team_id)

    trace = dict(
        bot.trace,
        component_type=payload_type,
        callback_id=interactive_routing.callback_id_of(payload),
        trigger_id=payload.get("trigger_id"),
        channel_id=_field(payload, "channel", "id"),
    )
    if interactive_routing.has_no_actions(payload):
        logger.info("block_actions payload has no actions; no handler is called", extra=trace)
        return Answer(200)
    route = interactive_routing.find_route(bot.interactive_handlers, payload, trace)
    if route is None:
        logger.info("interactive %s payload has no handler", payload_type, extra=trace)
        return Answer(200, {"response_type": "ephemeral", "text": NO_HANDLER_TEXT})
    return _dispatch(runtime, bot, route, payload, trace)


def _static_answer(payload_type, handler) -> Answer:
    if payload_type in SILENT_TYPES or handler.no_message_response:
        return Answer(200)
    return handler_answer(handler)


def _dispatch(runtime, bot, route, payload, trace) -> Answer:
    handler = route.handler
    payload_type = payload["type"]
    trace = dict(trace, handler=handler.label)
    trigger_id = payload.get("trigger_id")
    trigger_id = trigger_id if isinstance(trigger_id, str) else None

    keys = dedup.interaction_key(bot.app_id, INTERACTIVE_KIND, trigger_id)
    fresh = claim(runtime, keys, trace)
    if fresh is None:
        return failure(503, "Cache backend unavailable; retry later.")
    if not fresh:
        # NOTE: a duplicate gets the handler's configured response, because the
        # body that synchronous callbacks returned for the first delivery is not stored.
        logger.info("ignored a duplicate delivery of an interactive %s payload", payload_type, extra=trace)
        return _static_answer(payload_type, handler)

    deadline = dialogs.Deadline()
    if handler.dialog and trigger_id:
        dialogs.open_dialog(runtime, bot, handler.dialog, trigger_id, deadline, trace)

    body = None
    if handler.synchronous_callbacks:
        body = dialogs.run_synchronous(
            lambda: InteractiveComponent(bot, payload, trace, runtime.slack_data, route),
            handler.synchronous_callbacks,
            deadline,
            trace,
        )

    if handler.queued_callbacks:
        if _rejected_submission(payload_type, body):
            logger.info(
                "did not queue the handler's other callbacks: its synchronous callbacks rejected the submission",
                extra=trace,
            )
        else:
            failed = enqueue(runtime, INTERACTIVE_KIND, bot, payload, keys, trace, log=logger)
            if failed is not None:
                return failed
    return Answer(200, body) if body else _static_answer(payload_type, handler)


def _rejected_submission(payload_type, body) -> bool:
    """Return whether a synchronous response body keeps the modal open with errors.

    Slack then shows the errors, and the user's next submit arrives as a new
    ``view_submission`` payload.
    """
    return payload_type == "view_submission" and isinstance(body, dict) and body.get("response_action") == "errors"


def _field(payload: typing.Mapping, outer: str, inner: str) -> typing.Optional[str]:
    value = payload.get(outer)
    if not isinstance(value, dict):
        return None
    found = value.get(inner)
    return found if isinstance(found, str) and found else None
