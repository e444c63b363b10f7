"""The ``SlashCommand`` container: a slash command's form fields, parsed."""

import logging
import typing

from omnibot import parser
from omnibot.containers.base import Container

logger = logging.getLogger(__name__)


class SlashCommand(Container):
    """A slash command as callbacks see it.

    The payload contains omnibot's fields: ``enterprise_id``,
    ``enterprise_name``, ``command``, ``text`` (raw, as Slack sent it), the
    parser's ``parsed_text``, ``users``, ``channels``, ``subteams``,
    ``specials``, ``emojis``, ``emails`` and ``urls``, ``response_url``,
    ``trigger_id``, ``user_id``, ``parsed_user`` (the Slack user object or
    None), ``channel_id`` and ``channel`` (the conversation object, ``{}``
    when the lookup failed). ``args`` is ``parsed_text`` with each run of
    whitespace turned into one space and the ends stripped, so an empty or
    blank command gives ``""``.

    Args:
        bot: The bot that received the command.
        fields: The form fields of the request (``token`` may be absent).
        event_trace: Logging context.
        slack_data: A :class:`omnibot.slack.data.SlackData` for lookups.
    """

    payload_type = "slash_command"

    def __init__(self, bot, fields: typing.Mapping[str, str], event_trace, slack_data):
        super().__init__(bot, event_trace)
        self._slack_data = slack_data
        payload = self.payload
        payload["enterprise_id"] = fields.get("enterprise_id")
        payload["enterprise_name"] = fields.get("enterprise_name")
        payload["command"] = fields.get("command")
        payload["response_url"] = fields.get("response_url")
        payload["trigger_id"] = fields.get("trigger_id")

        user_id = fields.get("user_id")
        payload["user_id"] = user_id
        payload["parsed_user"] = slack_data.user(bot, user_id) if user_id else None

        text = fields.get("text") or ""
        payload["text"] = text
        parsed = parser.parse_text(text, slack_data.resolver(bot))
        parsed["parsed_text"] = parsed["parsed_text"].replace("\u00a0", " ")
        payload.update(parsed)
        payload["args"] = parser.normalize_whitespace(parsed["parsed_text"])

        channel_id = fields.get("channel_id")
        payload["channel_id"] = channel_id
        channel = None
        if channel_id:
            self.event_trace["channel_id"] = channel_id
            channel = slack_data.channel(bot, channel_id)
            if channel is None:
                logger.warning("could not look up channel %s", channel_id, extra=self.event_trace)
        payload["channel"] = channel or {}

    @property
    def command(self) -> typing.Optional[str]:
        return self.payload["command"]

    @property
    def text(self) -> str:
        return self.payload["text"]

    @property
    def parsed_text(self) -> str:
        return self.payload["parsed_text"]

    @property
    def user_id(self) -> typing.Optional[str]:
        return self.payload["user_id"]

    @property
    def trigger_id(self) -> typing.Optional[str]:
        return self.payload["trigger_id"]

    def emoji_url(self, name: str) -> typing.Optional[str]:
        """Return the image URL (or ``alias:<name>``) of custom emoji ``name`` from ``emoji.list``, or None.

        When the Slack data layer offers ``emoji_url(bot, name)``, that is
        used instead of calling ``emoji.list``.
        """
        lookup = getattr(self._slack_data, "emoji_url", None)
        if callable(lookup):
            return lookup(self.bot, name)

        # NOTE: this path calls emoji.list on every use and caches nothing,
        # so it suits a command such as /bigemoji but not a hot path.
        answer = self._slack_data.clients.call(self.bot, "emoji.list", {}, trace=self.event_trace)
        if not answer.get("ok"):
            logger.warning("emoji.list failed: %s", answer.get("error"), extra=self.event_trace)
            return None
        emoji = answer.get("emoji")
        value = emoji.get(name) if isinstance(emoji, dict) else None
        return value if isinstance(value, str) else None
