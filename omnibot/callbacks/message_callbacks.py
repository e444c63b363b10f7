"""Callbacks for message and reaction handlers.

Each callback returns ``{"actions": [...]}`` or ``{}`` when it has nothing to do.
A ``chat.postMessage`` action without ``channel`` goes to the message's channel,
and omnibot also fills its ``thread_ts``. An explicit ``thread_ts: None`` posts to
the channel instead of the thread.

The text these callbacks post carries no ``omnibot_parse``. A plain ``@here`` in it
therefore stays plain text and does not notify the channel. The one exception is
:func:`channel_channel_callback`, which posts ``<!here>`` markup on purpose.
"""

import logging
import random
import typing

logger = logging.getLogger(__name__)

SPECIALS = ("@here", "@channel", "@everyone")
"""Broadcast mentions that :func:`specials_callback` reacts to, as the message payload's ``specials`` values."""

DEFAULT_SPECIALS_MESSAGE = "Please don't use {special} in this channel."
"""Message of :func:`specials_callback` for a channel whose config has no valid ``message``."""

UNKNOWN_MEMBER_COUNT = "many"
"""The ``{member_count}`` of :func:`specials_callback` when the channel's member count is unknown."""

CHANNEL_CHANNEL_NAME = "channel-channel"
"""The only channel where :func:`channel_channel_callback` acts."""

CHANNEL_CHANNEL_REACTIONS = (
    "please_make_sure_to_use_at_here_or_at_channel_in_your_message_next_time",
    "mega",
    "bangbang",
)
"""Reactions of :func:`channel_channel_callback`. The first is a custom emoji that the workspace must provide."""

CHANNEL_CHANNEL_TEXT = "Remember to notify everyone here: put <!here> or <!channel> in your message next time."
"""Reply of :func:`channel_channel_callback`. Its ``<!here>`` and ``<!channel>`` notify the channel."""

EMPTY_ECHO_TEXT = "(nothing to echo)"
"""Text that :func:`echo_callback` posts when the command has no arguments."""


def help_callback(container) -> dict:
    """Post the message handlers of the bot that received the message.

    Command handlers are listed in a "Commands" attachment and regex handlers in
    a "Regular expressions" attachment, each as a field with the handler's
    ``match`` as title and its ``description`` as value. Reaction handlers are
    not listed.

    Args:
        container: The message container. Only ``container.bot`` is read.

    Returns:
        One ``chat.postMessage`` action with ``text`` and ``attachments``. When
        the bot has no command or regex handler, the text states that and
        there are no attachments.
    """
    bot = container.bot
    commands = [handler for handler in bot.message_handlers if handler.match_type == "command"]
    regexes = [handler for handler in bot.message_handlers if handler.match_type == "regex"]

    attachments = []
    if commands:
        attachments.append(_help_attachment("Commands", commands))
    if regexes:
        attachments.append(_help_attachment("Regular expressions", regexes))

    if attachments:
        text = f"Messages that {bot.name} responds to:"
    else:
        text = f"{bot.name} has no commands."
    return _post({"text": text, "attachments": attachments})


def _help_attachment(title: str, handlers) -> dict:
    fields = []
    for handler in handlers:
        description = handler.description or "(no description)"
        if handler.match_type == "regex" and handler.absence:
            description += " (runs for messages that do not match)"
        fields.append({"title": handler.match, "value": description, "short": False})
    matches = ", ".join(handler.match for handler in handlers)
    return {"title": f"{title}:", "fallback": f"{title}: {matches}", "fields": fields}


def specials_callback(container, channels: typing.Mapping[str, typing.Any]) -> dict:
    """Reply to an ``@here``, ``@channel`` or ``@everyone`` in a configured channel.

    The reply is the channel's ``message`` with ``{special}`` replaced by the
    broadcast mention used and ``{member_count}`` by the channel's
    ``num_members``, or by "many" when that is unknown. A message with another
    placeholder, or a stray brace, is logged and replaced by
    :data:`DEFAULT_SPECIALS_MESSAGE`. When the message contains several broadcast
    mentions, the reply names the first.

    Args:
        container: The message container. Reads ``payload["specials"]``,
            ``payload["channel"]`` (``name_normalized``, else ``name``, and
            ``num_members``), ``payload["channel_id"]`` and ``payload["ts"]``.
        channels: Channel name (without ``#``) to its config, a mapping with
            optional ``message`` and ``reaction`` (an emoji name, colons
            allowed). An empty config posts the default message.

    Returns:
        A ``chat.postMessage`` action with the reply, followed by a
        ``reactions.add`` action on the message when the channel has a
        ``reaction``. ``{}`` when the channel is not in ``channels`` or the
        message uses no broadcast mention.
    """
    payload = container.payload
    channel = payload.get("channel") or {}
    channel_name = _channel_name(channel)
    if channel_name not in channels:
        return {}
    channel_config = channels[channel_name] or {}
    if not isinstance(channel_config, typing.Mapping):
        logger.error(
            "specials_callback: the config of channel %s must be a mapping with message and reaction, not %s",
            channel_name,
            type(channel_config).__name__,
            extra=container.event_trace,
        )
        return {}

    used = [value for value in (payload.get("specials") or {}).values() if value in SPECIALS]
    if not used:
        return {}
    special = used[0]

    member_count = channel.get("num_members")
    if member_count is None:
        member_count = UNKNOWN_MEMBER_COUNT
    text = _format_specials_message(container, channel_name, channel_config, special, member_count)

    actions = [{"action": "chat.postMessage", "kwargs": {"text": text}}]
    reaction = channel_config.get("reaction")
    if reaction:
        actions.append(_reaction(payload, reaction))
    return {"actions": actions}


def _format_specials_message(container, channel_name, channel_config, special, member_count) -> str:
    template = channel_config.get("message") or DEFAULT_SPECIALS_MESSAGE
    try:
        return str(template).format(special=special, member_count=member_count)
    except (KeyError, IndexError, ValueError) as error:
        logger.error(
            "specials_callback: invalid message for channel %s (%s: %s); only {special} and "
            "{member_count} may appear in braces, so the default message was posted",
            channel_name,
            type(error).__name__,
            error,
            extra=container.event_trace,
        )
        return DEFAULT_SPECIALS_MESSAGE.format(special=special)


def channel_channel_callback(container) -> dict:
    """React to every message in ``#channel-channel`` and remind the channel to use ``@here``.

    This is a joke handler kept from Lyft's omnibot. It adds three reactions to
    the message and posts :data:`CHANNEL_CHANNEL_TEXT`, which notifies the whole
    channel, to the channel rather than the thread.

    Args:
        container: The message container. Reads ``payload["channel"]``,
            ``payload["channel_id"]`` and ``payload["ts"]``.

    Returns:
        Three ``reactions.add`` actions and one ``chat.postMessage`` action, or
        ``{}`` in every channel other than ``channel-channel``.
    """
    payload = container.payload
    if _channel_name(payload.get("channel") or {}) != CHANNEL_CHANNEL_NAME:
        return {}
    actions = [_reaction(payload, name) for name in CHANNEL_CHANNEL_REACTIONS]
    actions.append(
        {"action": "chat.postMessage", "kwargs": {"text": CHANNEL_CHANNEL_TEXT, "thread_ts": None}}
    )
    return {"actions": actions}


def congratulations_bot_callback(
    container,
    channels: typing.Collection[str],
    emojis: typing.Sequence[str],
    messages: typing.Sequence[str],
) -> dict:
    """Congratulate the author of a message in one of ``channels``.

    Args:
        container: The message container. Reads ``payload["channel"]["name"]``,
            ``payload["channel_id"]`` and ``payload["ts"]``.
        channels: Names of the channels to act in, without ``#``.
        emojis: Reaction names, one of which is picked at random.
        messages: Reply texts, one of which is picked at random.

    Returns:
        A ``reactions.add`` action on the message and a ``chat.postMessage``
        action in the message's thread. The reaction is left out when
        ``emojis`` is empty and the reply when ``messages`` is empty. ``{}``
        in every other channel.
    """
    payload = container.payload
    if (payload.get("channel") or {}).get("name") not in channels:
        return {}

    actions = []
    if emojis:
        actions.append(_reaction(payload, random.choice(emojis)))
    if messages:
        actions.append(
            {
                "action": "chat.postMessage",
                "kwargs": {"text": random.choice(messages), "thread_ts": payload.get("ts")},
            }
        )
    return {"actions": actions}


def channel_response_callback(container, channels: typing.Mapping[str, typing.Any]) -> dict:
    """Post a canned reply when a message in a configured channel contains one of its phrases.

    A phrase without spaces must match a whole word of the message's
    ``parsed_text`` (split on whitespace), but a phrase with spaces may appear
    anywhere in it. Matching is case-sensitive.

    Args:
        container: The message container. Reads ``payload["channel"]``
            (``name_normalized``, else ``name``) and ``payload["parsed_text"]``.
        channels: Channel name (without ``#``) to its config, a mapping with
            ``find`` (a list of phrases, or one phrase) and ``message`` (the
            reply).

    Returns:
        One ``chat.postMessage`` action with the channel's ``message``, or
        ``{}`` when the channel is not configured, no phrase matches, or the
        channel's config lacks ``find`` or ``message`` (logged).
    """
    payload = container.payload
    channel_name = _channel_name(payload.get("channel") or {})
    channel_config = channels.get(channel_name)
    if not channel_config:
        return {}
    if not isinstance(channel_config, typing.Mapping):
        logger.error(
            "channel_response_callback: the config of channel %s must be a mapping with find and message, not %s",
            channel_name,
            type(channel_config).__name__,
            extra=container.event_trace,
        )
        return {}

    phrases = channel_config.get("find")
    message = channel_config.get("message")
    if not phrases or not message:
        logger.error(
            "channel_response_callback: the config of channel %s needs both find and message",
            channel_name,
            extra=container.event_trace,
        )
        return {}
    if isinstance(phrases, str):
        phrases = [phrases]

    text = payload.get("parsed_text") or ""
    words = text.split()
    for phrase in phrases:
        phrase = str(phrase)
        matched = phrase in text if " " in phrase else phrase in words
        if matched:
            return _post({"text": message})
    return {}


def example_topic_callback(container) -> dict:
    """Set the channel's topic to the command's arguments.

    Args:
        container: The message container. Reads ``payload["args"]`` and
            ``payload["channel_id"]``.

    Returns:
        One ``conversations.setTopic`` action. Lyft's omnibot used
        ``channels.setTopic``, which Slack has retired.
    """
    payload = container.payload
    return {
        "actions": [
            {
                "action": "conversations.setTopic",
                "kwargs": {"channel": payload.get("channel_id"), "topic": payload.get("args") or ""},
            }
        ]
    }


def example_attachment_callback(container) -> dict:
    """Post a fixed message attachment, to show the shape of one.

    Args:
        container: The message container, which is not read.

    Returns:
        One ``chat.postMessage`` action with one attachment.
    """
    attachment = {
        "fallback": "An example attachment with one field.",
        "color": "#2eb886",
        "title": "Example attachment",
        "fields": [{"title": "Field", "value": "A field's value.", "short": False}],
    }
    return _post({"text": "Here is an example attachment:", "attachments": [attachment]})


def test_callback(container, text: str = "") -> dict:
    """Post the configured ``text``, for example to check that a handler matches.

    Args:
        container: The message or reaction container, which is not read.
        text: The text to post; other values are converted with ``str``.

    Returns:
        One ``chat.postMessage`` action.
    """
    return _post({"text": str(text)})


def echo_callback(container) -> dict:
    """Post the arguments of the command, or :data:`EMPTY_ECHO_TEXT` when there are none.

    The arguments come from the message's ``parsed_text``, so a mention in them
    is posted as plain text and notifies no one.

    Args:
        container: The message container. Reads ``payload["args"]``.

    Returns:
        One ``chat.postMessage`` action.
    """
    args = (container.payload.get("args") or "").strip()
    return _post({"text": args or EMPTY_ECHO_TEXT})


def _channel_name(channel: typing.Mapping) -> typing.Optional[str]:
    """Return the conversation's ``name_normalized``, else its ``name``, else None."""
    return channel.get("name_normalized") or channel.get("name")


def _reaction(payload: typing.Mapping, name: str) -> dict:
    """Return a ``reactions.add`` action on the message of ``payload``."""
    return {
        "action": "reactions.add",
        "kwargs": {
            "channel": payload.get("channel_id"),
            "timestamp": payload.get("ts"),
            "name": str(name).strip(":"),
        },
    }


def _post(kwargs: dict) -> dict:
    return {"actions": [{"action": "chat.postMessage", "kwargs": kwargs}]}
