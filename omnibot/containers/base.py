"""The base of every container: ``payload``, ``bot`` and ``event_trace``, as callbacks receive them."""

import typing


class Unsupported(Exception):
    """The Slack payload is of a kind omnibot does not route (a bot's message, a subtype...)."""


class Container:
    """Base of Message, Reaction, SlashCommand and InteractiveComponent.

    Attributes:
        payload: A JSON-serialisable dict; this is what callbacks read and
            what ``http_callback`` POSTs. It never contains credentials.
        bot: The :class:`omnibot.config.Bot` that received the payload.
        event_trace: The logging context of this payload (team, bot, ids).
    """

    payload_type = ""

    def __init__(self, bot, event_trace: typing.Mapping[str, typing.Any]):
        self.bot = bot
        self.event_trace = dict(event_trace)
        self.payload: typing.Dict[str, typing.Any] = {
            "omnibot_payload_type": self.payload_type,
            "bot": {"name": bot.name, "bot_id": bot.app_id},
            "team": {"name": bot.team.name, "team_id": bot.team.team_id},
        }

    # Properties used when applying results.

    @property
    def channel_id(self) -> typing.Optional[str]:
        return self.payload.get("channel_id")

    @property
    def reply_thread_ts(self) -> typing.Optional[str]:
        """Return the ``thread_ts`` a reply defaults to; None posts to the channel."""
        return None

    @property
    def response_url(self) -> typing.Optional[str]:
        return self.payload.get("response_url")

    def set_match(self, match_type: str, value: str, args: typing.Optional[str] = None) -> None:
        """Record which handler matched, as omnibot's payload fields ``match_type`` and ``command``/``regex``/``reaction``."""
        self.payload["match_type"] = match_type
        for key in ("command", "regex", "reaction"):
            if key != match_type:
                self.payload.pop(key, None)
        self.payload[match_type] = value
        if args is not None:
            self.payload["args"] = args
        else:
            self.payload.pop("args", None)
