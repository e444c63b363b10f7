"""The fake Slack server's mutable workspace: users, conversations, messages and views.

Request threads may call every method concurrently. Methods that touch
conversations, messages or views take the state's lock, and users, bots and
emoji do not change after loading. Objects handed out are never modified
afterwards, because a change replaces the stored dict with an updated copy.
A response can therefore be serialised outside the lock while another
thread writes.
"""

import bisect
import itertools
import threading
import time

from omnibot.fake_slack.workspace import DEFAULT_CREATED, complete_conversation

CONVERSATION_TYPES = ("public_channel", "private_channel", "mpim", "im")

# Oldest messages of a channel are dropped beyond this many, so that a long
# benchmark that posts millions of messages keeps a bounded memory footprint.
MAX_MESSAGES_PER_CHANNEL = 10_000


def conversation_type(conversation: dict) -> str:
    """Return the ``types`` name (public_channel, private_channel, mpim, im) of a conversation."""
    if conversation.get("is_im"):
        return "im"
    if conversation.get("is_mpim"):
        return "mpim"
    if conversation.get("is_private") or conversation.get("is_group"):
        return "private_channel"
    return "public_channel"


def ts_key(ts: str) -> tuple:
    """Return a sort key for a Slack timestamp such as ``"1700000000.000100"``.

    Raises:
        ValueError: ``ts`` is not of the form ``<seconds>[.<digits>]``.
    """
    seconds, _, fraction = str(ts).partition(".")
    if not seconds.isdigit() or (fraction and not fraction.isdigit()):
        raise ValueError(f"invalid Slack timestamp {ts!r}")
    return int(seconds), int((fraction + "000000")[:6])


def _message_key(message: dict) -> tuple:
    return ts_key(message["ts"])


class WorkspaceState:
    """The live data of one fake workspace.

    Args:
        workspace: A dict returned by :func:`~omnibot.fake_slack.workspace.normalize_workspace`.
    """

    def __init__(self, workspace: dict):
        self._lock = threading.RLock()

        self.team = workspace["team"]
        self.bot = workspace["bot"]
        self.tokens = frozenset(workspace["tokens"]) if workspace["tokens"] is not None else None
        self.accept_any_channel = workspace["accept_any_channel"]
        self.strict_methods = workspace["strict_methods"]
        self.emoji = workspace["emoji"]

        self._users = list(workspace["users"])
        self._users_by_id = {user["id"]: user for user in self._users}
        self._users_by_email = {}
        self._bot_users_by_bot_id = {}
        for user in self._users:
            email = user["profile"].get("email")
            if email:
                self._users_by_email.setdefault(email.lower(), user)
            if user["is_bot"] and user["profile"].get("bot_id"):
                self._bot_users_by_bot_id.setdefault(user["profile"]["bot_id"], user)

        self._conversations = {}
        self._ids_by_name = {}
        self._ims_by_user = {}
        for conversation in workspace["channels"]:
            self._store_conversation(conversation)
        self._conversation_lists = {}

        self._messages = {}
        for channel_id, messages in workspace["messages"].items():
            self._messages[channel_id] = sorted(messages, key=_message_key)

        self._views = {}
        self._views_by_external_id = {}
        self._home_views = {}
        self._ids = itertools.count(1)
        self._last_ts = (0, 0)

    # Users.

    def users(self) -> list:
        """Return every user in workspace order. The caller must not modify the list."""
        return self._users

    def user(self, user_id: str):
        """Return the user with this id, or None."""
        return self._users_by_id.get(user_id)

    def user_by_email(self, email: str):
        """Return the user whose profile email matches case-insensitively, or None."""
        return self._users_by_email.get(email.lower())

    def bot_info(self, bot_id: str):
        """Return a ``bots.info`` bot object for the workspace bot or a bot user, or None."""
        if bot_id == self.bot["bot_id"]:
            return {
                "id": self.bot["bot_id"],
                "deleted": False,
                "name": self.bot["name"],
                "updated": DEFAULT_CREATED,
                "app_id": self.bot["app_id"],
                "user_id": self.bot["user_id"],
                "icons": {},
            }

        user = self._bot_users_by_bot_id.get(bot_id)
        if user is None:
            return None
        return {
            "id": bot_id,
            "deleted": user["deleted"],
            "name": user["name"],
            "updated": DEFAULT_CREATED,
            "app_id": user["profile"].get("api_app_id", ""),
            "user_id": user["id"],
            "icons": {},
        }

    # Conversations.

    def conversation(self, channel_id: str):
        """Return the conversation with this id, or None."""
        with self._lock:
            return self._conversations.get(channel_id)

    def conversation_by_name(self, name: str):
        """Return the first non-IM conversation with this name (without ``#``), or None."""
        with self._lock:
            channel_id = self._ids_by_name.get(name)
            return self._conversations.get(channel_id) if channel_id is not None else None

    def conversations(self, types: tuple, exclude_archived: bool) -> list:
        """Return the conversations of the given types in workspace order.

        The list is computed once per filter and reused until a conversation
        is added or changed. The caller must not modify it.
        """
        key = (frozenset(types), exclude_archived)
        with self._lock:
            cached = self._conversation_lists.get(key)
            if cached is None:
                cached = [
                    conversation
                    for conversation in self._conversations.values()
                    if conversation_type(conversation) in key[0]
                    and not (exclude_archived and conversation["is_archived"])
                ]
                self._conversation_lists[key] = cached
            return cached

    def open_im(self, user_id: str) -> tuple:
        """Return ``(im, created)``: the IM with this user, created when missing."""
        with self._lock:
            existing = self._ims_by_user.get(user_id)
            if existing is not None:
                return existing, False

            im = {"id": self._new_id("D"), "is_im": True, "user": user_id, "created": int(time.time())}
            complete_conversation(im, self.team, "conversations.open")
            self._store_conversation(im)
            return im, True

    def open_mpim(self, user_ids: list) -> tuple:
        """Return ``(mpim, created)``: the group DM of exactly these users, created when missing."""
        members = sorted(set(user_ids) | {self.bot["user_id"]})
        with self._lock:
            for conversation in self._conversations.values():
                if conversation["is_mpim"] and sorted(conversation.get("members", [])) == members:
                    return conversation, False

            names = [self._users_by_id[user_id]["name"] for user_id in members]
            mpim = {
                "id": self._new_id("G"),
                "name": "mpdm-" + "--".join(names) + "-1",
                "is_mpim": True,
                "is_group": False,
                "is_private": True,
                "is_channel": False,
                "members": members,
                "created": int(time.time()),
            }
            complete_conversation(mpim, self.team, "conversations.open")
            self._store_conversation(mpim)
            return mpim, True

    def set_topic(self, channel_id: str, topic: str):
        """Set a conversation's topic as the bot and return the updated conversation, or None when unknown."""
        with self._lock:
            conversation = self._conversations.get(channel_id)
            if conversation is None:
                return None

            updated = dict(conversation)
            updated["topic"] = {"value": topic, "creator": self.bot["user_id"], "last_set": int(time.time())}
            self._store_conversation(updated)
            return updated

    def _store_conversation(self, conversation: dict) -> None:
        self._conversations[conversation["id"]] = conversation
        if not conversation.get("is_im") and conversation.get("name"):
            self._ids_by_name.setdefault(conversation["name"], conversation["id"])
        if conversation.get("is_im"):
            # The first IM listed for a user is the one conversations.open returns.
            existing = self._ims_by_user.get(conversation["user"])
            if existing is None or existing["id"] == conversation["id"]:
                self._ims_by_user[conversation["user"]] = conversation
        self._conversation_lists = {}

    def _new_id(self, prefix: str) -> str:
        while True:
            candidate = f"{prefix}9{next(self._ids):08d}"
            if candidate not in self._conversations and candidate not in self._views:
                return candidate

    # Messages.

    def next_ts(self) -> str:
        """Return a new message timestamp ``"<unix seconds>.<6 digits>"``, later than every earlier one."""
        now = time.time()
        candidate = (int(now), int((now % 1) * 1_000_000))
        with self._lock:
            if candidate <= self._last_ts:
                seconds, micros = self._last_ts
                candidate = (seconds + 1, 0) if micros == 999_999 else (seconds, micros + 1)
            self._last_ts = candidate
        return f"{candidate[0]}.{candidate[1]:06d}"

    def add_message(self, channel_id: str, message: dict) -> None:
        """Store a message and count it as a reply on its thread's parent when it has ``thread_ts``."""
        with self._lock:
            messages = self._messages.setdefault(channel_id, [])
            # Two requests may get their ts in one order and store in the
            # other, so the message is inserted at its ts position.
            bisect.insort(messages, message, key=_message_key)
            if len(messages) > MAX_MESSAGES_PER_CHANNEL:
                del messages[: len(messages) - MAX_MESSAGES_PER_CHANNEL]

            thread_ts = message.get("thread_ts")
            if thread_ts and thread_ts != message["ts"]:
                self._count_reply(channel_id, thread_ts, message)

    def _count_reply(self, channel_id: str, thread_ts: str, reply: dict) -> None:
        parent = self.message(channel_id, thread_ts)
        if parent is None:
            return

        updated = dict(parent)
        updated["thread_ts"] = thread_ts
        updated["reply_count"] = parent.get("reply_count", 0) + 1
        updated["latest_reply"] = reply["ts"]
        users = list(parent.get("reply_users", []))
        if reply.get("user") and reply["user"] not in users:
            users.append(reply["user"])
        updated["reply_users"] = users
        updated["reply_users_count"] = len(users)
        self.replace_message(channel_id, updated)

    def message(self, channel_id: str, ts: str):
        """Return the stored message with this ts in the channel, or None."""
        with self._lock:
            for message in reversed(self._messages.get(channel_id, [])):
                if message["ts"] == ts:
                    return message
        return None

    def replace_message(self, channel_id: str, message: dict) -> bool:
        """Replace the stored message that has the same ts. Return False when there is none."""
        with self._lock:
            messages = self._messages.get(channel_id, [])
            for index in range(len(messages) - 1, -1, -1):
                if messages[index]["ts"] == message["ts"]:
                    messages[index] = message
                    return True
        return False

    def delete_message(self, channel_id: str, ts: str) -> bool:
        """Delete a stored message. Return False when there is none."""
        with self._lock:
            messages = self._messages.get(channel_id, [])
            for index in range(len(messages) - 1, -1, -1):
                if messages[index]["ts"] == ts:
                    del messages[index]
                    return True
        return False

    def history(self, channel_id: str, oldest: tuple, latest: tuple, inclusive: bool) -> list:
        """Return the channel's top-level messages between two ts keys, newest first.

        Thread replies are left out unless they were also sent to the channel,
        as in Slack's ``conversations.history``.
        """
        with self._lock:
            messages = list(self._messages.get(channel_id, []))

        selected = []
        for message in reversed(messages):
            key = ts_key(message["ts"])
            inside = oldest <= key <= latest if inclusive else oldest < key < latest
            if not inside:
                continue
            thread_ts = message.get("thread_ts")
            if thread_ts and thread_ts != message["ts"] and message.get("subtype") != "thread_broadcast":
                continue
            selected.append(message)
        return selected

    def replies(self, channel_id: str, thread_ts: str) -> list:
        """Return a thread's parent followed by its replies, oldest first."""
        with self._lock:
            messages = list(self._messages.get(channel_id, []))
        return [message for message in messages if message["ts"] == thread_ts or message.get("thread_ts") == thread_ts]

    # Views.

    def new_view_id(self) -> str:
        """Return an unused view id such as ``V900000001``."""
        with self._lock:
            return self._new_id("V")

    def view(self, view_id=None, external_id=None):
        """Return the stored view with this id or external id, or None."""
        with self._lock:
            if view_id:
                return self._views.get(view_id)
            if external_id:
                return self._views_by_external_id.get(external_id)
        return None

    def store_view(self, view: dict) -> None:
        """Store or replace a view under its ``id`` and, when set, its ``external_id``."""
        with self._lock:
            self._views[view["id"]] = view
            if view.get("external_id"):
                self._views_by_external_id[view["external_id"]] = view

    def home_view(self, user_id: str):
        """Return the App Home view published for this user, or None."""
        with self._lock:
            return self._home_views.get(user_id)

    def store_home_view(self, user_id: str, view: dict) -> None:
        """Store or replace the App Home view published for this user."""
        with self._lock:
            self._home_views[user_id] = view
            self._views[view["id"]] = view
