"""Slack directory lookups for the internal API: users by email, conversations by name, IMs.

Each lookup first queries the Slack data cache that the watcher fills
(:class:`omnibot.slack.data.SlackData`). A miss there is final once the
watcher has listed every conversation; before that, the lookup calls the
Slack Web API with the bot token and stores what it finds under
SlackData's cache keys.
"""

import json
import logging
import typing

from omnibot.slack.data import LOOKUP_TTL

logger = logging.getLogger(__name__)

# Conversations requested per conversations.list page. Slack may return
# fewer, even when more pages follow.
PAGE_LIMIT = 200

# Stops a listing whose cursor never ends; 500 pages are 100,000 conversations.
MAX_PAGES = 500

# conversations.list types searched for a name. IMs have no name: omnibot
# finds them by the id of the user on the other side.
NAMED_TYPES = "public_channel,private_channel,mpim,im"


class LookupFailed(Exception):
    """A Slack Web API call failed for a reason other than "not found".

    Attributes:
        method: The Web API method, such as ``users.lookupByEmail``.
        error: Slack's error code, or the client's (``request_failed``).
    """

    def __init__(self, method: str, error: typing.Optional[str]):
        self.method = method
        self.error = error or "unknown_error"
        super().__init__(f"Slack method {method} failed: {self.error}")


def find_user_by_email(slack_data, bot, email: str) -> typing.Optional[dict]:
    """Return the Slack user object whose profile has ``email``, or None.

    Deleted users and bot users count as not found, as in omnibot's cache.
    A miss in the cache is checked with ``users.lookupByEmail``, so a user
    who joined after the last refresh is found.

    Raises:
        LookupFailed: ``users.lookupByEmail`` failed with an error other
            than ``users_not_found`` (``missing_scope`` when the bot lacks
            ``users:read.email``, for example).
        BackendUnavailable: The cache backend cannot be reached.
    """
    user = _active_user(slack_data, bot, slack_data.user_id_by_email(bot, email, read_through=False))
    if user is not None:
        return user

    email_key = slack_data.key(bot.team.team_id, "lookup_email", email.lower())
    user = _active_user(slack_data, bot, slack_data.cache.get(email_key))
    if user is not None:
        return user

    response = slack_data.clients.call(bot, "users.lookupByEmail", {"email": email}, fallback=False, trace=bot.trace)
    if not response.get("ok"):
        if response.get("error") == "users_not_found":
            return None
        raise LookupFailed("users.lookupByEmail", response.get("error"))

    user = response.get("user")
    if not _is_active_human(user):
        return None
    slack_data.cache.set_many(
        {
            slack_data.key(bot.team.team_id, "user", user["id"]): json.dumps(user),
            email_key: user["id"],
        },
        ttl=LOOKUP_TTL,
    )
    return user


def find_channel_by_name(slack_data, bot, name: str) -> typing.Optional[dict]:
    """Return the conversation named ``name`` (a leading ``#`` is ignored), or None.

    As in omnibot, an IM is found by the id of its user in place of a name.
    With a bulk cache, its result is final, because searching Slack for a
    missing name would list every conversation of the workspace. Without
    one, a cached name is tried first, then ``conversations.list`` is read
    page by page until the name is found; archived conversations are left
    out.

    Raises:
        LookupFailed: ``conversations.list`` failed.
        BackendUnavailable: The cache backend cannot be reached.
    """
    name = name[1:] if name.startswith("#") else name
    if not name:
        return None

    channel_id = slack_data.channel_id_by_name(bot, name)
    if channel_id:
        return slack_data.channel(bot, channel_id)
    if slack_data.refreshed_at(bot, "conversations") is not None:
        # The watcher listed every conversation, so a miss is final.
        return None

    name_key = slack_data.key(bot.team.team_id, "lookup_channel_name", name)
    channel_id = slack_data.cache.get(name_key)
    if channel_id:
        channel = slack_data.channel(bot, channel_id)
        # A renamed or archived channel keeps its id, so the cached name may be stale.
        if channel is not None and _lookup_name(channel) == name and not channel.get("is_archived"):
            return channel

    return _search_conversations(slack_data, bot, name)


def list_ims(slack_data, bot) -> typing.List[dict]:
    """Return the bot's IM conversation objects.

    Raises:
        LookupFailed: ``conversations.list`` failed.
    """
    if slack_data.refreshed_at(bot, "conversations") is not None:
        return list(slack_data.ims(bot))
    arguments = {"types": "im", "exclude_archived": True}
    return list(_list_conversations(slack_data, bot, arguments))


def open_im(slack_data, bot, user_id: str) -> str:
    """Return the id of the bot's IM with ``user_id``, opening it when needed.

    An IM from the bulk cache is reused unless its user was deleted;
    otherwise ``conversations.open`` opens the IM, or returns the one that
    already exists.

    Raises:
        LookupFailed: ``conversations.open`` failed or returned no channel id.
    """
    bulk_lookup = getattr(slack_data, "im_for_user", None)
    if bulk_lookup is not None:
        im = bulk_lookup(bot, user_id)
        if isinstance(im, str) and im:
            return im
        if isinstance(im, dict) and im.get("id") and not im.get("is_user_deleted"):
            return im["id"]

    response = slack_data.clients.call(bot, "conversations.open", {"users": user_id}, fallback=False, trace=bot.trace)
    channel = response.get("channel") if response.get("ok") else None
    if not isinstance(channel, dict) or not channel.get("id"):
        raise LookupFailed("conversations.open", response.get("error") or "no_channel_returned")
    return channel["id"]


def _active_user(slack_data, bot, user_id) -> typing.Optional[dict]:
    if not user_id:
        return None
    user = slack_data.user(bot, user_id)
    return user if _is_active_human(user) else None


def _is_active_human(user) -> bool:
    return isinstance(user, dict) and bool(user.get("id")) and not user.get("deleted") and not user.get("is_bot")


def _lookup_name(conversation: dict) -> typing.Optional[str]:
    """Return the name a conversation is found by: its name, or its user's id for an IM."""
    if conversation.get("is_im"):
        return conversation.get("user")
    return conversation.get("name")


def _search_conversations(slack_data, bot, name: str) -> typing.Optional[dict]:
    try:
        return _search_pages(slack_data, bot, name, NAMED_TYPES)
    except LookupFailed as error:
        if error.error != "missing_scope":
            raise

    # Each conversation type needs its own read scope. A bot with only
    # channels:read can still search the public channels.
    logger.warning(
        "conversations.list lacks a scope for private channels, group DMs or IMs; "
        "searching public channels only",
        extra=bot.trace,
    )
    return _search_pages(slack_data, bot, name, "public_channel")


def _search_pages(slack_data, bot, name: str, types: str) -> typing.Optional[dict]:
    """Read conversations.list until ``name`` appears, caching every page's names on the way."""
    arguments = {"types": types, "exclude_archived": True}
    for page in _conversation_pages(slack_data, bot, arguments):
        _cache_conversations(slack_data, bot, page)
        for conversation in page:
            if _lookup_name(conversation) == name:
                return conversation
    return None


def _cache_conversations(slack_data, bot, conversations: typing.List[dict]) -> None:
    items = {}
    for conversation in conversations:
        lookup_name = _lookup_name(conversation)
        if not conversation.get("id") or not lookup_name:
            continue
        items[slack_data.key(bot.team.team_id, "channel", conversation["id"])] = json.dumps(conversation)
        items[slack_data.key(bot.team.team_id, "lookup_channel_name", lookup_name)] = conversation["id"]
    if items:
        slack_data.cache.set_many(items, ttl=LOOKUP_TTL)


def _list_conversations(slack_data, bot, arguments) -> typing.Iterator[dict]:
    for page in _conversation_pages(slack_data, bot, arguments):
        yield from page


def _conversation_pages(slack_data, bot, arguments) -> typing.Iterator[typing.List[dict]]:
    """Yield the pages of ``conversations.list`` with ``arguments``.

    Raises:
        LookupFailed: A page request failed.
    """
    cursor = None
    for _ in range(MAX_PAGES):
        page_arguments = dict(arguments, limit=PAGE_LIMIT)
        if cursor:
            page_arguments["cursor"] = cursor
        response = slack_data.clients.call(bot, "conversations.list", page_arguments, fallback=False, trace=bot.trace)
        if not response.get("ok"):
            raise LookupFailed("conversations.list", response.get("error"))

        channels = response.get("channels")
        if not isinstance(channels, list):
            channels = []
        yield [channel for channel in channels if isinstance(channel, dict)]

        cursor = (response.get("response_metadata") or {}).get("next_cursor")
        if not cursor:
            return
    logger.warning("conversations.list stopped after %d pages", MAX_PAGES, extra=bot.trace)

