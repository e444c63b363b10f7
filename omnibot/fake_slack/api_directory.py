"""Fake Web API methods that read or change the workspace directory.

Each method takes ``(state, args)`` and returns the response fields other
than ``"ok": true``, or raises :class:`SlackMethodError`.
"""

import time

from omnibot.fake_slack.arguments import (
    SlackMethodError,
    as_bool,
    as_list,
    optional_str,
    page,
    require_str,
    resolve_channel,
)
from omnibot.fake_slack.state import CONVERSATION_TYPES

USERS_DEFAULT_LIMIT = 200

# Slack's default page size for conversations.list.
CONVERSATIONS_DEFAULT_LIMIT = 100

# Slack's limit on users in a group DM, the caller not counted.
MPIM_MAX_USERS = 8

TOPIC_MAX_LENGTH = 250


def auth_test(state, args):
    return {
        "url": f"https://{state.team['domain']}.slack.com/",
        "team": state.team["name"],
        "user": state.bot["name"],
        "team_id": state.team["id"],
        "user_id": state.bot["user_id"],
        "bot_id": state.bot["bot_id"],
        "is_enterprise_install": False,
    }


def team_info(state, args):
    team = {"email_domain": "", "icon": {"image_default": True}, **state.team}
    return {"team": team}


def bots_info(state, args):
    bot = state.bot_info(require_str(args, "bot", "bot_not_found"))
    if bot is None:
        raise SlackMethodError("bot_not_found")
    return {"bot": bot}


def emoji_list(state, args):
    return {"emoji": state.emoji}


def users_info(state, args):
    user = state.user(require_str(args, "user", "user_not_found"))
    if user is None:
        raise SlackMethodError("user_not_found")
    return {"user": user}


def users_list(state, args):
    members, next_cursor = page(state.users(), args, USERS_DEFAULT_LIMIT)
    return {
        "members": members,
        "cache_ts": int(time.time()),
        "response_metadata": {"next_cursor": next_cursor},
    }


def users_lookup_by_email(state, args):
    user = state.user_by_email(require_str(args, "email", "users_not_found"))
    if user is None:
        raise SlackMethodError("users_not_found")
    return {"user": user}


def conversations_info(state, args):
    conversation = state.conversation(require_str(args, "channel", "channel_not_found"))
    if conversation is None:
        raise SlackMethodError("channel_not_found")
    return {"channel": conversation}


def conversations_list(state, args):
    types = as_list(args.get("types")) or ["public_channel"]
    if any(kind not in CONVERSATION_TYPES for kind in types):
        raise SlackMethodError("invalid_types")

    conversations = state.conversations(tuple(types), as_bool(args.get("exclude_archived")))
    channels, next_cursor = page(conversations, args, CONVERSATIONS_DEFAULT_LIMIT)
    return {"channels": channels, "response_metadata": {"next_cursor": next_cursor}}


def conversations_open(state, args):
    """Open or resume an IM (one user) or a group DM (two to eight users).

    Without ``return_im`` the channel object carries only the id, as Slack's does.
    """
    channel_id = optional_str(args, "channel")
    user_ids = as_list(args.get("users"))

    if channel_id is not None:
        conversation = state.conversation(channel_id)
        if conversation is None:
            raise SlackMethodError("channel_not_found")
        created = False
    elif not user_ids:
        raise SlackMethodError("users_list_not_supplied")
    elif len(user_ids) > MPIM_MAX_USERS:
        raise SlackMethodError("too_many_users")
    else:
        for user_id in user_ids:
            if state.user(user_id) is None:
                raise SlackMethodError("user_not_found")
        if len(user_ids) == 1:
            conversation, created = state.open_im(user_ids[0])
        else:
            conversation, created = state.open_mpim(user_ids)

    channel = conversation if as_bool(args.get("return_im")) else {"id": conversation["id"]}
    if created:
        return {"channel": channel}
    return {"no_op": True, "already_open": True, "channel": channel}


def conversations_set_topic(state, args):
    channel_id, conversation = resolve_channel(state, args)
    topic = str(args.get("topic") or "")
    if len(topic) > TOPIC_MAX_LENGTH:
        raise SlackMethodError("too_long")

    if conversation is None:
        # An unknown id accepted through accept_any_channel.
        return {"channel": {"id": channel_id, "topic": {"value": topic, "creator": state.bot["user_id"]}}}
    if conversation["is_archived"]:
        raise SlackMethodError("is_archived")
    return {"channel": state.set_topic(channel_id, topic)}


METHODS = {
    "auth.test": auth_test,
    "team.info": team_info,
    "bots.info": bots_info,
    "emoji.list": emoji_list,
    "users.info": users_info,
    "users.list": users_list,
    "users.lookupByEmail": users_lookup_by_email,
    "conversations.info": conversations_info,
    "conversations.list": conversations_list,
    "conversations.open": conversations_open,
    "conversations.setTopic": conversations_set_topic,
}
