"""Load, check and complete the workspace that the fake Slack server serves.

A workspace is a dict with the keys ``team``, ``bot``, ``tokens``, ``users``,
``channels``, ``emoji``, ``messages``, ``accept_any_channel`` and
``strict_methods``. Every key is optional. :func:`normalize_workspace` takes
a missing ``team``, ``bot``, ``users``, ``channels`` or ``emoji`` (and missing
team and bot fields) from the placeholder workspace of
:func:`default_workspace`. An empty list given explicitly stays empty.
"""

import copy
import json
import logging
import os
import re

import yaml

logger = logging.getLogger(__name__)

WORKSPACE_KEYS = frozenset(
    {
        "team",
        "bot",
        "tokens",
        "users",
        "channels",
        "emoji",
        "messages",
        "accept_any_channel",
        "strict_methods",
    }
)

# Slack "created" timestamps are unix seconds. Objects loaded without one get
# this fixed value so that responses stay identical from run to run.
DEFAULT_CREATED = 1700000000

_TS_PATTERN = re.compile(r"^[0-9]+(\.[0-9]+)?$")

_DEFAULT_TEAM = {"id": "T0TEST001", "name": "test-team", "domain": "test-team"}

_DEFAULT_BOT = {
    "user_id": "U0BOT0001",
    "bot_id": "B0TEST001",
    "app_id": "A0TEST001",
    "name": "testbot",
}


class WorkspaceError(ValueError):
    """A workspace file or dict is malformed. The message names the file or key at fault."""


def default_workspace() -> dict:
    """Return a new copy of the placeholder workspace used when none is given.

    It has the team ``test-team`` (T0TEST001), the bot ``testbot``, the users
    alice (U0TEST001) and bob (W0TEST002), the channels general (C0TEST001)
    and ops-private (G0TEST001), a DM with alice (D0TEST001) and three emoji.
    """
    return {
        "team": dict(_DEFAULT_TEAM),
        "bot": dict(_DEFAULT_BOT),
        "users": [
            {
                "id": "U0BOT0001",
                "name": "testbot",
                "real_name": "testbot",
                "is_bot": True,
                "profile": {"display_name": "testbot", "bot_id": "B0TEST001", "api_app_id": "A0TEST001"},
            },
            {
                "id": "U0TEST001",
                "name": "alice",
                "real_name": "Alice Example",
                "profile": {"display_name": "alice", "email": "alice@example.com"},
            },
            {
                "id": "W0TEST002",
                "name": "bob",
                "real_name": "Bob Example",
                "profile": {"display_name": "bob", "email": "bob@example.com"},
            },
        ],
        "channels": [
            {"id": "C0TEST001", "name": "general", "is_channel": True, "is_general": True},
            {"id": "G0TEST001", "name": "ops-private", "is_group": True, "is_private": True},
            {"id": "D0TEST001", "is_im": True, "user": "U0TEST001"},
        ],
        "emoji": {
            "partyparrot": "https://emoji.example.com/partyparrot.gif",
            "shipit": "https://emoji.example.com/shipit.png",
            "ship_it": "alias:shipit",
        },
    }


def load_workspace(path) -> dict:
    """Read a workspace file and return it normalised.

    The extension selects the parser: ``.yaml`` and ``.yml`` for YAML,
    ``.json`` for JSON. An empty file gives the default workspace.

    Raises:
        WorkspaceError: The file cannot be read or parsed, has an unsupported
            extension, or its content is invalid.
    """
    extension = os.path.splitext(str(path))[1].lower()
    if extension not in (".yaml", ".yml", ".json"):
        raise WorkspaceError(f"{path}: unsupported workspace file extension {extension!r}; use .yaml, .yml or .json")

    try:
        with open(path, encoding="utf-8") as stream:
            text = stream.read()
    except OSError as exc:
        raise WorkspaceError(f"{path}: cannot read workspace file: {exc}") from exc

    try:
        data = json.loads(text) if extension == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise WorkspaceError(f"{path}: invalid {extension[1:].upper()}: {exc}") from exc

    try:
        return normalize_workspace(data or {})
    except WorkspaceError as exc:
        raise WorkspaceError(f"{path}: {exc}") from exc


def normalize_workspace(data: dict) -> dict:
    """Check a workspace dict and return a completed deep copy.

    Missing keys and missing ``team`` and ``bot`` fields get the placeholder
    values, users and channels get Slack's default fields, and the bot user
    is added to ``users`` when the workspace does not list it. Unknown top-level keys are
    logged as warnings and dropped.

    Raises:
        WorkspaceError: A value has the wrong type, an id is missing or
            duplicated, or an IM has no ``user``.
    """
    if not isinstance(data, dict):
        raise WorkspaceError(f"the workspace must be a mapping, not {type(data).__name__}")

    unknown = sorted(set(data) - WORKSPACE_KEYS)
    if unknown:
        logger.warning("ignoring unknown workspace keys: %s", ", ".join(unknown))

    defaults = default_workspace()
    data = copy.deepcopy(data)
    team = _normalize_team(data.get("team"))
    bot = _normalize_bot(data.get("bot"))
    users = _normalize_users(data.get("users", defaults["users"]), team, bot)
    channels = _normalize_channels(data.get("channels", defaults["channels"]), team)

    return {
        "team": team,
        "bot": bot,
        "tokens": _normalize_tokens(data.get("tokens")),
        "users": users,
        "channels": channels,
        "emoji": _normalize_emoji(data.get("emoji", defaults["emoji"])),
        "messages": _normalize_messages(data.get("messages")),
        "accept_any_channel": _require_bool(data, "accept_any_channel", True),
        "strict_methods": _require_bool(data, "strict_methods", False),
    }


def _require_mapping(value, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise WorkspaceError(f"{where} must be a mapping, not {type(value).__name__}")
    return value


def _require_list(value, where: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise WorkspaceError(f"{where} must be a list, not {type(value).__name__}")
    return value


def _require_bool(data: dict, key: str, default: bool) -> bool:
    value = data.get(key, default)
    if not isinstance(value, bool):
        raise WorkspaceError(f"{key} must be true or false, not {value!r}")
    return value


def _require_id(entry: dict, where: str) -> str:
    entry_id = entry.get("id")
    if not isinstance(entry_id, str) or not entry_id:
        raise WorkspaceError(f'{where}: missing or non-string "id"')
    return entry_id


def _normalize_team(value) -> dict:
    team = dict(_require_mapping(value, "team"))
    team.setdefault("id", _DEFAULT_TEAM["id"])
    team.setdefault("name", _DEFAULT_TEAM["name"])
    team.setdefault("domain", team["name"])
    return team


def _normalize_bot(value) -> dict:
    return {**_DEFAULT_BOT, **_require_mapping(value, "bot")}


def _normalize_tokens(value):
    if value is None:
        return None

    tokens = _require_list(value, "tokens")
    for index, token in enumerate(tokens):
        if not isinstance(token, str) or not token:
            raise WorkspaceError(f"tokens[{index}] must be a non-empty string")
    return tokens


def _normalize_users(value, team: dict, bot: dict) -> list:
    users = []
    seen = set()

    for index, user in enumerate(_require_list(value, "users")):
        where = f"users[{index}]"
        user = _require_mapping(user, where)
        user_id = _require_id(user, where)
        if user_id in seen:
            raise WorkspaceError(f"{where}: duplicate user id {user_id}")
        seen.add(user_id)
        users.append(_complete_user(user, team))

    if bot["user_id"] not in seen:
        bot_user = {
            "id": bot["user_id"],
            "name": bot["name"],
            "is_bot": True,
            "profile": {"bot_id": bot["bot_id"], "api_app_id": bot["app_id"]},
        }
        users.append(_complete_user(bot_user, team))

    return users


def _complete_user(user: dict, team: dict) -> dict:
    user.setdefault("team_id", team["id"])
    user.setdefault("name", user["id"].lower())
    user.setdefault("real_name", user["name"])
    user.setdefault("deleted", False)
    user.setdefault("is_bot", False)
    user.setdefault("is_app_user", False)

    profile = _require_mapping(user.get("profile"), f"user {user['id']}: profile")
    profile.setdefault("display_name", "")
    profile.setdefault("real_name", user["real_name"])
    profile.setdefault("team", team["id"])
    user["profile"] = profile
    return user


def _normalize_channels(value, team: dict) -> list:
    channels = []
    seen = set()

    for index, channel in enumerate(_require_list(value, "channels")):
        where = f"channels[{index}]"
        channel = _require_mapping(channel, where)
        channel_id = _require_id(channel, where)
        if channel_id in seen:
            raise WorkspaceError(f"{where}: duplicate channel id {channel_id}")
        seen.add(channel_id)
        channels.append(complete_conversation(channel, team, where))

    return channels


def complete_conversation(channel: dict, team: dict, where: str) -> dict:
    """Fill a conversation object's missing Slack fields in place and return it.

    Flags that are not given follow the id prefix as Slack assigns them:
    ``D`` is an IM and ``G`` a private group, anything else a public channel.

    Raises:
        WorkspaceError: An IM has no ``user``.
    """
    channel_id = channel["id"]
    channel.setdefault("is_im", channel_id.startswith("D"))
    channel.setdefault("is_mpim", False)
    channel.setdefault("is_group", channel_id.startswith("G") and not channel["is_mpim"])
    channel.setdefault("is_private", channel["is_group"] or channel["is_im"] or channel["is_mpim"])
    channel.setdefault("is_channel", not (channel["is_im"] or channel["is_mpim"] or channel["is_group"]))
    channel.setdefault("is_archived", False)
    channel.setdefault("created", DEFAULT_CREATED)
    channel.setdefault("context_team_id", team["id"])

    if channel["is_im"]:
        if not isinstance(channel.get("user"), str):
            raise WorkspaceError(f'{where} ({channel_id}) is an IM and needs a "user"')
        channel.setdefault("is_open", True)
        channel.setdefault("is_user_deleted", False)
        return channel

    channel.setdefault("name", channel_id.lower())
    channel.setdefault("is_member", True)
    channel.setdefault("topic", {"value": "", "creator": "", "last_set": 0})
    channel.setdefault("purpose", {"value": "", "creator": "", "last_set": 0})
    return channel


def _normalize_emoji(value) -> dict:
    emoji = _require_mapping(value, "emoji")
    for name, target in emoji.items():
        if not isinstance(name, str) or not isinstance(target, str):
            raise WorkspaceError(f"emoji {name!r}: name and value must be strings")
    return emoji


def _normalize_messages(value) -> dict:
    messages = {}

    for channel_id, entries in _require_mapping(value, "messages").items():
        where = f"messages[{channel_id}]"
        completed = []
        for index, message in enumerate(_require_list(entries, where)):
            message = _require_mapping(message, f"{where}[{index}]")
            message["ts"] = _normalize_ts(message.get("ts"), f"{where}[{index}]")
            message.setdefault("type", "message")
            message.setdefault("text", "")
            completed.append(message)
        messages[str(channel_id)] = completed

    return messages


def _normalize_ts(value, where: str) -> str:
    # YAML reads an unquoted 1700000000.000100 as a float, so numbers are
    # formatted back to Slack's six-digit form.
    if isinstance(value, bool) or value is None:
        raise WorkspaceError(f'{where}: missing "ts"')
    if isinstance(value, (int, float)):
        return f"{value:.6f}"
    if isinstance(value, str) and _TS_PATTERN.match(value):
        return value
    raise WorkspaceError(f'{where}: "ts" must be a string such as "1700000000.000100"')
