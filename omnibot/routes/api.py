"""The internal API that backend services use to act as a bot.

The views only translate between Flask and :mod:`omnibot.internal_api`.
The authorization checks of ``authorization.checks`` run before each of
them (see :mod:`omnibot.authnz`). Every response is JSON, errors included.
``docs/api.rst`` is the reference and ``docs/openapi.yaml`` the schema.
"""

from flask import Blueprint, current_app, request

from omnibot import internal_api
from omnibot.routes.slack import to_response

blueprint = Blueprint("api", __name__)


def _runtime():
    return current_app.extensions["omnibot"]


@blueprint.route("/api/v1/slack/get_team/<team_name>", methods=["GET"])
def get_team(team_name):
    """Return the Slack team id of a configured team.

    Example request::

        GET /api/v1/slack/get_team/test-team HTTP/1.1

    Example response::

        HTTP/1.1 200 OK
        Content-Type: application/json

        {"team_id": "T0TEST001"}

    Status codes:
        200: The team is configured.
        404: ``{"error": "provided team_name is not configured."}``
    """
    return to_response(internal_api.get_team(_runtime().config, team_name))


@blueprint.route("/api/v1/slack/get_user/<team_name>/<bot_name>/<email>", methods=["GET"])
def get_user(team_name, bot_name, email):
    """Return the user whose profile email is ``email``, looked up with the bot's token.

    Deleted users and bot users are not found.

    Example request::

        GET /api/v1/slack/get_user/test-team/testbot/alice@example.com HTTP/1.1

    Example response::

        HTTP/1.1 200 OK
        Content-Type: application/json

        {"user": {"email": "alice@example.com", "name": "alice",
                  "team_id": "T0TEST001", "user_id": "U0TEST001"}}

    ``name`` is the display name, or the user name when the display name is
    empty.

    Status codes:
        200: The user was found.
        404: Unknown team or bot, or no user has this email
            (``{"error": "unable to find slack user for given email."}``).
        502: ``users.lookupByEmail`` failed; ``slack_error`` contains Slack's error.
        503: The cache backend cannot be reached.
    """
    return to_response(internal_api.get_user(_runtime(), team_name, bot_name, email))


@blueprint.route("/api/v1/slack/get_channel/<team_name>/<bot_name>/<channel_name>", methods=["GET"])
def get_channel(team_name, bot_name, channel_name):
    """Return the conversation object of a channel, private channel or group DM, by name.

    A leading ``#`` is ignored. A user id in place of the name returns the
    bot's IM with that user. Archived conversations are not found.

    Example request::

        GET /api/v1/slack/get_channel/test-team/testbot/general HTTP/1.1

    Example response (Slack's conversation object, shortened)::

        HTTP/1.1 200 OK
        Content-Type: application/json

        {"id": "C0TEST001", "name": "general", "is_channel": true,
         "is_private": false, "is_archived": false, "is_general": true,
         "topic": {"value": "Company-wide announcements",
                   "creator": "U0TEST001", "last_set": 1700000000}}

    Status codes:
        200: The conversation was found.
        404: Unknown team or bot, or no conversation has this name
            (``{"error": "provided channel_name was not found."}``).
        502: ``conversations.list`` failed; ``slack_error`` contains Slack's error.
        503: The cache backend cannot be reached.
    """
    return to_response(internal_api.get_channel(_runtime(), team_name, bot_name, channel_name))


@blueprint.route("/api/v1/slack/get_ims/<team_name>/<bot_name>", methods=["GET"])
def get_ims(team_name, bot_name):
    """Return the bot's IM (direct message) conversations.

    Example request::

        GET /api/v1/slack/get_ims/test-team/testbot HTTP/1.1

    Example response::

        HTTP/1.1 200 OK
        Content-Type: application/json

        {"ims": [{"id": "D0TEST001", "is_im": true, "user": "U0TEST001",
                  "created": 1700000000, "is_user_deleted": false}]}

    Status codes:
        200: The list, possibly empty.
        404: Unknown team or bot.
        502: ``conversations.list`` failed; ``slack_error`` contains Slack's error.
        503: The cache backend cannot be reached.
    """
    return to_response(internal_api.get_ims(_runtime(), team_name, bot_name))


@blueprint.route("/api/v1/slack/send_im/<team_name>/<bot_name>/<email>", methods=["POST"])
def send_im(team_name, bot_name, email):
    """Send a message as the bot to the IM between the bot and the user with ``email``.

    The body is omnibot's ``{"action": "chat.postMessage", "kwargs": {...}}``,
    or just the kwargs of ``chat.postMessage``. The IM is opened when needed
    (``conversations.open``) and its id replaces any ``channel`` in the
    kwargs. ``omnibot_parse`` in the kwargs is honoured.

    Example request::

        POST /api/v1/slack/send_im/test-team/testbot/alice@example.com HTTP/1.1
        Content-Type: application/json

        {"action": "chat.postMessage", "kwargs": {"text": "Your deploy finished."}}

    Example response (Slack's response)::

        HTTP/1.1 200 OK
        Content-Type: application/json

        {"ok": true, "channel": "D0TEST001", "ts": "1700000100.000200",
         "message": {"type": "message", "text": "Your deploy finished.",
                     "bot_id": "B0TEST001", "ts": "1700000100.000200"}}

    Status codes:
        200: Slack accepted the message; the body is Slack's response.
        400: The body is invalid, or Slack returned ``"ok": false``; the body
            is then Slack's response, such as ``{"ok": false, "error": "invalid_blocks"}``.
        404: Unknown team, bot or user, or the IM cannot be opened. The body
            has ``error``, ``team_name``, ``bot_name`` and ``email``.
        502: Slack cannot be reached, or the user lookup failed.
        503: The cache backend cannot be reached.
    """
    runtime = _runtime()
    raw = request.get_data(cache=False)
    return to_response(internal_api.send_im(runtime, team_name, bot_name, email, raw))


@blueprint.route("/api/v2/slack/action/<team_name>/<bot_name>", methods=["POST"])
def action(team_name, bot_name):
    """Call any Slack Web API method as the bot and return Slack's response.

    The call uses the bot token. When Slack returns ``missing_scope``,
    ``not_allowed_token_type``, ``channel_not_found`` or ``not_in_channel``
    and the bot has a user token, the call is repeated with the user token.
    ``omnibot_parse`` (inside ``kwargs``, or next to it) turns ``@here``,
    ``#channel`` and ``@user`` in the named fields into Slack markup.

    Example request::

        POST /api/v2/slack/action/test-team/testbot HTTP/1.1
        Content-Type: application/json

        {"action": "chat.postMessage",
         "kwargs": {"channel": "C0TEST001", "text": "@here deploy starts",
                    "omnibot_parse": {"text": ["specials"]}}}

    Example response (Slack's response)::

        HTTP/1.1 200 OK
        Content-Type: application/json

        {"ok": true, "channel": "C0TEST001", "ts": "1700000100.000300",
         "message": {"type": "message", "text": "<!here> deploy starts",
                     "bot_id": "B0TEST001", "ts": "1700000100.000300"}}

    Status codes:
        200: Slack returned ``"ok": true``; the body is Slack's response.
        400: ``action`` or ``kwargs`` is missing or of the wrong type, or
            Slack returned ``"ok": false`` (the body is then Slack's response).
        404: Unknown team or bot.
        502: Slack cannot be reached; the body has ``"ok": false`` and ``error``.
    """
    runtime = _runtime()
    raw = request.get_data(cache=False)
    return to_response(internal_api.perform_action(runtime, team_name, bot_name, raw))
