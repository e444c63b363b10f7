"""``POST /api/v1/slack/slash_command``: verify, acknowledge and queue slash commands.

The form helpers, bot identification, handler responses and queueing here
are shared with :mod:`omnibot.inbound.interactive`, the other entry point
that Slack calls with a form body.
"""

import logging
import time
import typing
import urllib.parse

from omnibot.containers.slash_command import SlashCommand
from omnibot.errors import BackendUnavailable
from omnibot.inbound import Answer, dedup, dialogs, failure

logger = logging.getLogger(__name__)

SLASH_COMMAND_KIND = "slash_command"

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"

MAX_FORM_FIELDS = 200
"""Most form fields a request may carry. Slack sends about 15; more means the body is not from Slack."""

NO_HANDLER_TEXT = "This slash command does not have any omnibot handler associated with it."

VERIFICATION_FAILED = "Request verification failed: bad signature, stale timestamp or wrong token."


class FormError(ValueError):
    """The request body is not a form omnibot can read.

    Attributes:
        status: The HTTP status of the response (400 or 415).
    """

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


# -- helpers shared with the interactive entry point ------------------------


def decode_form(raw: bytes, headers) -> typing.Dict[str, str]:
    """Decode an ``application/x-www-form-urlencoded`` body into its fields.

    A field sent more than once keeps its first value. Empty values are kept,
    so ``text=`` gives ``{"text": ""}``.

    Raises:
        FormError: 415 for another ``Content-Type``, 400 for a body that is
            not UTF-8 or has more than :data:`MAX_FORM_FIELDS` fields.
    """
    content_type = (headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
    if content_type != FORM_CONTENT_TYPE:
        shown = content_type or "missing"
        raise FormError(415, f"Content-Type must be {FORM_CONTENT_TYPE}, not {shown}.")

    try:
        text = raw.decode("utf-8")
        fields = urllib.parse.parse_qs(
            text, keep_blank_values=True, encoding="utf-8", errors="strict", max_num_fields=MAX_FORM_FIELDS
        )
    except UnicodeDecodeError:
        raise FormError(400, "The form body is not valid UTF-8.") from None
    except ValueError as error:
        raise FormError(400, f"The form body is invalid: {error}") from None
    return {name: values[0] for name, values in fields.items()}


def read_form(raw: bytes, headers) -> typing.Tuple[typing.Dict[str, str], typing.Optional[Answer]]:
    """Decode a form body; return its fields, or the response that ends the request.

    A body that cannot be decoded gets its 4xx. Slack's SSL check gets an
    empty 200, and nothing else in that body is processed, because the
    check is unsigned.
    """
    try:
        fields = decode_form(raw, headers)
    except FormError as error:
        return {}, failure(error.status, str(error))
    if is_ssl_check(fields):
        logger.debug("acknowledged Slack's SSL check; the rest of the body is ignored")
        return fields, Answer(200)
    return fields, None


def is_ssl_check(fields: typing.Mapping[str, str]) -> bool:
    """Return whether the form is Slack's unsigned SSL check, which gets an empty 200 response and is otherwise ignored."""
    return "ssl_check" in fields


def has_credentials(runtime, headers, token) -> bool:
    """Return whether the request carries a signature or a legacy token at all."""
    return runtime.verifier.has_signature(headers) or bool(token)


def identify_bot(runtime, team, app_id, raw: bytes, headers, token, what: str):
    """Return the verified bot that sent the request, or the 403 :class:`Answer` that rejects it.

    The bot is the one named by ``app_id`` when the payload has one, else
    the first bot of ``team`` whose signing secret or token verifies the
    request.

    Args:
        what: The payload's name in messages, e.g. ``slash command``.
    """
    config = runtime.config
    verifier = runtime.verifier
    token = token if isinstance(token, str) and token else None
    no_app = f"Token sent with {what} does not match any configured app."
    other_team = f"The app that sent this {what} is configured for another team."

    if app_id:
        bot = config.bot_by_app_id(app_id) if isinstance(app_id, str) else None
        if bot is None:
            logger.debug("rejected a %s for app %r, which is not configured", what, app_id)
            return failure(403, no_app)
        if bot.team != team:
            logger.debug("rejected a %s for app %s sent for team %s", what, app_id, team.team_id, extra=bot.trace)
            return failure(403, other_team)
        if not verifier.verify(bot, raw, headers, token):
            reason = verifier.failure_reason(bot, headers, token)
            logger.info("verification of a %s for %s/%s failed: %s", what, team.name, bot.name, reason, extra=bot.trace)
            return failure(403, VERIFICATION_FAILED)
        return bot

    bot = verifier.find_bot(raw, headers, token, candidates=config.bots_of_team(team))
    if bot is not None:
        return bot
    if verifier.find_bot(raw, headers, token) is not None:
        logger.debug("rejected a %s for team %s verified by an app of another team", what, team.team_id)
        return failure(403, other_team)
    logger.debug("rejected a %s for team %s that no configured app verifies", what, team.team_id)
    return failure(403, no_app)


def handler_answer(handler) -> Answer:
    """Return the immediate response a handler configures.

    ``canned_response`` gives ``{"text": ..., "response_type": ...}``. Without
    it, an ``in_channel`` handler gives ``{"response_type": "in_channel"}``
    (so Slack shows the command in the channel), and any other an empty
    body, because Slack shows an error for a JSON body with neither.
    ``no_message_response: true`` always gives an empty body.
    """
    response_type = handler.response_type or "ephemeral"
    if handler.no_message_response:
        return Answer(200)
    if handler.canned_response:
        return Answer(200, {"text": handler.canned_response, "response_type": response_type})
    if response_type == "in_channel":
        return Answer(200, {"response_type": "in_channel"})
    return Answer(200)


def claim(runtime, keys: typing.Sequence[str], trace) -> typing.Optional[bool]:
    """Claim the de-duplication keys of a delivery.

    Returns:
        True for a first delivery, False for a duplicate, None when the
        cache backend is unavailable (the caller responds 503).
    """
    try:
        return dedup.claim(runtime.cache, keys, runtime.settings.dedup_ttl)
    except BackendUnavailable as error:
        logger.error("cache backend unavailable (%s); responding 503", error, extra=trace)
        return None


def enqueue(runtime, kind: str, bot, payload: typing.Mapping, keys, trace, log: logging.Logger = logger) -> typing.Optional[Answer]:
    """Put ``payload`` on the queue for the worker; return None, or the 5xx response after a failure.

    The legacy ``token`` field is left out of the queued payload. After a
    failure the de-duplication keys are released so that a retry is accepted.
    Lines go to ``log``, the logger of the route that received the payload.
    """
    envelope = {
        "kind": kind,
        "app_id": bot.app_id,
        "team_id": bot.team.team_id,
        "received_at": time.time(),
        "payload": {name: value for name, value in payload.items() if name != "token"},
    }
    what = kind.replace("_", " ")
    try:
        message_id = runtime.queue.put(envelope)
    except BackendUnavailable as error:
        dedup.release(runtime.cache, keys)
        log.error("queue backend unavailable (%s); responding 503", error, extra=trace)
        return failure(503, "Queue backend unavailable; retry later.")
    except Exception:
        dedup.release(runtime.cache, keys)
        log.exception("failed to queue a %s", what, extra=trace)
        return failure(500, f"Failed to queue the {what}.")
    log.debug("queued a %s as message %s", what, message_id, extra=trace)
    runtime.stats.message_queued(kind, bot.name)
    return None


# -- the slash command entry point -------------------------------------------


def accept_slash_command(runtime, raw: bytes, headers) -> Answer:
    """Verify, acknowledge and queue one slash command request.

    The checks run in Lyft's omnibot order, with its messages. A command
    with a handler is de-duplicated by ``trigger_id``. Then the handler's
    dialog is opened, its synchronous callbacks run (their merged dict is
    the response body) and the command is queued for its other callbacks.
    """
    fields, early = read_form(raw, headers)
    if early is not None:
        return early

    token = fields.get("token")
    if not has_credentials(runtime, headers, token):
        return failure(403, "No verification token in slash command.")
    team_id = fields.get("team_id")
    if not team_id:
        return failure(403, "No team_id in slash command.")
    team = runtime.config.team_by_id(team_id)
    if team is None:
        logger.debug("rejected a slash command of unsupported team %r", team_id)
        return failure(403, "Unsupported team")

    bot = identify_bot(runtime, team, fields.get("api_app_id"), raw, headers, token, "slash command")
    if isinstance(bot, Answer):
        return bot

    command = fields.get("command") or ""
    trace = dict(bot.trace, command=command, trigger_id=fields.get("trigger_id"), channel_id=fields.get("channel_id"))
    handler = bot.slash_command_handler(command)
    if handler is None:
        logger.info("slash command %s has no handler", command, extra=trace)
        return Answer(200, {"response_type": "ephemeral", "text": NO_HANDLER_TEXT})
    return _dispatch(runtime, bot, handler, fields, trace)


def _dispatch(runtime, bot, handler, fields, trace) -> Answer:
    trigger_id = fields.get("trigger_id")
    keys = dedup.interaction_key(bot.app_id, SLASH_COMMAND_KIND, trigger_id)
    fresh = claim(runtime, keys, trace)
    if fresh is None:
        return failure(503, "Cache backend unavailable; retry later.")
    if not fresh:
        logger.info("ignored a duplicate delivery of slash command %s", fields.get("command"), extra=trace)
        return handler_answer(handler)

    deadline = dialogs.Deadline()
    if handler.dialog and trigger_id:
        dialogs.open_dialog(runtime, bot, handler.dialog, trigger_id, deadline, trace)

    body = None
    if handler.synchronous_callbacks:
        body = dialogs.run_synchronous(
            lambda: SlashCommand(bot, fields, trace, runtime.slack_data),
            handler.synchronous_callbacks,
            deadline,
            trace,
        )

    if handler.queued_callbacks:
        failed = enqueue(runtime, SLASH_COMMAND_KIND, bot, fields, keys, trace)
        if failed is not None:
            return failed
    return Answer(200, body) if body else handler_answer(handler)
