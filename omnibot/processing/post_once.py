"""Keep a redelivered message from posting the same Slack message twice.

A worker killed after Slack accepted a ``chat.postMessage`` but before the
queue recorded the message as done leaves the message to be delivered
again, and the callbacks run again. Slack's Web API has no idempotency key,
so omnibot marks each post with message metadata naming the queued message
and the post's place in it::

    {"event_type": "omnibot_post",
     "event_payload": {"queue_message": "42", "received_at": "1733...",
                       "post": "message_handlers[0]#0/1"}}

On a redelivery, the worker reads the destination conversation before each
post, from :data:`CLOCK_MARGIN` seconds before the message was received.
It reads ``conversations.history``, or ``conversations.replies`` for a
thread reply, and skips the post when Slack already has one with the same
mark (see :func:`carries_mark`).

When the check cannot tell, the post is made, as before (at least once).
That happens when:

- the tokens lack the history scope (``channels:history`` and the like);
- the destination is not a conversation id or a user id (whose IM is opened);
- the callback sets its own ``metadata``, so the post carries no mark;
- the post is not in the first :data:`MAX_PAGES` pages.
"""

import json
import logging
import typing

logger = logging.getLogger(__name__)

EVENT_TYPE = "omnibot_post"

# Pages of conversations.history read per check, at PAGE_SIZE messages each.
MAX_PAGES = 20
PAGE_SIZE = 200

# Seconds read before the message's received_at, for clocks that disagree with Slack's.
CLOCK_MARGIN = 30.0


class PostMarks:
    """The marks of one delivery of one queued message.

    Args:
        clients: The :class:`omnibot.slack.client.SlackClients` to read history with.
        message_id: The queue's id of the message (stable across redeliveries).
        received_at: When the web process received it (the envelope's ``received_at``).
        check: Whether earlier deliveries may have posted, so posts are looked
            up before they are made (a redelivery, or a replayed dead letter).
        enabled: False leaves posts unmarked and never checks (``OMNIBOT_POST_METADATA=0``).
    """

    def __init__(self, clients, message_id: str, received_at, check: bool, enabled: bool = True):
        self._clients = clients
        self._message_id = str(message_id)
        self._received_at = received_at if isinstance(received_at, (int, float)) else None
        self.enabled = enabled and self._received_at is not None
        self.check = check and self.enabled

    def mark(self, place: str) -> dict:
        """Return the metadata that marks the post at ``place`` (``<callback key>/<action index>``)."""
        return {
            "event_type": EVENT_TYPE,
            "event_payload": {
                "queue_message": self._message_id,
                "received_at": repr(self._received_at),
                "post": place,
            },
        }

    def prepare(self, bot, place: str, kwargs: dict, trace) -> typing.Optional[dict]:
        """Add the mark of ``place`` to the ``chat.postMessage`` arguments ``kwargs``, and find an earlier post.

        Returns:
            The message Slack already has for this place, found on a
            redelivery, or None when the post should be made.
        """
        if not self.enabled:
            return None
        if "metadata" in kwargs:
            if self.check:
                logger.info(
                    "cannot tell whether post %s was made on an earlier delivery: its callback sets metadata",
                    place,
                    extra=trace,
                )
            return None

        mark = self.mark(place)
        kwargs["metadata"] = mark
        if not self.check:
            return None
        return self._find(bot, mark, kwargs, trace)

    def _find(self, bot, mark, kwargs, trace):
        channel = self._conversation_id(bot, kwargs.get("channel"), trace)
        if channel is None:
            return None

        arguments = {
            "channel": channel,
            "oldest": f"{self._received_at - CLOCK_MARGIN:.6f}",
            "include_all_metadata": True,
            "limit": PAGE_SIZE,
        }
        method = "conversations.history"
        if kwargs.get("thread_ts"):
            method = "conversations.replies"
            arguments["ts"] = kwargs["thread_ts"]

        for _ in range(MAX_PAGES):
            answer = self._clients.call(bot, method, arguments, trace=trace)
            if answer.get("error") == "thread_not_found":
                return None
            if not answer.get("ok"):
                logger.warning(
                    "could not check whether post %s was made on an earlier delivery (%s %s); posting",
                    mark["event_payload"]["post"],
                    method,
                    answer.get("error"),
                    extra=trace,
                )
                return None
            for message in answer.get("messages") or []:
                if isinstance(message, dict) and carries_mark(message, mark):
                    return message
            cursor = (answer.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return None
            arguments["cursor"] = cursor

        logger.warning(
            "post %s not found in the newest %d pages of %s; posting",
            mark["event_payload"]["post"],
            MAX_PAGES,
            channel,
            extra=trace,
        )
        return None

    def _conversation_id(self, bot, channel, trace) -> typing.Optional[str]:
        """Return the conversation id a post to ``channel`` lands in, or None when it cannot be named."""
        if not isinstance(channel, str) or not channel:
            return None
        if channel[0] in "CGD":
            return channel
        if channel[0] in "UW":
            answer = self._clients.call(bot, "conversations.open", {"users": channel}, fallback=False, trace=trace)
            conversation = answer.get("channel") if answer.get("ok") else None
            if isinstance(conversation, dict) and conversation.get("id"):
                return conversation["id"]
        logger.info("cannot check for an earlier post to %r because it is not a conversation id; posting", channel, extra=trace)
        return None


def carries_mark(message: dict, mark: dict) -> bool:
    """Return whether Slack's ``message`` carries ``mark``.

    Only the event type and the fields of the mark's payload are compared,
    so keys that Slack adds to the metadata or its payload do not hide a
    mark. Metadata or a payload that comes back as a JSON string is decoded.
    """
    metadata = _as_mapping(message.get("metadata"))
    if metadata is None or metadata.get("event_type") != mark["event_type"]:
        return False
    payload = _as_mapping(metadata.get("event_payload"))
    if payload is None:
        return False
    return all(
        payload.get(name) is not None and str(payload[name]) == value
        for name, value in mark["event_payload"].items()
    )


def _as_mapping(value) -> typing.Optional[dict]:
    """Return ``value`` as a dict, decoding a JSON string; None for anything else."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    return value if isinstance(value, dict) else None
