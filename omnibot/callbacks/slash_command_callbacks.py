"""Callbacks for slash command handlers.

Each callback returns ``{"responses": [...]}``, and omnibot posts every response
to the command's ``response_url``. A response without ``response_type`` gets the
handler's ``response_type``, and ``ephemeral`` when the handler has none.
"""

import logging
import re
import typing

logger = logging.getLogger(__name__)

TABLEFLIP = "(╯°□°)╯︵ ┻━┻"
UNFLIPTABLE = "┬─┬ノ( º _ ºノ)"

EMPTY_ECHO_TEXT = "(nothing to echo)"
"""Text that :func:`echo_callback` responds with when the command has no text."""

# Slack emoji names: lowercase letters, digits and _ + ' -.
_EMOJI_NAME = re.compile(r"[a-z0-9_+'\-]+")
_IMAGE_URL_PREFIXES = ("https://", "http://")
_ALIAS_PREFIX = "alias:"


def echo_callback(container) -> dict:
    """Respond with the text that followed the command.

    The response requests that omnibot turn ``@user``, ``#channel`` and ``@here`` in
    the text into Slack markup, so they mention and notify as if the user had
    posted them.

    Args:
        container: The slash command container. Reads ``payload["parsed_text"]``,
            falling back to ``payload["text"]``.

    Returns:
        One response whose text is the command's text, or
        :data:`EMPTY_ECHO_TEXT` when there is none.
    """
    payload = container.payload
    text = (payload.get("parsed_text") or payload.get("text") or "").strip()
    return {
        "responses": [
            {
                "text": text or EMPTY_ECHO_TEXT,
                "omnibot_parse": {"text": ["users", "specials", "channels"]},
            }
        ]
    }


def tableflip_callback(container) -> dict:
    """Flip a table in the channel, followed by the command's text if there is one.

    Args:
        container: The slash command container. Reads ``payload["text"]``,
            which is posted as Slack sent it.

    Returns:
        One ``in_channel`` response.
    """
    return _in_channel(_with_text(TABLEFLIP, container.payload))


def unfliptable_callback(container) -> dict:
    """Put a table back in the channel, followed by the command's text if there is one.

    Args:
        container: The slash command container. Reads ``payload["text"]``,
            which is posted as Slack sent it.

    Returns:
        One ``in_channel`` response.
    """
    return _in_channel(_with_text(UNFLIPTABLE, container.payload))


def bigemoji_callback(container) -> dict:
    """Show a custom emoji as a full-size image in the channel.

    The command's text must be one emoji name, with or without colons. Its
    image URL is ``payload["emoji_url"]``, which omnibot fills for a custom
    emoji of the workspace. When that is missing, the callback calls
    ``container.emoji_url(name)`` if the container has that method. An alias
    (an ``alias:<name>`` value, as in Slack's ``emoji.list``) is followed once
    through that method. Standard Unicode emoji have no URL, so they are
    reported as unknown.

    Args:
        container: The slash command container. Reads ``payload["text"]``,
            ``payload["command"]``, ``payload["user_id"]`` and
            ``payload["emoji_url"]``.

    Returns:
        An ``in_channel`` response with an image block of the emoji and a
        context block naming the user who asked for it. An ``ephemeral``
        response with the usage when the text is not one emoji name, or with
        an "is not a custom emoji" message when no URL is known.
    """
    payload = container.payload
    command = payload.get("command") or "/bigemoji"
    words = (payload.get("text") or "").split()
    name = words[0].strip(":").lower() if len(words) == 1 else ""
    if not _EMOJI_NAME.fullmatch(name):
        return _ephemeral(f"Usage: {command} :emoji_name:")

    url = _emoji_url(container, name)
    if url is None:
        logger.debug("bigemoji_callback: no image URL for emoji %s", name, extra=container.event_trace)
        return _ephemeral(f"`:{name}:` is not a custom emoji of this workspace.")

    user_id = payload.get("user_id")
    request = f"`{command} :{name}:`"
    context = f"<@{user_id}> {request}" if user_id else request
    return {
        "responses": [
            {
                "response_type": "in_channel",
                "text": f":{name}:",
                "blocks": [
                    {"type": "context", "elements": [{"type": "mrkdwn", "text": context}]},
                    {"type": "image", "image_url": url, "alt_text": f":{name}:"},
                ],
            }
        ]
    }


def _emoji_url(container, name: str) -> typing.Optional[str]:
    """Return the image URL of custom emoji ``name``, or None when it is unknown."""
    lookup = getattr(container, "emoji_url", None)
    if not callable(lookup):
        lookup = None

    url = container.payload.get("emoji_url")
    if not url and lookup is not None:
        url = lookup(name)
    if isinstance(url, str) and url.startswith(_ALIAS_PREFIX):
        target = url[len(_ALIAS_PREFIX):]
        url = lookup(target) if lookup is not None and target else None
    if isinstance(url, str) and url.startswith(_IMAGE_URL_PREFIXES):
        return url
    return None


def _with_text(prefix: str, payload: typing.Mapping) -> str:
    text = (payload.get("text") or "").strip()
    return f"{prefix} {text}" if text else prefix


def _in_channel(text: str) -> dict:
    return {"responses": [{"response_type": "in_channel", "text": text}]}


def _ephemeral(text: str) -> dict:
    return {"responses": [{"response_type": "ephemeral", "text": text}]}
