"""Fake Web API methods that post, change and read messages.

Each method takes ``(state, args)`` and returns the response fields other
than ``"ok": true``, or raises :class:`SlackMethodError`.

While the workspace sets ``accept_any_channel`` (the default), ``chat.update``,
``chat.delete`` and ``reactions.add`` also succeed for messages the fake
never stored, such as the message of a simulated event. Nothing is stored
for them then.
"""

from omnibot.fake_slack.arguments import (
    SlackMethodError,
    as_bool,
    as_json,
    optional_str,
    page,
    require_str,
    resolve_channel,
)
from omnibot.fake_slack.state import ts_key

# Slack's default page size for conversations.history and conversations.replies.
HISTORY_DEFAULT_LIMIT = 100

# Later than any real ts, used when a history request has no "latest".
_END_OF_TIME = (2**62, 0)

_OPTIONAL_MESSAGE_ARGS = ("username", "icon_emoji", "icon_url")


def chat_post_message(state, args):
    channel_id, conversation = resolve_channel(state, args, allow_user=True)
    _check_writable(conversation)

    message = _new_bot_message(state, args)
    thread_ts = optional_str(args, "thread_ts")
    if thread_ts:
        message["thread_ts"] = thread_ts
        if as_bool(args.get("reply_broadcast")):
            message["subtype"] = "thread_broadcast"

    state.add_message(channel_id, message)
    return {"channel": channel_id, "ts": message["ts"], "message": message}


def chat_post_ephemeral(state, args):
    _, conversation = resolve_channel(state, args)
    _check_writable(conversation)
    if state.user(require_str(args, "user", "user_not_found")) is None:
        raise SlackMethodError("user_not_found")

    message = _new_bot_message(state, args)
    return {"message_ts": message["ts"]}


def chat_update(state, args):
    channel_id, conversation = resolve_channel(state, args)
    _check_writable(conversation)
    ts = require_str(args, "ts", "message_not_found")

    original = state.message(channel_id, ts)
    if original is None and not state.accept_any_channel:
        raise SlackMethodError("message_not_found")

    updated = dict(original) if original is not None else _bot_message_fields(state)
    updated["ts"] = ts
    if "text" in args:
        updated["text"] = str(args["text"] or "")
    for name in ("blocks", "attachments"):
        if name in args:
            updated[name] = as_json(args, name) or []
    updated["edited"] = {"user": state.bot["user_id"], "ts": state.next_ts()}

    if original is not None:
        state.replace_message(channel_id, updated)
    return {"channel": channel_id, "ts": ts, "text": updated.get("text", ""), "message": updated}


def chat_delete(state, args):
    channel_id, _ = resolve_channel(state, args)
    ts = require_str(args, "ts", "message_not_found")

    if not state.delete_message(channel_id, ts) and not state.accept_any_channel:
        raise SlackMethodError("message_not_found")
    return {"channel": channel_id, "ts": ts}


def reactions_add(state, args):
    channel_id, conversation = resolve_channel(state, args)
    _check_writable(conversation)
    ts = require_str(args, "timestamp", "no_item_specified")
    name = require_str(args, "name", "invalid_name").strip(":")

    message = state.message(channel_id, ts)
    if message is None:
        if state.accept_any_channel:
            return {}
        raise SlackMethodError("message_not_found")

    bot_user = state.bot["user_id"]
    reactions = [dict(reaction) for reaction in message.get("reactions", [])]
    reaction = next((reaction for reaction in reactions if reaction["name"] == name), None)
    if reaction is None:
        reactions.append({"name": name, "users": [bot_user], "count": 1})
    elif bot_user in reaction["users"]:
        raise SlackMethodError("already_reacted")
    else:
        reaction["users"] = reaction["users"] + [bot_user]
        reaction["count"] = reaction["count"] + 1

    state.replace_message(channel_id, {**message, "reactions": reactions})
    return {}


def conversations_history(state, args):
    channel_id, _ = resolve_channel(state, args)
    oldest = _ts_bound(args, "oldest", (0, 0))
    latest = _ts_bound(args, "latest", _END_OF_TIME)

    messages = state.history(channel_id, oldest, latest, as_bool(args.get("inclusive")))
    selected, next_cursor = page(messages, args, HISTORY_DEFAULT_LIMIT)
    return {
        "messages": _with_metadata_if_requested(selected, args),
        "has_more": bool(next_cursor),
        "pin_count": 0,
        "response_metadata": {"next_cursor": next_cursor},
    }


def conversations_replies(state, args):
    channel_id, _ = resolve_channel(state, args)
    thread_ts = require_str(args, "ts", "thread_not_found")

    messages = state.replies(channel_id, thread_ts)
    if not messages:
        raise SlackMethodError("thread_not_found")

    selected, next_cursor = page(messages, args, HISTORY_DEFAULT_LIMIT)
    return {"messages": _with_metadata_if_requested(selected, args), "has_more": bool(next_cursor), "response_metadata": {"next_cursor": next_cursor}}


def _with_metadata_if_requested(messages, args) -> list:
    """Return ``messages``, without their ``metadata`` unless the call set ``include_all_metadata``, as Slack does."""
    if as_bool(args.get("include_all_metadata")):
        return messages
    return [{key: value for key, value in message.items() if key != "metadata"} for message in messages]


def _check_writable(conversation) -> None:
    if conversation is not None and conversation["is_archived"]:
        raise SlackMethodError("is_archived")


def _bot_message_fields(state) -> dict:
    bot = state.bot
    return {
        "type": "message",
        "text": "",
        "user": bot["user_id"],
        "bot_id": bot["bot_id"],
        "app_id": bot["app_id"],
        "team": state.team["id"],
        "bot_profile": {"id": bot["bot_id"], "app_id": bot["app_id"], "name": bot["name"], "team_id": state.team["id"]},
    }


def _new_bot_message(state, args) -> dict:
    """Build a message posted by the bot, with a new ts.

    Raises:
        SlackMethodError: ``no_text`` when none of text, blocks and attachments is given.
    """
    text = optional_str(args, "text")
    blocks = as_json(args, "blocks")
    attachments = as_json(args, "attachments")
    if text is None and not blocks and not attachments:
        raise SlackMethodError("no_text")

    message = _bot_message_fields(state)
    message["text"] = text or ""
    message["ts"] = state.next_ts()
    if blocks:
        message["blocks"] = blocks
    if attachments:
        message["attachments"] = attachments

    metadata = as_json(args, "metadata")
    if metadata:
        message["metadata"] = metadata
    for name in _OPTIONAL_MESSAGE_ARGS:
        value = optional_str(args, name)
        if value is not None:
            message[name] = value
    return message


def _ts_bound(args: dict, name: str, default: tuple) -> tuple:
    value = optional_str(args, name)
    if value is None:
        return default
    try:
        return ts_key(value)
    except ValueError as exc:
        raise SlackMethodError(f"invalid_ts_{name}") from exc


METHODS = {
    "chat.postMessage": chat_post_message,
    "chat.postEphemeral": chat_post_ephemeral,
    "chat.update": chat_update,
    "chat.delete": chat_delete,
    "reactions.add": reactions_add,
    "conversations.history": conversations_history,
    "conversations.replies": conversations_replies,
}
