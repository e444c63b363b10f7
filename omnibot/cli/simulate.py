"""Send a realistic, correctly signed Slack request to a running omnibot.

Kinds: ``message``, ``slash``, ``interactive`` and ``reaction``. Reads the
config to find team and app ids, signs with the bot's
CREDENTIALS_SLACK_SIGNING_SECRET_<APP_ID> (or sends its legacy token) and
prints omnibot's HTTP response. Exits 0 for an answer below 400, else 1.
"""

import json
import os
import sys
import urllib.parse
import uuid

import requests

from omnibot import testing
from omnibot.cli import add_config_argument
from omnibot.config import load_config
from omnibot.errors import ConfigError
from omnibot.signing import signature_headers
from omnibot.slack.client import SlackClients

DEFAULT_URL = "http://127.0.0.1:8080"
EVENT_PATH = "/api/v1/slack/event"
SLASH_COMMAND_PATH = "/api/v1/slack/slash_command"
INTERACTIVE_PATH = "/api/v1/slack/interactive"
REQUEST_TIMEOUT = 10.0


def add_arguments(parser):
    kinds = parser.add_subparsers(dest="kind", metavar="KIND")
    kinds.required = True

    message = kinds.add_parser("message", help='a message event, e.g. "@testbot ping"')
    _common(message)
    _where(message)
    message.add_argument("--thread-ts", help="reply inside the thread of this message ts")
    message.add_argument("--ts", help="ts of the message (default: now); repeat one to send the same message again")
    message.add_argument("--event-id", help="event_id of the delivery (default: a new one); repeat one to send a Slack retry")
    message.add_argument(
        "--retry-num",
        type=int,
        help="send X-Slack-Retry-Num with this number and X-Slack-Retry-Reason: http_timeout, as Slack marks its retries",
    )
    message.add_argument("text", help="the message; a leading @<bot name> becomes the bot's mention")
    message.set_defaults(build=_message_request)

    slash = kinds.add_parser("slash", help='a slash command, e.g. --command /echo "hello"')
    _common(slash)
    _where(slash)
    slash.add_argument("--command", required=True, help="the command with its slash, e.g. /echo")
    _response_url(slash)
    slash.add_argument("text", nargs="?", default="", help="what follows the command (default: empty)")
    slash.set_defaults(build=_slash_request)

    interactive = kinds.add_parser("interactive", help="an interactive payload: a button, modal, shortcut...")
    _common(interactive)
    _where(interactive)
    interactive.add_argument(
        "--type",
        dest="payload_type",
        default="block_actions",
        choices=testing.INTERACTIVE_TYPES,
        help="payload type (default block_actions)",
    )
    interactive.add_argument("--callback-id", help="callback id; for block_actions the action's block_id unless --block-id is given")
    interactive.add_argument("--action-id", help="action_id of the action (block_actions, block_suggestion)")
    interactive.add_argument("--block-id", help="block_id of the action; with --callback-id the action is in a modal")
    interactive.add_argument("--value", help="the action's value, or the typed text of a block_suggestion")
    interactive.add_argument(
        "--values",
        help="JSON object: view.state.values of a modal, or the fields of a dialog_submission",
    )
    interactive.add_argument("--message-ts", help="ts of the message that contains the component (default: now)")
    _response_url(interactive)
    interactive.set_defaults(build=_interactive_request)

    reaction = kinds.add_parser("reaction", help="a reaction_added event, e.g. --emoji thumbsup --ts 1700000000.000100")
    _common(reaction)
    _where(reaction)
    reaction.add_argument("--emoji", required=True, help="emoji name without colons, e.g. thumbsup")
    reaction.add_argument("--ts", required=True, help="ts of the message that gets the reaction")
    reaction.add_argument(
        "--item-user",
        help="user id of that message's author (default: the bot's, from auth.test); "
        "omnibot runs reaction handlers only for the bot's own messages",
    )
    reaction.add_argument("--removed", action="store_true", help="send reaction_removed instead of reaction_added")
    reaction.set_defaults(build=_reaction_request)


def _common(parser):
    add_config_argument(parser)
    parser.add_argument("--team", help="team name from the config (default: the first)")
    parser.add_argument("--bot", help="bot name from the config (default: the team's primary bot)")
    parser.add_argument("--url", default=DEFAULT_URL, help=f"omnibot's base URL (default {DEFAULT_URL})")


def _where(parser):
    parser.add_argument("--channel", default=testing.CHANNEL_ID, help=f"channel id (default {testing.CHANNEL_ID}; a D... id is a DM)")
    parser.add_argument("--user", default=testing.USER_ID, help=f"user id of the sender (default {testing.USER_ID})")


def _response_url(parser):
    parser.add_argument(
        "--response-url",
        help="response_url in the payload (default: a /hooks/ URL of the fake Slack at $SLACK_API_URL, "
        "or none when SLACK_API_URL is unset)",
    )


def run(args):
    bot = _bot(args)
    path, body, content_type, token_holder = args.build(bot, args)
    if bot.credentials.verification_token and not bot.credentials.signing_secret:
        token_holder["token"] = bot.credentials.verification_token
    raw = _encode(body, content_type)

    headers = {"Content-Type": content_type}
    if getattr(args, "retry_num", None) is not None:
        headers.update({"X-Slack-Retry-Num": str(args.retry_num), "X-Slack-Retry-Reason": "http_timeout"})
    if bot.credentials.signing_secret:
        headers.update(signature_headers(bot.credentials.signing_secret, raw))

    url = args.url.rstrip("/") + path
    try:
        response = requests.post(url, data=raw, headers=headers, timeout=REQUEST_TIMEOUT)
    except requests.RequestException as error:
        print(f"omnibot simulate: cannot reach {url}: {error}", file=sys.stderr)
        return 1
    print(f"POST {url} -> HTTP {response.status_code}")
    print(response.text.strip() or "(empty body)")
    return 0 if response.status_code < 400 else 1


def _encode(body, content_type):
    """Return the request bytes: JSON, or a form whose ``payload`` field contains JSON."""
    if content_type == "application/json":
        return json.dumps(body).encode()
    fields = {
        name: json.dumps(value) if isinstance(value, dict) else value
        for name, value in body.items()
    }
    return urllib.parse.urlencode(fields).encode()


# -- request builders: each returns (path, body, content type, where a legacy token goes)


def _message_request(bot, args):
    text = args.text
    mention = f"@{bot.name}"
    if text.startswith(mention):
        user_id = _bot_user_id(bot)
        if user_id:
            text = f"<@{user_id}>" + text[len(mention):]
    body = testing.message_event_body(bot, text, user=args.user, channel=args.channel, ts=args.ts, thread_ts=args.thread_ts)
    if args.event_id:
        body["event_id"] = args.event_id
    return EVENT_PATH, body, "application/json", body


def _slash_request(bot, args):
    if not args.command.startswith("/"):
        sys.exit(f"omnibot simulate: --command {args.command!r} must start with '/', e.g. /echo")
    fields = testing.slash_command_fields(
        bot,
        args.command,
        args.text,
        user=args.user,
        channel=args.channel,
        response_url=args.response_url or _fake_hook_url("commands"),
    )
    return SLASH_COMMAND_PATH, fields, "application/x-www-form-urlencoded", fields


def _interactive_request(bot, args):
    values = None
    if args.values:
        try:
            values = json.loads(args.values)
        except ValueError as error:
            sys.exit(f"omnibot simulate: --values is not valid JSON: {error}")
        if not isinstance(values, dict):
            sys.exit("omnibot simulate: --values must be a JSON object")
    payload = testing.interactive_payload(
        bot,
        args.payload_type,
        callback_id=args.callback_id,
        action_id=args.action_id,
        block_id=args.block_id,
        value=args.value,
        values=values,
        user=args.user,
        channel=args.channel,
        message_ts=args.message_ts,
        response_url=args.response_url or _fake_hook_url("actions"),
    )
    return INTERACTIVE_PATH, {"payload": payload}, "application/x-www-form-urlencoded", payload


def _reaction_request(bot, args):
    item_user = args.item_user or _bot_user_id(bot)
    body = testing.reaction_event_body(
        bot,
        args.emoji.strip(":"),
        item_ts=args.ts,
        user=args.user,
        channel=args.channel,
        item_user=item_user,
        removed=args.removed,
    )
    return EVENT_PATH, body, "application/json", body


# -- config and Slack look-ups ---------------------------------------------------


def _bot(args):
    path = args.config or os.environ.get("CONFIG_FILE")
    if not path:
        sys.exit("omnibot simulate: no config file: pass --config PATH or set CONFIG_FILE")
    try:
        config = load_config(path, import_callbacks=False)
    except ConfigError as error:
        sys.exit(str(error))

    team_name = args.team or next(iter(config.teams), None)
    team = config.teams.get(team_name)
    if team is None:
        sys.exit(f"omnibot simulate: team {team_name!r} is not in {path}")
    bot_name = args.bot or config.primary_bots.get(team.name)
    if bot_name is None:
        sys.exit(
            f"omnibot simulate: no --bot given and team {team.name!r} has no primary_bot in {path}; "
            "pass --bot NAME or set primary_bot for the team"
        )
    bot = config.bot(team.name, bot_name)
    if bot is None:
        sys.exit(
            f"omnibot simulate: bot {bot_name!r} of team {team.name!r} is not usable; "
            "check the config and its CREDENTIALS_SLACK_* variables"
        )
    return bot


def _bot_user_id(bot):
    """Return the bot's user id from ``auth.test`` at ``SLACK_API_URL``, or None when the call fails."""
    api_url = os.environ.get("SLACK_API_URL") or "https://slack.com/api/"
    answer = SlackClients(api_url, timeout=5).call(bot, "auth.test", {}, fallback=False)
    return answer.get("user_id") if answer.get("ok") else None


def _fake_hook_url(kind):
    """Return a ``/hooks/`` URL of the fake Slack named by ``SLACK_API_URL``, or None when it is unset."""
    api_url = os.environ.get("SLACK_API_URL")
    if not api_url:
        return None
    base = api_url.rstrip("/")
    if base.endswith("/api"):
        base = base[: -len("/api")]
    return f"{base}/hooks/simulate/{kind}/{uuid.uuid4().hex[:12]}"
