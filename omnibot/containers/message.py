"""The ``Message`` container: a parsed ``message`` or ``app_mention`` event."""

import logging
import re
import typing

from omnibot import parser
from omnibot.containers.base import Container, Unsupported

logger = logging.getLogger(__name__)

# Characters that may follow a leading @mention before the command.
_MENTION_SEPARATORS = ":,"
# Every Unicode space, including U+00A0 that Slack clients paste.
_ANY_SPACE = re.compile(r"\s")


class Message(Container):
    """A Slack message as callbacks see it.

    Args:
        bot: The bot that received the event.
        event: The inner ``event`` object of the Events API payload.
        event_trace: Logging context.
        slack_data: A :class:`omnibot.slack.data.SlackData` for lookups.

    Raises:
        Unsupported: The message is from a bot or Slackbot, or has a subtype.
    """

    payload_type = "message"

    def __init__(self, bot, event: typing.Mapping, event_trace, slack_data):
        super().__init__(bot, event_trace)
        self.event = event
        self._check_supported(event)

        channel_id = event.get("channel")
        if not isinstance(channel_id, str) or not isinstance(event.get("text"), str):
            raise Unsupported("message event without channel or text")

        payload = self.payload
        payload["event_type"] = event.get("type")
        payload["ts"] = event.get("ts")
        payload["thread_ts"] = event.get("thread_ts")
        payload["parent_user_id"] = event.get("parent_user_id")
        payload["user"] = event.get("user")
        payload["parsed_user"] = slack_data.user(bot, event["user"]) if event.get("user") else None
        payload["text"] = event["text"]
        payload["channel_id"] = channel_id
        self.event_trace["channel_id"] = channel_id
        channel = slack_data.channel(bot, channel_id)
        if channel is None:
            logger.warning("could not look up channel %s", channel_id, extra=self.event_trace)
        payload["channel"] = channel or {}
        if "files" in event:
            payload["files"] = event["files"]

        parsed = parser.parse_text(event["text"], slack_data.resolver(bot))
        parsed["parsed_text"] = parsed["parsed_text"].replace("\u00a0", " ")
        payload.update(parsed)

        identity = slack_data.bot_identity(bot)
        self._find_direction(identity.get("user_id"), event.get("channel_type"))

    @staticmethod
    def _check_supported(event):
        if event.get("bot_id"):
            raise Unsupported("message from a bot")
        if event.get("user") == "USLACKBOT":
            raise Unsupported("message from Slackbot")
        if event.get("subtype"):
            raise Unsupported(f"message with subtype {event.get('subtype')}")

    def _find_direction(self, bot_user_id, channel_type):
        """Set ``directed``, ``mentioned`` and ``command_text`` as omnibot defined them."""
        payload = self.payload
        raw_text = payload["text"].lstrip()
        parsed_text = payload["parsed_text"].lstrip()
        mention_prefix = f"@{self.bot.name}"

        starts_with_mention = False
        remainder = parsed_text
        if bot_user_id and raw_text.startswith(f"<@{bot_user_id}") and ">" in raw_text:
            # The parsed text starts with this token's parsed form: the
            # resolved @name, or the raw token when the name is unknown.
            token = raw_text[: raw_text.index(">") + 1]
            name = payload["users"].get(token)
            shown = f"@{name}" if name and name != bot_user_id else token
            if parsed_text.startswith(shown):
                starts_with_mention = True
                remainder = parsed_text[len(shown):]
        elif _starts_with_word(parsed_text, mention_prefix):
            starts_with_mention = True
            remainder = parsed_text[len(mention_prefix):]

        is_im = (
            channel_type == "im"
            or payload["channel_id"].startswith("D")
            or bool(payload["channel"].get("is_im"))
        )
        payload["directed"] = starts_with_mention or is_im
        payload["mentioned"] = self._mentions_bot(bot_user_id)
        if starts_with_mention:
            remainder = remainder.lstrip().lstrip(_MENTION_SEPARATORS)
        payload["command_text"] = parser.normalize_whitespace(remainder)

    def _mentions_bot(self, bot_user_id):
        for token, name in self.payload["users"].items():
            if bot_user_id and token.startswith(f"<@{bot_user_id}"):
                return True
            if name == self.bot.name:
                return True
        return False

    @property
    def is_reply(self) -> bool:
        """Return whether this message is a reply inside a thread (not the thread's parent)."""
        thread_ts = self.payload.get("thread_ts")
        return bool(thread_ts) and thread_ts != self.payload.get("ts")

    @property
    def directed(self) -> bool:
        return self.payload["directed"]

    @property
    def mentioned(self) -> bool:
        return self.payload["mentioned"]

    @property
    def command_text(self) -> str:
        return self.payload["command_text"]

    @property
    def parsed_text(self) -> str:
        return self.payload["parsed_text"]

    @property
    def reply_thread_ts(self):
        if self.payload["channel"].get("is_im") or self.payload["channel_id"].startswith("D"):
            return self.payload.get("thread_ts")
        return self.payload.get("thread_ts") or self.payload.get("ts")


def _starts_with_word(text, prefix):
    if not text.startswith(prefix):
        return False
    rest = text[len(prefix):]
    return not rest or bool(_ANY_SPACE.match(rest[0])) or rest[0] in _MENTION_SEPARATORS
