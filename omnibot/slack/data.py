"""Cached lookups of Slack users, conversations, emoji and the bot's identity.

Lookups return entries of the cache backend, which the watcher fills in
bulk (see :mod:`omnibot.slack.directory` for the key layout). Lookups by id read
through: on a miss, one Web API call fetches the object and stores it.
Lookups by name have no Slack method to read through, so they answer from
the cache alone; a lookup by email asks ``users.lookupByEmail``.
"""

import json
import logging
import typing

from omnibot.slack import directory
from omnibot.slack.directory import LOOKUP_TTL, display_name  # noqa: F401 - part of this module's API

logger = logging.getLogger(__name__)


class SlackData:
    """Cached Slack objects for every configured bot.

    Args:
        cache: The cache backend.
        clients: A :class:`omnibot.slack.client.SlackClients`.
        recent: A :class:`omnibot.slack.recent.RecentEntries` shared by the
            process, which returns the JSON entries read in the last few
            seconds (objects by id, the IM list, listing times) without the
            backend; None reads the backend every time.
    """

    def __init__(self, cache, clients, recent=None):
        self.cache = cache
        self.clients = clients
        self.recent = recent

    # -- keys --------------------------------------------------------------

    @staticmethod
    def key(team_id: str, kind: str, name: str) -> str:
        """Return the cache key of ``name`` in the ``kind`` map of team ``team_id``."""
        return directory.cache_key(team_id, kind, name)

    def _get_json(self, key):
        raw = self.recent.get(key) if self.recent is not None else None
        if raw is None:
            raw = self.cache.get(key)
            if raw is None:
                return None
            if self.recent is not None:
                self.recent.put(key, raw)
        try:
            return json.loads(raw)
        except ValueError:
            logger.warning("ignoring a corrupt cache entry %s", key)
            return None

    def _put_json(self, key, value, ttl=LOOKUP_TTL):
        raw = json.dumps(value)
        self.cache.set(key, raw, ttl=ttl)
        if self.recent is not None:
            self.recent.put(key, raw)

    def _read_through(self, bot, kind, object_id, method, arguments, field, make_entries=None):
        """Return the cached object, else fetch it with ``method`` and store it with ``make_entries``."""
        key = self.key(bot.team.team_id, kind, object_id)
        cached = self._get_json(key)
        if cached is not None:
            return cached

        answer = self.clients.call(bot, method, arguments, fallback=False, trace=bot.trace)
        if not answer.get("ok"):
            logger.info(
                "%s for %s failed: %s", method, object_id, answer.get("error"), extra=bot.trace
            )
            return None
        value = answer.get(field)
        if not isinstance(value, dict):
            return None

        if make_entries is None:
            self._put_json(key, value)
        else:
            # The maps by name, email or IM user learn the object too.
            entries = make_entries(bot.team.team_id, value)
            entries[key] = json.dumps(value)
            self.cache.set_many(entries, ttl=LOOKUP_TTL)
            if self.recent is not None:
                self.recent.put(key, entries[key])
        return value

    # -- lookups by id -----------------------------------------------------

    def user(self, bot, user_id: str) -> typing.Optional[dict]:
        """Return the Slack user object of ``user_id``, or None when it cannot be found."""
        if not user_id:
            return None
        return self._read_through(
            bot, "user", user_id, "users.info", {"user": user_id}, "user", directory.user_entries
        )

    def channel(self, bot, channel_id: str) -> typing.Optional[dict]:
        """Return the conversation object of ``channel_id`` (channel, group, IM or MPIM), or None."""
        if not channel_id:
            return None
        return self._read_through(
            bot,
            "channel",
            channel_id,
            "conversations.info",
            {"channel": channel_id},
            "channel",
            directory.conversation_entries,
        )

    def bot_identity(self, bot) -> dict:
        """Return the bot's ``auth.test`` answer (``user_id``, ``bot_id``, ...); {} when it failed."""
        key = self.key(bot.team.team_id, "auth", bot.app_id)
        cached = self._get_json(key)
        if cached is not None:
            return cached

        answer = self.clients.call(bot, "auth.test", {}, fallback=False, trace=bot.trace)
        if not answer.get("ok"):
            logger.warning("auth.test failed: %s", answer.get("error"), extra=bot.trace)
            return {}
        identity = {key_: answer.get(key_) for key_ in ("user_id", "user", "bot_id", "team_id", "team")}
        self._put_json(key, identity)
        return identity

    def bot_info(self, bot, bot_id: str) -> typing.Optional[dict]:
        """Return the ``bots.info`` object of ``bot_id`` (a ``B…`` id), or None."""
        if not bot_id:
            return None
        return self._read_through(bot, "bot", bot_id, "bots.info", {"bot": bot_id}, "bot")

    def message(self, bot, channel: str, ts: str) -> typing.Optional[dict]:
        """Return the message at ``ts`` in ``channel`` (``conversations.history``, inclusive, limit 1), or None."""
        key = self.key(bot.team.team_id, "message", _message_key_part(channel, ts))
        cached = self._get_json(key)
        if cached is not None:
            return cached

        arguments = {"channel": channel, "latest": ts, "inclusive": True, "limit": 1}
        answer = self.clients.call(bot, "conversations.history", arguments, trace=bot.trace)
        messages = answer.get("messages") if answer.get("ok") else None
        if not messages or messages[0].get("ts") != ts:
            return None
        self._put_json(key, messages[0])
        return messages[0]

    def is_own_message(self, bot, channel: str, ts: str, item_user: typing.Optional[str]) -> bool:
        """Return whether the message at ``ts`` was posted by ``bot``.

        ``item_user`` from the reaction event decides when present; otherwise
        the message is fetched and its ``bot_id`` resolved with ``bots.info``.
        """
        identity = self.bot_identity(bot)
        if item_user:
            return item_user == identity.get("user_id")
        message = self.message(bot, channel, ts)
        if not message or not message.get("bot_id"):
            return False
        if message.get("bot_id") == identity.get("bot_id"):
            return True
        info = self.bot_info(bot, message["bot_id"])
        return bool(info) and info.get("app_id") == bot.app_id

    def user_name(self, bot, user_id: str) -> typing.Optional[str]:
        """Return the display name of ``user_id`` (else its ``name``), or None."""
        user = self.user(bot, user_id)
        return display_name(user) if user else None

    def channel_name(self, bot, channel_id: str) -> typing.Optional[str]:
        """Return the name of ``channel_id``, or None (IMs have no name)."""
        channel = self.channel(bot, channel_id)
        return channel.get("name") if channel else None

    # -- lookups by name, email and IM user ----------------------------------

    def user_id_by_email(self, bot, email: str, *, read_through: bool = True) -> typing.Optional[str]:
        """Return the id of the active human user with this email, or None.

        The email is compared case-insensitively. A cache miss calls
        ``users.lookupByEmail`` once (scope ``users:read.email``) unless
        ``read_through`` is False. Deleted and bot users count as not found.
        """
        address = email.strip().lower() if isinstance(email, str) else ""
        if not address:
            return None

        team_id = bot.team.team_id
        user_id = self.cache.get(self.key(team_id, "user_email", address))
        if user_id:
            user = self._get_json(self.key(team_id, "user", user_id))
            if user is None or (directory.is_listed_user(user) and directory.user_email(user) == address):
                return user_id
        if not read_through:
            return None

        answer = self.clients.call(bot, "users.lookupByEmail", {"email": address}, fallback=False, trace=bot.trace)
        if not answer.get("ok"):
            if answer.get("error") != "users_not_found":
                logger.warning("users.lookupByEmail failed: %s", answer.get("error"), extra=bot.trace)
            return None
        user = answer.get("user")
        if not isinstance(user, dict) or not directory.is_listed_user(user):
            return None
        self.cache.set_many(directory.user_entries(team_id, user), ttl=LOOKUP_TTL)
        return user.get("id")

    def user_id_by_name(self, bot, name: str) -> typing.Optional[str]:
        """Return the id of the active human user with this display name (else ``name``), or None.

        A leading ``@`` is ignored. Only the cache is consulted, because Slack
        has no lookup by name, so a user who joined after the watcher's last
        refresh of users is not found.
        """
        name = _strip_prefix(name, "@")
        if not name:
            return None

        team_id = bot.team.team_id
        user_id = self.cache.get(self.key(team_id, "user_name", name))
        if not user_id:
            return None
        user = self._get_json(self.key(team_id, "user", user_id))
        # A renamed or deactivated user keeps the old name entry until it expires.
        if user is not None and (not directory.is_listed_user(user) or display_name(user) != name):
            return None
        return user_id

    def channel_id_by_name(self, bot, name: str, *, match_im_user: bool = True) -> typing.Optional[str]:
        """Return the id of the unarchived conversation with this name, or None.

        A leading ``#`` is ignored. As in Lyft's omnibot, a user id in place
        of the name finds the bot's IM with that user unless
        ``match_im_user`` is False. Only the cache is consulted.
        """
        name = _strip_prefix(name, "#")
        if not name:
            return None

        team_id = bot.team.team_id
        channel_id = self.cache.get(self.key(team_id, "channel_name", name))
        if channel_id:
            channel = self._get_json(self.key(team_id, "channel", channel_id))
            # A renamed or archived conversation keeps the old name entry until it expires.
            if channel is None or (channel.get("name") == name and not channel.get("is_archived")):
                return channel_id

        if match_im_user:
            im = self.im_for_user(bot, name)
            return im.get("id") if im else None
        return None

    def ims(self, bot) -> typing.List[dict]:
        """Return the bot's IM conversation objects from the watcher's last full listing.

        The list is empty until the watcher has listed conversations once.
        """
        team_id = bot.team.team_id
        im_ids = self._get_json(self.key(team_id, "ims", "all"))
        if not isinstance(im_ids, list):
            return []

        keys = [self.key(team_id, "channel", im_id) for im_id in im_ids if isinstance(im_id, str)]
        ims = []
        for raw in self.cache.get_many(keys):
            if raw is None:
                continue
            try:
                ims.append(json.loads(raw))
            except ValueError:
                logger.warning("ignoring a corrupt cached IM of team %s", team_id, extra=bot.trace)
        return ims

    def im_for_user(self, bot, user_id: str) -> typing.Optional[dict]:
        """Return the bot's IM object with ``user_id`` (``is_user_deleted`` included), or None when none is cached."""
        if not user_id:
            return None
        team_id = bot.team.team_id
        im_id = self.cache.get(self.key(team_id, "im_user", user_id))
        if not im_id:
            return None
        return self._get_json(self.key(team_id, "channel", im_id)) or {"id": im_id, "is_im": True, "user": user_id}

    def emoji_url(self, bot, name: str) -> typing.Optional[str]:
        """Return the image URL of custom emoji ``name`` (colons optional), aliases resolved; None when unknown.

        Until the emoji have been listed once (by the watcher or by this
        method), a miss calls ``emoji.list`` and stores every emoji. After
        that, a miss is final until the next refresh.
        """
        name = name.strip(":") if isinstance(name, str) else ""
        if not name:
            return None

        team_id = bot.team.team_id
        key = self.key(team_id, "emoji", name)
        url = self.cache.get(key)
        if url is not None or self.refreshed_at(bot, directory.EMOJI) is not None:
            return url

        answer = self.clients.call(bot, "emoji.list", {}, fallback=False, trace=bot.trace)
        if not answer.get("ok"):
            logger.warning("emoji.list failed: %s", answer.get("error"), extra=bot.trace)
            return None
        writer = directory.DirectoryWriter(self.cache, team_id, directory.EMOJI, LOOKUP_TTL)
        writer.write_page(answer.get("emoji"))
        writer.finish()
        return self.cache.get(key)

    def refreshed_at(self, bot, kind: str) -> typing.Optional[float]:
        """Return when ``kind`` (``users``, ``conversations`` or ``emoji``) was last listed in full, as unix seconds.

        None means the cache contains no full listing of that kind, so a miss
        in its maps does not mean that Slack lacks the name.
        """
        mark = self._get_json(self.key(bot.team.team_id, "directory", kind))
        if isinstance(mark, dict) and isinstance(mark.get("refreshed_at"), (int, float)):
            return float(mark["refreshed_at"])
        return None

    def resolver(self, bot) -> "BotResolver":
        """Return a name resolver bound to ``bot`` for the parser and the un-parser."""
        return BotResolver(self, bot)


class BotResolver:
    """Name and id lookups bound to one bot, remembered for the resolver's lifetime.

    Implements :class:`omnibot.parser.NameResolver` and
    :class:`omnibot.unparser.MarkupResolver`. Create one per message or
    action, because it keeps every result until it is garbage-collected.
    """

    def __init__(self, data: SlackData, bot):
        self._data = data
        self._bot = bot
        self._users: typing.Dict[str, typing.Optional[str]] = {}
        self._channels: typing.Dict[str, typing.Optional[str]] = {}
        self._user_ids: typing.Dict[str, typing.Optional[str]] = {}
        self._channel_ids: typing.Dict[str, typing.Optional[str]] = {}

    def user_name(self, user_id: str) -> typing.Optional[str]:
        if user_id not in self._users:
            self._users[user_id] = self._data.user_name(self._bot, user_id)
        return self._users[user_id]

    def channel_name(self, channel_id: str) -> typing.Optional[str]:
        if channel_id not in self._channels:
            self._channels[channel_id] = self._data.channel_name(self._bot, channel_id)
        return self._channels[channel_id]

    def user_id_by_name(self, name: str) -> typing.Optional[str]:
        """Return the id of the user named ``name`` (``@`` optional), or None."""
        if name not in self._user_ids:
            self._user_ids[name] = self._data.user_id_by_name(self._bot, name)
        return self._user_ids[name]

    def channel_id_by_name(self, name: str) -> typing.Optional[str]:
        """Return the id of the conversation named ``name`` (``#`` optional), or None.

        Unlike :meth:`SlackData.channel_id_by_name`, a user id never finds an
        IM here, so ``#U123`` in a callback's text stays plain text.
        """
        if name not in self._channel_ids:
            self._channel_ids[name] = self._data.channel_id_by_name(self._bot, name, match_im_user=False)
        return self._channel_ids[name]


def _strip_prefix(name, prefix: str) -> str:
    if not isinstance(name, str):
        return ""
    name = name.strip()
    return name[len(prefix):] if name.startswith(prefix) else name


def _message_key_part(channel: str, ts: str) -> str:
    return f"{channel}:{ts}"
