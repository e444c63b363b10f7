"""The internal API's operations: one function per route, each returning an :class:`Answer`.

Status codes and bodies follow omnibot's: an unknown team or bot is 404
with ``{"error": "provided team name was not found."}`` (or ``bot name``),
a Slack call for which Slack returns ``"ok": false`` is 400 with Slack's
response. Beyond omnibot, a bad body is 400; a lookup that Slack fails, or a
Slack call that cannot reach Slack, is 502; and a cache backend that
cannot be reached is 503. Every error body has an ``error`` message.
"""

import logging
import typing

from omnibot.errors import BackendUnavailable
from omnibot.inbound import Answer, BadRequest
from omnibot.internal_api import bodies, lookups
from omnibot.slack.data import display_name
from omnibot.unparser import apply_omnibot_parse

logger = logging.getLogger(__name__)

TEAM_NOT_FOUND = "provided team name was not found."
BOT_NOT_FOUND = "provided bot name was not found."
USER_NOT_FOUND = "unable to find slack user for given email."
IM_NOT_FOUND = "unable to find IM channel."
CHANNEL_NOT_FOUND = "provided channel_name was not found."

# Errors of SlackClients.call that mean Slack was not reached or sent no
# JSON body, as opposed to a response with "ok": false.
_UNREACHABLE_ERRORS = frozenset({"request_failed", "invalid_response"})


def get_team(config, team_name: str) -> Answer:
    """Return the Slack team id of the configured team ``team_name``."""
    team = config.teams.get(team_name)
    if team is None:
        return Answer(404, {"error": "provided team_name is not configured."})
    return Answer(200, {"team_id": team.team_id})


def get_user(runtime, team_name: str, bot_name: str, email: str) -> Answer:
    """Return the user whose profile email is ``email``, as seen by the bot."""
    bot, failure = _find_bot(runtime.config, team_name, bot_name)
    if failure is not None:
        return failure

    try:
        user = lookups.find_user_by_email(runtime.slack_data, bot, email)
    except (lookups.LookupFailed, BackendUnavailable) as error:
        return _lookup_failure(error, bot)
    if user is None:
        logger.info("internal API found no user with email %s", email, extra=bot.trace)
        return Answer(404, {"error": USER_NOT_FOUND})

    profile = user.get("profile") or {}
    return Answer(
        200,
        {
            "user": {
                "email": profile.get("email") or email,
                "name": display_name(user),
                "team_id": bot.team.team_id,
                "user_id": user["id"],
            }
        },
    )


def get_channel(runtime, team_name: str, bot_name: str, channel_name: str) -> Answer:
    """Return the conversation object named ``channel_name`` (or the IM of a user id)."""
    bot, failure = _find_bot(runtime.config, team_name, bot_name)
    if failure is not None:
        return failure

    try:
        channel = lookups.find_channel_by_name(runtime.slack_data, bot, channel_name)
    except (lookups.LookupFailed, BackendUnavailable) as error:
        return _lookup_failure(error, bot)
    if channel is None:
        logger.info("internal API found no conversation named %r", channel_name, extra=bot.trace)
        return Answer(404, {"error": CHANNEL_NOT_FOUND})
    return Answer(200, channel)


def get_ims(runtime, team_name: str, bot_name: str) -> Answer:
    """Return the bot's IM conversations as ``{"ims": [...]}``."""
    bot, failure = _find_bot(runtime.config, team_name, bot_name)
    if failure is not None:
        return failure

    try:
        ims = lookups.list_ims(runtime.slack_data, bot)
    except (lookups.LookupFailed, BackendUnavailable) as error:
        return _lookup_failure(error, bot)
    return Answer(200, {"ims": ims})


def send_im(runtime, team_name: str, bot_name: str, email: str, raw: bytes) -> Answer:
    """Post to the bot's IM with the user whose email is ``email``.

    The body is either ``{"action": ..., "kwargs": {...}}`` or the kwargs of
    ``chat.postMessage`` (see :func:`bodies.parse_send_im_body`). The IM's id
    replaces any ``channel`` in the kwargs. A 404 body also names the
    team, bot and email of the request.
    """
    context = {"team_name": team_name, "bot_name": bot_name, "email": email}
    bot, failure = _find_bot(runtime.config, team_name, bot_name, context)
    if failure is not None:
        return failure

    try:
        request = bodies.parse_send_im_body(raw)
    except BadRequest as error:
        return _bad_request(error, bot)

    try:
        user = lookups.find_user_by_email(runtime.slack_data, bot, email)
    except (lookups.LookupFailed, BackendUnavailable) as error:
        return _lookup_failure(error, bot)
    if user is None:
        logger.info("internal API found no user with email %s", email, extra=bot.trace)
        return Answer(404, {"error": USER_NOT_FOUND, **context})

    try:
        im_id = lookups.open_im(runtime.slack_data, bot, user["id"])
    except BackendUnavailable as error:
        return _lookup_failure(error, bot)
    except lookups.LookupFailed as error:
        logger.warning("conversations.open failed for user %s: %s", user["id"], error.error, extra=bot.trace)
        return Answer(404, {"error": IM_NOT_FOUND, "slack_error": error.error, **context})

    kwargs = dict(request.kwargs, channel=im_id)
    return _call_slack(runtime, bot, bodies.ActionRequest(request.action, kwargs))


def perform_action(runtime, team_name: str, bot_name: str, raw: bytes) -> Answer:
    """Call the Web API method named in the body as the bot and return Slack's response.

    The bot token is used first. When Slack returns one of the errors of
    :data:`omnibot.slack.client.USER_TOKEN_FALLBACK_ERRORS` and the bot has a
    user token, the call is repeated with the user token.
    """
    bot, failure = _find_bot(runtime.config, team_name, bot_name)
    if failure is not None:
        return failure

    try:
        request = bodies.parse_action_body(raw)
    except BadRequest as error:
        return _bad_request(error, bot)
    return _call_slack(runtime, bot, request)


def _find_bot(config, team_name, bot_name, context=None):
    """Return ``(bot, None)``, or ``(None, 404 Answer)`` for an unknown team or bot."""
    context = context or {}
    if team_name not in config.teams:
        logger.info("internal API request for unknown team %r", team_name)
        return None, Answer(404, {"error": TEAM_NOT_FOUND, **context})
    bot = config.bot(team_name, bot_name)
    if bot is None:
        logger.info("internal API request for unknown bot %r of team %s", bot_name, team_name)
        return None, Answer(404, {"error": BOT_NOT_FOUND, **context})
    return bot, None


def _call_slack(runtime, bot, request: bodies.ActionRequest) -> Answer:
    kwargs = request.kwargs
    if "omnibot_parse" in kwargs:
        try:
            kwargs = apply_omnibot_parse(kwargs, runtime.slack_data.resolver(bot))
        except BackendUnavailable as error:
            return _lookup_failure(error, bot)

    response = runtime.clients.call(bot, request.action, kwargs, fallback=True, trace=bot.trace)
    if response.get("ok"):
        logger.info("internal API called %s", request.action, extra=bot.trace)
        return Answer(200, response)

    error = response.get("error")
    logger.warning("internal API call of %s failed: %s", request.action, error, extra=bot.trace)
    if _is_unreachable(error):
        return Answer(502, response)
    return Answer(400, response)


def _is_unreachable(error: typing.Any) -> bool:
    # SlackClients reports a non-JSON HTTP 5xx from Slack as "http_<status>".
    return error in _UNREACHABLE_ERRORS or (isinstance(error, str) and error.startswith("http_5"))


def _bad_request(error: BadRequest, bot) -> Answer:
    logger.info("internal API request rejected: %s", error, extra=bot.trace)
    return Answer(400, {"error": str(error)})


def _lookup_failure(error: Exception, bot) -> Answer:
    if isinstance(error, BackendUnavailable):
        logger.warning("internal API lookup failed: cache backend unavailable: %s", error, extra=bot.trace)
        return Answer(503, {"error": f"the cache backend is unavailable, try again later: {error}"})

    logger.warning("internal API lookup failed: %s", error, extra=bot.trace)
    return Answer(502, {"error": str(error), "slack_error": error.error})
