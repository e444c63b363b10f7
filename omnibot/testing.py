"""Helpers for unit-testing callbacks without a server, a queue or Slack.

The builders turn a few fields (text, user, channel, bot, team) into the
same Slack-shaped bodies that Slack sends, then into the containers that
omnibot's worker hands to callbacks, with the production parser and the
production matching. User and conversation names come from
:class:`StubSlackData`, an in-memory stand-in for the Slack data cache, so
nothing touches the network.

Example::

    from omnibot import testing

    def test_greet_replies_in_thread():
        message = testing.message("@testbot hello there", command="hello")
        result = greet(message, greeting="Hi")
        testing.assert_valid_result(result, message)

:func:`assert_valid_result` checks what a callback returned: action names in
Slack's method form, kwargs types, and the shape of ``responses``.

``omnibot simulate`` sends the bodies built by :func:`message_event_body`,
:func:`reaction_event_body`, :func:`slash_command_fields` and
:func:`interactive_payload` to a running omnibot.
"""

import json
import re
import time
import typing
import uuid

from omnibot.config import model
from omnibot.containers import InteractiveComponent, Message, Reaction, SlashCommand
from omnibot.processing import interactive_routing, matching
from omnibot.slack.data import BotResolver, display_name

# -- identities ----------------------------------------------------------------

TEAM_NAME = "test-team"
TEAM_ID = "T0TEST001"
BOT_NAME = "testbot"
APP_ID = "A0TEST001"
BOT_USER_ID = "U0BOT0001"
BOT_ID = "B0TEST001"
USER_ID = "U0TEST001"
CHANNEL_ID = "C0TEST001"

DEFAULT_USERS = {USER_ID: "alice", "W0TEST002": "bob", BOT_USER_ID: BOT_NAME}
"""User id -> name of :class:`StubSlackData` when no users are given; the ids of ``config/workspace.yaml``."""

DEFAULT_CHANNELS = {CHANNEL_ID: "general", "G0TEST001": "ops-private", "D0TEST001": None}
"""Conversation id -> name of :class:`StubSlackData` when none are given; None makes an IM."""

INTERACTIVE_TYPES = interactive_routing.SUPPORTED_TYPES
"""Interactive payload types that :func:`interactive_payload` builds and omnibot routes."""

BotLike = typing.Union[str, model.Bot]


def make_bot(bot: BotLike = BOT_NAME, team: str = TEAM_NAME, team_id: str = TEAM_ID, app_id: str = APP_ID) -> model.Bot:
    """Return a :class:`omnibot.config.Bot` without handlers or credentials.

    Args:
        bot: A bot name, or a Bot (for example one of a loaded config), returned as is.
        team: The team name.
        team_id: Slack's team id.
        app_id: Slack's app id of the bot.
    """
    if isinstance(bot, model.Bot):
        return bot
    return model.Bot(team=model.Team(name=team, team_id=team_id), name=bot, app_id=app_id)


def new_ts() -> str:
    """Return a Slack message timestamp for now, ``"<unix seconds>.<6 digits>"``."""
    return f"{time.time():.6f}"


def new_trigger_id() -> str:
    """Return a random trigger id in Slack's ``<digits>.<digits>.<hex>`` form."""
    return f"{int(time.time())}.{uuid.uuid4().int % 10**10}.{uuid.uuid4().hex}"


# -- the Slack data stand-in -----------------------------------------------------


class StubSlackData:
    """In-memory stand-in for :class:`omnibot.slack.data.SlackData`.

    It stores users and conversations by id and calls no Slack API, so
    containers get the same names as in production, from fixed data.

    Args:
        users: User id -> name, or -> a Slack user object. Default :data:`DEFAULT_USERS`.
        channels: Conversation id -> name (None for an IM), or -> a Slack
            conversation object. Default :data:`DEFAULT_CHANNELS`.
        bot_user_id: The bot's user id, returned by :meth:`bot_identity`.
        emoji: Custom emoji name -> image URL, for :meth:`emoji_url`.
    """

    def __init__(self, users=None, channels=None, bot_user_id: str = BOT_USER_ID, emoji=None):
        self.users = {user_id: _user_object(user_id, value) for user_id, value in (users or DEFAULT_USERS).items()}
        self.channels = {
            channel_id: _channel_object(channel_id, value)
            for channel_id, value in (channels or DEFAULT_CHANNELS).items()
        }
        self.bot_user_id = bot_user_id
        self.emoji = dict(emoji or {})

    def user(self, bot, user_id: str) -> typing.Optional[dict]:
        """Return the user object of ``user_id``, or None when it is unknown."""
        return self.users.get(user_id)

    def channel(self, bot, channel_id: str) -> typing.Optional[dict]:
        """Return the conversation object of ``channel_id``, or None when it is unknown."""
        return self.channels.get(channel_id)

    def bot_identity(self, bot) -> dict:
        """Return what ``auth.test`` returns for ``bot``: ``user_id``, ``user``, ``bot_id``, ``team_id``, ``team``."""
        return {
            "user_id": self.bot_user_id,
            "user": bot.name,
            "bot_id": BOT_ID,
            "team_id": bot.team.team_id,
            "team": bot.team.name,
        }

    def bot_info(self, bot, bot_id: str) -> typing.Optional[dict]:
        return None

    def message(self, bot, channel: str, ts: str) -> typing.Optional[dict]:
        return None

    def is_own_message(self, bot, channel: str, ts: str, item_user: typing.Optional[str]) -> bool:
        """Return whether ``item_user`` is the bot's user id."""
        return item_user == self.bot_user_id

    def user_name(self, bot, user_id: str) -> typing.Optional[str]:
        user = self.user(bot, user_id)
        return display_name(user) if user else None

    def channel_name(self, bot, channel_id: str) -> typing.Optional[str]:
        channel = self.channel(bot, channel_id)
        return channel.get("name") if channel else None

    def emoji_url(self, bot, name: str) -> typing.Optional[str]:
        return self.emoji.get(name)

    def resolver(self, bot) -> BotResolver:
        """Return the production name resolver, reading from this stand-in."""
        return BotResolver(self, bot)


def _user_object(user_id, value):
    if isinstance(value, dict):
        return dict(value, id=user_id)
    return {"id": user_id, "name": value, "real_name": value, "profile": {"display_name": value}}


def _channel_object(channel_id, value):
    if isinstance(value, dict):
        return dict(value, id=channel_id)
    if value is None or channel_id.startswith("D"):
        return {"id": channel_id, "is_im": True, "user": USER_ID}
    if channel_id.startswith("G"):
        return {"id": channel_id, "name": value, "is_group": True, "is_private": True}
    return {"id": channel_id, "name": value, "is_channel": True}


# -- Slack-shaped bodies ---------------------------------------------------------


def message_event_body(
    bot: model.Bot,
    text: str,
    *,
    user: str = USER_ID,
    channel: str = CHANNEL_ID,
    ts: typing.Optional[str] = None,
    thread_ts: typing.Optional[str] = None,
) -> dict:
    """Return an Events API ``event_callback`` body holding a ``message`` event.

    ``channel_type`` is ``im`` for a ``D…`` channel, else ``channel``.
    """
    ts = ts or new_ts()
    event = {
        "type": "message",
        "user": user,
        "text": text,
        "ts": ts,
        "channel": channel,
        "channel_type": "im" if channel.startswith("D") else "channel",
        "event_ts": ts,
        "team": bot.team.team_id,
    }
    if thread_ts:
        event["thread_ts"] = thread_ts
    return _event_callback(bot, event)


def reaction_event_body(
    bot: model.Bot,
    emoji: str,
    *,
    item_ts: str,
    user: str = USER_ID,
    channel: str = CHANNEL_ID,
    item_user: typing.Optional[str] = None,
    removed: bool = False,
) -> dict:
    """Return an ``event_callback`` body holding a ``reaction_added`` (or ``reaction_removed``) event.

    Args:
        emoji: The emoji name without colons, e.g. ``thumbsup``.
        item_ts: The ``ts`` of the message that got the reaction.
        item_user: The user id of that message's author. omnibot runs
            reaction handlers only for the bot's own messages, and decides
            that from this field when it is present.
    """
    ts = new_ts()
    event = {
        "type": "reaction_removed" if removed else "reaction_added",
        "user": user,
        "reaction": emoji,
        "item": {"type": "message", "channel": channel, "ts": item_ts},
        "event_ts": ts,
    }
    if item_user:
        event["item_user"] = item_user
    return _event_callback(bot, event)


def _event_callback(bot, event):
    return {
        "team_id": bot.team.team_id,
        "api_app_id": bot.app_id,
        "event": event,
        "type": "event_callback",
        "event_id": "Ev" + uuid.uuid4().hex[:12].upper(),
        "event_time": int(time.time()),
    }


def slash_command_fields(
    bot: model.Bot,
    command: str,
    text: str = "",
    *,
    user: str = USER_ID,
    channel: str = CHANNEL_ID,
    response_url: typing.Optional[str] = None,
    trigger_id: typing.Optional[str] = None,
) -> typing.Dict[str, str]:
    """Return the form fields Slack POSTs for a slash command, without ``token``.

    Args:
        command: The command with its slash, e.g. ``/echo``.
        text: What the user typed after the command.
        response_url: Where omnibot posts ``responses``; left out when None.
    """
    fields = {
        "team_id": bot.team.team_id,
        "team_domain": bot.team.name,
        "channel_id": channel,
        "user_id": user,
        "command": command,
        "text": text,
        "api_app_id": bot.app_id,
        "is_enterprise_install": "false",
        "trigger_id": trigger_id or new_trigger_id(),
    }
    if response_url:
        fields["response_url"] = response_url
    return fields


def interactive_payload(
    bot: model.Bot,
    payload_type: str = "block_actions",
    *,
    callback_id: typing.Optional[str] = None,
    action_id: typing.Optional[str] = None,
    block_id: typing.Optional[str] = None,
    value: typing.Optional[str] = None,
    values: typing.Optional[typing.Mapping] = None,
    user: str = USER_ID,
    channel: str = CHANNEL_ID,
    message_ts: typing.Optional[str] = None,
    message_text: str = "A message with a component",
    response_url: typing.Optional[str] = None,
    trigger_id: typing.Optional[str] = None,
) -> dict:
    """Return the JSON ``payload`` Slack sends for an interactive component, without ``token``.

    Where each id goes depends on ``payload_type``, as in Slack's payloads:

    - ``block_actions``: one button action with ``action_id`` and
      ``block_id``. Without ``block_id`` the action's ``block_id`` is
      ``callback_id``, which omnibot compares with a handler's
      ``callback_id``. With both, ``callback_id`` becomes the callback id of
      a modal the button is in.
    - ``block_suggestion``: ``action_id``, ``block_id`` and ``value`` (the
      typed text) at the top level, ``callback_id`` as the modal's.
    - ``view_submission`` and ``view_closed``: a modal with ``callback_id``
      and ``values`` as ``view.state.values``.
    - ``dialog_submission``: ``callback_id``, and ``values`` as ``submission``.
    - ``shortcut``, ``message_action`` and ``interactive_message``: a top-level
      ``callback_id``.

    Args:
        values: Modal state values (``{block_id: {action_id: {...}}}``) or dialog submission fields.
        response_url: Put where the type has one (not on views and global shortcuts).

    Raises:
        ValueError: ``payload_type`` is not one of :data:`INTERACTIVE_TYPES`.
    """
    if payload_type not in INTERACTIVE_TYPES:
        raise ValueError(f"unknown interactive type {payload_type!r}; use one of {', '.join(INTERACTIVE_TYPES)}")

    now = new_ts()
    message_ts = message_ts or now
    payload = {
        "type": payload_type,
        "api_app_id": bot.app_id,
        "team": {"id": bot.team.team_id, "domain": bot.team.name},
        "user": {"id": user, "team_id": bot.team.team_id},
        "is_enterprise_install": False,
        "enterprise": None,
        "trigger_id": trigger_id or new_trigger_id(),
    }
    message = {"type": "message", "user": BOT_USER_ID, "text": message_text, "ts": message_ts, "team": bot.team.team_id}
    in_message = {
        "container": {"type": "message", "message_ts": message_ts, "channel_id": channel, "is_ephemeral": False},
        "channel": {"id": channel},
        "message": message,
    }
    if response_url:
        in_message["response_url"] = response_url

    if payload_type == "block_actions":
        action = {
            "type": "button",
            "action_id": action_id or "button",
            "block_id": block_id or callback_id or "actions",
            "value": value or "clicked",
            "text": {"type": "plain_text", "text": "Click"},
            "action_ts": now,
        }
        payload["actions"] = [action]
        if block_id and callback_id:
            payload.update(_modal_parts(bot, callback_id, values, payload_type))
        else:
            payload.update(in_message)
            payload["state"] = {"values": dict(values or {})}
    elif payload_type == "block_suggestion":
        payload.update(action_id=action_id or "select", block_id=block_id or "select_block", value=value or "")
        payload.update(_modal_parts(bot, callback_id, values, payload_type) if callback_id else in_message)
    elif payload_type in ("view_submission", "view_closed"):
        payload.update(_modal_parts(bot, callback_id, values, payload_type))
        payload["response_urls"] = []
        if payload_type == "view_closed":
            payload["is_cleared"] = False
    elif payload_type == "shortcut":
        payload.update(callback_id=callback_id, action_ts=now)
    elif payload_type == "message_action":
        payload.update(in_message, callback_id=callback_id, action_ts=now, message_ts=message_ts)
        del payload["container"]
    elif payload_type == "interactive_message":
        payload.update(
            callback_id=callback_id,
            actions=[{"name": action_id or "button", "type": "button", "value": value or "clicked"}],
            action_ts=now,
            message_ts=message_ts,
            attachment_id="1",
            channel={"id": channel},
            original_message=message,
        )
        if response_url:
            payload["response_url"] = response_url
    else:  # dialog_submission
        payload.update(callback_id=callback_id, submission=dict(values or {}), state="", action_ts=now, channel={"id": channel})
        if response_url:
            payload["response_url"] = response_url
    return payload


def _modal_parts(bot, callback_id, values, payload_type):
    view_id = "V" + uuid.uuid4().hex[:10].upper()
    view = {
        "id": view_id,
        "type": "modal",
        "team_id": bot.team.team_id,
        "app_id": bot.app_id,
        "callback_id": callback_id or "",
        "private_metadata": "",
        "title": {"type": "plain_text", "text": "Modal"},
        "blocks": [],
        "state": {"values": dict(values or {})},
        "hash": f"{int(time.time())}.{uuid.uuid4().hex[:8]}",
    }
    parts = {"view": view}
    if payload_type in ("block_actions", "block_suggestion"):
        parts["container"] = {"type": "view", "view_id": view_id}
    return parts


# -- containers ------------------------------------------------------------------


def message(
    text: str,
    *,
    user: str = USER_ID,
    channel: str = CHANNEL_ID,
    bot: BotLike = BOT_NAME,
    team: str = TEAM_NAME,
    ts: typing.Optional[str] = None,
    thread_ts: typing.Optional[str] = None,
    command: typing.Optional[str] = None,
    regex: typing.Optional[str] = None,
    slack_data=None,
) -> Message:
    """Build the :class:`~omnibot.containers.Message` a callback receives for ``text``.

    A leading ``@<bot name>`` becomes the bot's mention markup, as Slack
    sends it. With ``command`` or ``regex``, the message is matched as a
    handler with that ``match`` would match it, which fills the payload's
    ``match_type``, ``command``/``regex`` and ``args`` as the worker does.

    Args:
        text: The message text, Slack markup allowed (``<@U0TEST001>``).
        command: The ``match`` of a command handler, e.g. ``"echo"``.
        regex: The ``match`` of a regex handler.
        slack_data: Default: a :class:`StubSlackData` with the default users and channels.

    Raises:
        ValueError: The message would not reach such a handler (for
            example a command in a channel message without the bot's mention).
    """
    bot = make_bot(bot, team)
    data = slack_data or StubSlackData()
    mention = f"@{bot.name}"
    if text.startswith(mention):
        text = f"<@{data.bot_identity(bot)['user_id']}>" + text[len(mention):]

    body = message_event_body(bot, text, user=user, channel=channel, ts=ts, thread_ts=thread_ts)
    container = Message(bot, body["event"], _trace(bot, body["event"]), data)
    if command is not None or regex is not None:
        _apply_match(container, command, regex)
    return container


def _apply_match(container, command, regex):
    match_type, pattern = ("command", command) if command is not None else ("regex", regex)
    handler = model.Handler(
        kind=model.MESSAGE,
        index=0,
        callbacks=(),
        bots=frozenset({container.bot.key}),
        match=pattern,
        match_type=match_type,
        pattern=model.compile_pattern(pattern) if match_type == "regex" else None,
        match_reply=True,
    )
    probe = model.Bot(team=container.bot.team, name=container.bot.name, app_id=container.bot.app_id, message_handlers=[handler])
    found = matching.match_message(_ProbeMessage(container, probe))
    if not found:
        raise ValueError(
            f"message {container.payload['text']!r} does not match {match_type} {pattern!r} "
            f"(directed={container.directed}, command_text={container.command_text!r})"
        )
    container.set_match(found[0].match_type, found[0].value, found[0].args)


class _ProbeMessage:
    """A Message seen through another bot, so that matching tries only the probe handler."""

    def __init__(self, message, bot):
        self._message = message
        self.bot = bot

    def __getattr__(self, name):
        return getattr(self._message, name)


def reaction(
    emoji: str,
    *,
    item_ts: typing.Optional[str] = None,
    user: str = USER_ID,
    channel: str = CHANNEL_ID,
    bot: BotLike = BOT_NAME,
    team: str = TEAM_NAME,
    removed: bool = False,
    slack_data=None,
) -> Reaction:
    """Build the :class:`~omnibot.containers.Reaction` for ``emoji`` added to a message at ``item_ts``.

    The payload's ``match_type`` is ``reaction`` and ``reaction`` is the emoji, as after a match.
    """
    bot = make_bot(bot, team)
    data = slack_data or StubSlackData()
    body = reaction_event_body(bot, emoji, item_ts=item_ts or new_ts(), user=user, channel=channel, removed=removed)
    container = Reaction(bot, body["event"], _trace(bot, body["event"]), data)
    container.set_match("reaction", emoji)
    return container


def slash_command(
    command: str,
    text: str = "",
    *,
    user: str = USER_ID,
    channel: str = CHANNEL_ID,
    bot: BotLike = BOT_NAME,
    team: str = TEAM_NAME,
    response_url: str = "https://hooks.slack.invalid/commands/test",
    slack_data=None,
) -> SlashCommand:
    """Build the :class:`~omnibot.containers.SlashCommand` for ``command text``.

    ``response_url`` defaults to an address under the reserved ``.invalid``
    domain, which never resolves: containers do not post, and a test that
    applies results must pass its own hook URL.
    """
    bot = make_bot(bot, team)
    data = slack_data or StubSlackData()
    fields = slash_command_fields(bot, command, text, user=user, channel=channel, response_url=response_url)
    return SlashCommand(bot, fields, dict(bot.trace, command=command), data)


def interactive_component(
    payload_type: str = "block_actions",
    *,
    callback_id: typing.Optional[str] = None,
    action_id: typing.Optional[str] = None,
    block_id: typing.Optional[str] = None,
    value: typing.Optional[str] = None,
    values: typing.Optional[typing.Mapping] = None,
    user: str = USER_ID,
    channel: str = CHANNEL_ID,
    bot: BotLike = BOT_NAME,
    team: str = TEAM_NAME,
    response_url: str = "https://hooks.slack.invalid/actions/test",
    payload: typing.Optional[typing.Mapping] = None,
    slack_data=None,
) -> InteractiveComponent:
    """Build the :class:`~omnibot.containers.InteractiveComponent` for an interactive payload.

    The payload comes from :func:`interactive_payload` (or is ``payload``,
    Slack's own JSON). It is routed like production against one handler
    with the given ``callback_id``, ``action_id`` and ``block_id``, which
    fills ``callback_id``, ``routed_by`` and ``routed_action``.

    Raises:
        ValueError: The type is unknown, or a handler with these ids would
            not receive the payload.
    """
    bot = make_bot(bot, team)
    data = slack_data or StubSlackData()
    if payload is None:
        payload = interactive_payload(
            bot,
            payload_type,
            callback_id=callback_id,
            action_id=action_id,
            block_id=block_id,
            value=value,
            values=values,
            user=user,
            channel=channel,
            response_url=response_url,
        )
    payload = json.loads(json.dumps(payload))

    route = None
    if callback_id or action_id or block_id:
        handler = model.Handler(
            kind=model.INTERACTIVE,
            index=0,
            callbacks=(),
            bots=frozenset({bot.key}),
            callback_id=callback_id,
            action_id=action_id,
            block_id=block_id,
        )
        route = interactive_routing.find_route([handler], payload)
        if route is None:
            raise ValueError(
                f"a handler with callback_id={callback_id!r}, action_id={action_id!r}, "
                f"block_id={block_id!r} would not receive this {payload.get('type')} payload"
            )
    trace = dict(bot.trace, component_type=payload.get("type"))
    return InteractiveComponent(bot, payload, trace, data, route)


def _trace(bot, event):
    return dict(bot.trace, event_type=event.get("type"), event_ts=event.get("event_ts"))


# -- checking results ------------------------------------------------------------

ACTION_NAME = re.compile(r"^[a-z][a-zA-Z0-9]*(\.[a-z][a-zA-Z0-9]*)+$")
"""Slack Web API method names: dot-separated camelCase words, e.g. ``chat.postMessage``."""

RESULT_KEYS = ("actions", "responses")
STRING_ARGUMENTS = ("channel", "text", "thread_ts", "ts", "timestamp", "user", "users", "name", "trigger_id", "view_id")
"""Common Web API arguments that Slack takes as strings."""
LIST_ARGUMENTS = ("blocks", "attachments")
"""Arguments that are lists, or the same list encoded as a JSON string."""
RESPONSE_TYPES = ("in_channel", "ephemeral")
RESPONSE_ACTIONS = ("errors", "update", "push", "clear")
OMNIBOT_PARSE_KINDS = ("specials", "channels", "users")


def result_problems(result, container=None, *, synchronous: bool = False) -> typing.List[str]:
    """Return every problem of a callback's result, as messages; empty when it is valid.

    Checks what omnibot would log and skip, and what Slack would reject.
    ``actions`` and ``responses`` must be lists of mappings. Each action
    names a Web API method in Slack's form (``chat.postMessage``, not
    ``chat_postMessage``). Kwargs must encode as JSON and have the usual
    types, ``omnibot_parse`` may name only known kinds, and responses need a
    payload with a ``response_url``. A key other than ``actions`` and
    ``responses`` is reported, because omnibot ignores it.

    Args:
        result: What the callback returned; None counts as ``{}``.
        container: The container the callback got; enables the ``response_url`` check.
        synchronous: The callback is marked ``synchronous: true``, so its
            dict is the HTTP response body: it must encode as JSON, and a
            ``response_action`` must be one that Slack accepts.
    """
    if result is None:
        return []
    if not isinstance(result, dict):
        return [f"result must be a dict, not {type(result).__name__}; omnibot ignores it"]
    if synchronous:
        return _synchronous_problems(result)

    problems = [
        f"unknown key {key!r}: omnibot reads only 'actions' and 'responses'"
        for key in result
        if key not in RESULT_KEYS
    ]
    actions = result.get("actions") or []
    responses = result.get("responses") or []
    not_lists = [
        f"{key} must be a list, not {type(value).__name__}; omnibot ignores the whole result"
        for key, value in (("actions", actions), ("responses", responses))
        if not isinstance(value, list)
    ]
    if not_lists:
        return problems + not_lists

    for index, action in enumerate(actions):
        problems.extend(_action_problems(f"actions[{index}]", action))
    if responses and container is not None and not container.response_url:
        problems.append(f"responses: this {container.payload_type} payload has no response_url, so omnibot skips them")
    for index, response in enumerate(responses):
        problems.extend(_response_problems(f"responses[{index}]", response))
    return problems


def assert_valid_result(result, container=None, *, synchronous: bool = False) -> None:
    """Fail the test with every problem that :func:`result_problems` finds in ``result``.

    Raises:
        AssertionError: The result has problems; the message lists them all.
    """
    problems = result_problems(result, container, synchronous=synchronous)
    if problems:
        raise AssertionError("invalid callback result:\n  " + "\n  ".join(problems))


def _action_problems(where, action):
    if not isinstance(action, dict):
        return [f"{where}: must be a mapping with 'action' and 'kwargs', not {type(action).__name__}"]
    problems = [
        f"{where}.{key}: unknown key; an action has only 'action' and 'kwargs'"
        for key in action
        if key not in ("action", "kwargs")
    ]
    name = action.get("action")
    if not isinstance(name, str):
        problems.append(f"{where}.action: missing or not a string")
    elif not ACTION_NAME.match(name):
        hint = _method_hint(name)
        problems.append(f"{where}.action: {name!r} is not a Slack Web API method name{hint}")

    kwargs = action.get("kwargs", {})
    if not isinstance(kwargs, dict):
        problems.append(f"{where}.kwargs: must be a mapping, not {type(kwargs).__name__}")
        return problems
    problems.extend(_arguments_problems(f"{where}.kwargs", kwargs))
    return problems


def _method_hint(name):
    """Return a "did you mean" for names in slack_sdk's form (``chat_postMessage``); a guess only."""
    words = [word for word in re.split(r"[._]", name) if word]
    if len(words) < 2:
        return " (expected a form such as 'chat.postMessage')"
    rest = "".join(word[:1].upper() + word[1:] for word in words[2:])
    return f"; did you mean {words[0].lower() + '.' + words[1] + rest!r}?"


def _response_problems(where, response):
    if not isinstance(response, dict):
        return [f"{where}: must be a mapping, not {type(response).__name__}"]
    problems = _arguments_problems(where, response)
    if not any(key in response for key in ("text", "blocks", "attachments", "delete_original")):
        problems.append(f"{where}: has no 'text', 'blocks' or 'attachments', so Slack shows nothing")
    response_type = response.get("response_type")
    if response_type is not None and response_type not in RESPONSE_TYPES:
        problems.append(f"{where}.response_type: {response_type!r} is not one of {', '.join(RESPONSE_TYPES)}")
    for key in ("replace_original", "delete_original"):
        if key in response and not isinstance(response[key], bool):
            problems.append(f"{where}.{key}: must be true or false, not {response[key]!r}")
    return problems


def _arguments_problems(where, arguments):
    problems = []
    for key, value in arguments.items():
        if not isinstance(key, str):
            problems.append(f"{where}: argument name {key!r} is not a string")
            continue
        if key == "omnibot_parse":
            problems.extend(_omnibot_parse_problems(f"{where}.omnibot_parse", value, arguments))
            continue
        if value is None:
            continue
        if key in STRING_ARGUMENTS and not isinstance(value, str):
            problems.append(f"{where}.{key}: must be a string, not {type(value).__name__} {value!r}")
        elif key in LIST_ARGUMENTS and not isinstance(value, (list, str)):
            problems.append(f"{where}.{key}: must be a list (or its JSON string), not {type(value).__name__}")
        else:
            problems.extend(_json_problems(f"{where}.{key}", value))
    return problems


def _omnibot_parse_problems(where, value, arguments):
    if not isinstance(value, dict):
        return [f"{where}: must map field names to lists of kinds, not {type(value).__name__}"]
    problems = []
    for field, kinds in value.items():
        if not isinstance(arguments.get(field), str):
            problems.append(f"{where}.{field}: names a field that is missing or not a string")
        if not isinstance(kinds, list) or not all(kind in OMNIBOT_PARSE_KINDS for kind in kinds):
            problems.append(f"{where}.{field}: must be a list of {', '.join(OMNIBOT_PARSE_KINDS)}, not {kinds!r}")
    return problems


def _json_problems(where, value):
    try:
        json.dumps(value)
    except (TypeError, ValueError) as error:
        return [f"{where}: cannot be encoded as JSON: {error}"]
    return []


def _synchronous_problems(result):
    problems = _json_problems("result", result)
    response_action = result.get("response_action")
    if response_action is not None and response_action not in RESPONSE_ACTIONS:
        problems.append(f"response_action: {response_action!r} is not one of {', '.join(RESPONSE_ACTIONS)}")
    if response_action == "errors" and not isinstance(result.get("errors"), dict):
        problems.append("errors: a response_action 'errors' needs an 'errors' mapping of block_id to message")
    if response_action in ("update", "push") and not isinstance(result.get("view"), dict):
        problems.append(f"view: a response_action {response_action!r} needs a 'view' mapping")
    return problems
