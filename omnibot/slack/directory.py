"""The cached Slack directory of a team: key layout, map entries, and page-by-page writes.

Every key has the form ``slack:{<team id>}:<kind>:<name>``. The Redis cache
stores it under its prefix ``<prefix>:{cache}:``, whose hash tag comes first,
so on Redis Cluster every cache key is in one slot.

================  ================================  ==============================================
kind              name                              value
================  ================================  ==============================================
``user``          user id                           user object (JSON)
``user_name``     display name, else ``name``       user id
``user_email``    profile email, lower-cased        user id
``channel``       conversation id                   conversation object (JSON)
``channel_name``  conversation name                 conversation id
``im_user``       user id of the IM's other member  IM id
``ims``           ``all``                           JSON list of IM ids from the last full listing
``emoji``         emoji name                        image URL, ``alias:`` chains resolved
``directory``     ``users``, ``conversations``,     JSON ``{"refreshed_at": <unix seconds>,
                  ``emoji``                         "count": <entries>}`` of the last full listing
``watcher_run``   ``users``, ``conversations``,     start time of the watcher's last refresh
                  ``emoji``                         (unix seconds); see :mod:`omnibot.watcher`
================  ================================  ==============================================

Deleted users, bot users and users without an email get a ``user`` entry but
no ``user_name`` or ``user_email`` entry, as in Lyft's omnibot. Archived
conversations keep their ``channel`` entry but get no ``channel_name``.
"""

import json
import time
import typing

USERS = "users"
CONVERSATIONS = "conversations"
EMOJI = "emoji"
KINDS = (USERS, CONVERSATIONS, EMOJI)
"""The directory kinds that the watcher lists, in refresh order."""

# Seconds that entries stored by read-through lookups live. The watcher's
# entries live at least as long.
LOOKUP_TTL = 24 * 3600.0

# A watcher entry outlives three refresh periods, so a few failed refreshes
# in a row never empty the cache.
_PERIODS_KEPT = 3

_ALIAS_PREFIX = "alias:"

# An alias chain longer than this is treated as a loop.
_MAX_ALIAS_DEPTH = 10


def cache_key(team_id: str, kind: str, name: str) -> str:
    """Return the cache key of ``name`` in the ``kind`` map of team ``team_id``."""
    return f"slack:{{{team_id}}}:{kind}:{name}"


def entry_ttl(frequency: float) -> float:
    """Return the TTL in seconds of entries written by a watcher that refreshes every ``frequency`` seconds."""
    return max(LOOKUP_TTL, _PERIODS_KEPT * frequency)


def display_name(user: typing.Mapping) -> typing.Optional[str]:
    """Return a user's display name, falling back to ``name``; None when both are empty."""
    profile = user.get("profile") or {}
    return profile.get("display_name") or user.get("name") or None


def user_email(user: typing.Mapping) -> typing.Optional[str]:
    """Return the lower-cased profile email of a user, or None."""
    profile = user.get("profile") or {}
    email = profile.get("email")
    return email.lower() if isinstance(email, str) and email else None


def is_listed_user(user: typing.Mapping) -> bool:
    """Return whether a user belongs in the name and email maps: active, human and with an email."""
    return not user.get("deleted") and not user.get("is_bot") and user_email(user) is not None


def user_entries(team_id: str, user: typing.Mapping) -> typing.Dict[str, str]:
    """Return the cache entries of one user object: the object, and its name and email when listed."""
    user_id = user.get("id")
    if not isinstance(user_id, str) or not user_id:
        return {}

    entries = {cache_key(team_id, "user", user_id): json.dumps(user)}
    if is_listed_user(user):
        name = display_name(user)
        if name:
            entries[cache_key(team_id, "user_name", name)] = user_id
        entries[cache_key(team_id, "user_email", user_email(user))] = user_id
    return entries


def conversation_entries(team_id: str, conversation: typing.Mapping) -> typing.Dict[str, str]:
    """Return the cache entries of one conversation: the object, and its IM user or its name."""
    channel_id = conversation.get("id")
    if not isinstance(channel_id, str) or not channel_id:
        return {}

    entries = {cache_key(team_id, "channel", channel_id): json.dumps(conversation)}
    if conversation.get("is_im"):
        user_id = conversation.get("user")
        if isinstance(user_id, str) and user_id:
            entries[cache_key(team_id, "im_user", user_id)] = channel_id
    elif conversation.get("name") and not conversation.get("is_archived"):
        entries[cache_key(team_id, "channel_name", conversation["name"])] = channel_id
    return entries


def resolve_emoji(emoji: typing.Mapping[str, str]) -> typing.Iterator[typing.Tuple[str, str]]:
    """Yield ``(name, url)`` for each custom emoji, with ``alias:`` values followed to a URL.

    An alias of a standard Unicode emoji (which ``emoji.list`` does not
    contain), an alias loop and a chain of more than ten aliases have no URL,
    so those names are left out.
    """
    for name, value in emoji.items():
        seen = {name}
        for _ in range(_MAX_ALIAS_DEPTH):
            if not isinstance(value, str) or not value.startswith(_ALIAS_PREFIX):
                break
            target = value[len(_ALIAS_PREFIX):]
            if target in seen:
                value = None
                break
            seen.add(target)
            value = emoji.get(target)

        if isinstance(value, str) and value and not value.startswith(_ALIAS_PREFIX):
            yield name, value


class DirectoryWriter:
    """Store one full listing of a directory kind, one page per :meth:`write_page`.

    Each page is written with one ``set_many``, so no more than one page is
    held in memory besides the IM ids of a conversations listing. Entries of
    earlier listings stay until they expire: a listing that fails halfway
    leaves the cache with newer and older entries, never with fewer.

    Args:
        cache: The cache backend.
        team_id: Slack's id of the team.
        kind: One of :data:`KINDS`.
        ttl: Seconds the written entries live.
    """

    def __init__(self, cache, team_id: str, kind: str, ttl: float):
        if kind not in KINDS:
            raise ValueError(f"unknown directory kind {kind!r}; expected one of {KINDS}")
        self.cache = cache
        self.team_id = team_id
        self.kind = kind
        self.ttl = ttl
        self.count = 0
        self._im_ids: typing.List[str] = []
        # emoji.list is one page in practice, but aliases may point across pages.
        self._emoji: typing.Dict[str, str] = {}

    def write_page(self, items) -> None:
        """Store one page: a list of users or conversations, or the ``emoji`` mapping.

        Raises:
            BackendUnavailable: The cache backend cannot be reached.
        """
        if self.kind == EMOJI:
            if isinstance(items, dict):
                self._emoji.update(items)
            return

        entries: typing.Dict[str, str] = {}
        make_entries = user_entries if self.kind == USERS else conversation_entries
        for item in items if isinstance(items, list) else ():
            if not isinstance(item, dict):
                continue
            entries.update(make_entries(self.team_id, item))
            self.count += 1
            if self.kind == CONVERSATIONS and item.get("is_im") and isinstance(item.get("id"), str):
                self._im_ids.append(item["id"])

        if entries:
            self.cache.set_many(entries, ttl=self.ttl)

    def finish(self) -> None:
        """Store what needs the whole listing, then mark the kind as fully listed now.

        Raises:
            BackendUnavailable: The cache backend cannot be reached.
        """
        if self.kind == EMOJI:
            entries = {
                cache_key(self.team_id, "emoji", name): url for name, url in resolve_emoji(self._emoji)
            }
            self.count = len(entries)
            for chunk in _chunks(entries, 1000):
                self.cache.set_many(chunk, ttl=self.ttl)

        mark = {"refreshed_at": time.time(), "count": self.count}
        entries = {cache_key(self.team_id, "directory", self.kind): json.dumps(mark)}
        if self.kind == CONVERSATIONS:
            entries[cache_key(self.team_id, "ims", "all")] = json.dumps(self._im_ids)
        self.cache.set_many(entries, ttl=self.ttl)


def _chunks(entries: typing.Dict[str, str], size: int) -> typing.Iterator[typing.Dict[str, str]]:
    items = list(entries.items())
    for start in range(0, len(items), size):
        yield dict(items[start : start + size])
