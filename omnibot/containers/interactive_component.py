"""The ``InteractiveComponent`` container: a button, menu, dialog, modal or shortcut payload."""

import copy
import logging
import typing

from omnibot import parser
from omnibot.containers.base import Container
from omnibot.processing import interactive_routing

logger = logging.getLogger(__name__)


class InteractiveComponent(Container):
    """An interactive payload as callbacks see it.

    The payload contains omnibot's fields, copied from Slack's payload, and
    None where Slack did not send them: ``type``, ``callback_id``,
    ``action_ts``, ``message_ts``, ``trigger_id``, ``response_url``,
    ``original_message``, ``view``, ``state``, ``user``, ``parsed_user``,
    ``channel``, ``parsed_channel``, ``message``, ``submission`` and
    ``actions``. ``callback_id`` is the ``block_id`` of the routed action for
    ``block_actions``, and ``view.callback_id`` for views and block
    suggestions. ``message`` is parsed like a message event: it gains ``parsed_user``,
    ``parsed_text``, ``users``, ``channels``, ``subteams``, ``specials``,
    ``emojis``, ``emails`` and ``urls``.

    Fields omnibot did not have: ``team.id`` (Slack's team id next to
    ``team.team_id``), ``enterprise``, ``is_enterprise_install``,
    ``container``, ``response_urls``, ``value`` (block suggestions),
    ``routed_by`` (``{"key": ..., "value": ...}``, or None) and
    ``routed_action`` (the action that matched the handler, or None).

    Args:
        bot: The bot that received the payload.
        component: Slack's decoded payload, with ``team.id`` present.
        event_trace: Logging context.
        slack_data: A :class:`omnibot.slack.data.SlackData` for lookups.
        route: The :class:`~omnibot.processing.interactive_routing.Route`
            that chose the handler, when known.
    """

    payload_type = "interactive_component"

    def __init__(self, bot, component: typing.Mapping, event_trace, slack_data, route=None):
        super().__init__(bot, event_trace)
        payload = self.payload
        payload["team"]["id"] = bot.team.team_id
        routed_action = route.action if route is not None and route.action is not component else None

        payload["type"] = component.get("type")
        payload["callback_id"] = interactive_routing.callback_id_of(component, routed_action)
        for key in ("action_ts", "message_ts", "trigger_id", "response_url", "original_message", "view", "state"):
            payload[key] = component.get(key)
        for key in ("enterprise", "is_enterprise_install", "container", "response_urls", "value"):
            payload[key] = component.get(key)
        payload["routed_by"] = {"key": route.key, "value": route.value} if route is not None else None
        payload["routed_action"] = routed_action

        user = component.get("user")
        payload["user"] = user
        user_id = user.get("id") if isinstance(user, dict) else None
        payload["parsed_user"] = slack_data.user(bot, user_id) if user_id else None

        channel = component.get("channel")
        payload["channel"] = channel
        payload["parsed_channel"] = None
        channel_id = self.channel_id
        if channel_id:
            self.event_trace["channel_id"] = channel_id
            payload["parsed_channel"] = slack_data.channel(bot, channel_id)

        message = component.get("message")
        payload["message"] = _parse_message(bot, message, slack_data, self.event_trace) if isinstance(message, dict) else message
        payload["submission"] = component.get("submission")
        payload["actions"] = component.get("actions")

    @property
    def component_type(self) -> typing.Optional[str]:
        return self.payload["type"]

    @property
    def callback_id(self) -> typing.Optional[str]:
        return self.payload["callback_id"]

    @property
    def channel_id(self) -> typing.Optional[str]:
        """Return the id of the channel the interaction happened in, or None (modals, global shortcuts)."""
        channel = self.payload.get("channel")
        if isinstance(channel, dict) and isinstance(channel.get("id"), str):
            return channel["id"]
        container = self.payload.get("container")
        if isinstance(container, dict) and isinstance(container.get("channel_id"), str):
            return container["channel_id"]
        return None

    @property
    def reply_thread_ts(self) -> typing.Optional[str]:
        """Return the thread of the message that contains the component, or that message's ``ts``."""
        for message in (self.payload.get("message"), self.payload.get("original_message")):
            if isinstance(message, dict) and (message.get("thread_ts") or message.get("ts")):
                return message.get("thread_ts") or message.get("ts")
        return self.payload.get("message_ts")


def _parse_message(bot, message: typing.Mapping, slack_data, trace) -> dict:
    """Return a copy of ``message`` with the fields a message event's payload has."""
    parsed = copy.deepcopy(dict(message))
    user_id = message.get("user")
    parsed["parsed_user"] = slack_data.user(bot, user_id) if isinstance(user_id, str) and user_id else None

    text = message.get("text")
    if not isinstance(text, str):
        logger.debug("the component's message has no text to parse", extra=trace)
        return parsed
    fields = parser.parse_text(text, slack_data.resolver(bot))
    fields["parsed_text"] = fields["parsed_text"].replace("\u00a0", " ")
    parsed.update(fields)
    return parsed
