"""The ``Reaction`` container: a ``reaction_added`` or ``reaction_removed`` event."""

import logging
import typing

from omnibot.containers.base import Container, Unsupported

logger = logging.getLogger(__name__)


class Reaction(Container):
    """A reaction to a message, as callbacks see it.

    Raises:
        Unsupported: The reaction is from a bot or Slackbot, or the event
            lacks its ``reaction`` or ``item``.
    """

    payload_type = "reaction"

    def __init__(self, bot, event: typing.Mapping, event_trace, slack_data):
        super().__init__(bot, event_trace)
        if event.get("bot_id"):
            raise Unsupported("reaction from a bot")
        if event.get("user") == "USLACKBOT":
            raise Unsupported("reaction from Slackbot")
        item = event.get("item")
        if not isinstance(event.get("reaction"), str) or not isinstance(item, dict):
            raise Unsupported("reaction event without reaction or item")

        payload = self.payload
        payload["event_type"] = event.get("type")
        payload["ts"] = event.get("event_ts")
        payload["user"] = event.get("user")
        payload["parsed_user"] = slack_data.user(bot, event["user"]) if event.get("user") else None
        payload["emoji_name"] = event["reaction"]
        payload["item_type"] = item.get("type")
        payload["item_channel"] = item.get("channel")
        payload["item_ts"] = item.get("ts")
        payload["item_user"] = event.get("item_user")
        payload["channel_id"] = item.get("channel")
        self.event_trace["channel_id"] = item.get("channel")
        channel = slack_data.channel(bot, item["channel"]) if item.get("channel") else None
        payload["channel"] = channel or {}

    @property
    def emoji_name(self) -> str:
        return self.payload["emoji_name"]

    @property
    def reply_thread_ts(self):
        if self.payload["channel"].get("is_im"):
            return None
        return self.payload.get("item_ts")
