"""Print the routing table: each bot's handlers in the order omnibot tries them.

For each team and bot: message handlers, slash commands and interactive
handlers, with match type, pattern, callbacks and flags. Callbacks are not
imported, so the table prints even when a callback module is broken (use
``omnibot check-config`` for that).
"""

import json
import os
import sys
import typing

from omnibot.config import load_config, model
from omnibot.errors import ConfigError
from omnibot.processing import interactive_routing

MESSAGE_ORDER = (
    "config order; the first command handler that matches wins, "
    "every matching regex handler runs, reaction handlers full-match the emoji"
)
SLASH_ORDER = "the first handler of each command runs; later ones never do"
INTERACTIVE_ORDER = "handlers with action_id first, then block_id, then callback_id only; config order within each"
KWARG_WIDTH = 40


def add_arguments(parser):
    parser.add_argument("path", nargs="?", help="config file (default: --config or $CONFIG_FILE)")
    parser.add_argument("--config", metavar="PATH", help="config file, as for the other commands")
    parser.add_argument("--team", help="show only this team (its name in the config)")
    parser.add_argument("--bot", help="show only bots with this name")
    parser.add_argument("--format", choices=("text", "json"), default="text", help="output format (default text)")


def run(args):
    path = args.path or args.config or os.environ.get("CONFIG_FILE")
    if not path:
        print("omnibot routes: no config file: pass PATH or set CONFIG_FILE", file=sys.stderr)
        return 2
    try:
        config = load_config(path, import_callbacks=False)
    except ConfigError as error:
        for problem in error.problems:
            print(problem, file=sys.stderr)
        print(f"{path}: invalid config; run omnibot check-config {path} for details", file=sys.stderr)
        return 1

    table = routing_table(config, team=args.team, bot=args.bot)
    if not table["bots"]:
        print(f"omnibot routes: no bot matches --team {args.team!r} --bot {args.bot!r} in {path}", file=sys.stderr)
        return 1
    if args.format == "json":
        print(json.dumps(table, indent=2))
    else:
        print(render_text(table))
    return 0


# -- building the table ----------------------------------------------------------


def routing_table(config: model.Config, team: typing.Optional[str] = None, bot: typing.Optional[str] = None) -> dict:
    """Return the routing table of ``config`` as JSON-ready data.

    Bots left out for missing credentials are listed too, with
    ``left_out`` set to the reason, because their handlers are in the file.

    Args:
        team: Keep only this team name.
        bot: Keep only bots of this name.
    """
    bots = []
    for team_name, bot_name, app_id, left_out in _all_bots(config):
        if (team and team_name != team) or (bot and bot_name != bot):
            continue
        key = (team_name, bot_name)
        handlers = [handler for handler in config.handlers if key in handler.bots]
        bots.append(
            {
                "team": team_name,
                "team_id": config.teams[team_name].team_id,
                "bot": bot_name,
                "app_id": app_id,
                "left_out": left_out,
                "message_handlers": _message_rows(handlers),
                "slash_command_handlers": _slash_rows(handlers),
                "interactive_handlers": _interactive_rows(handlers),
            }
        )
    return {
        "config": config.path,
        "order": {
            "message_handlers": MESSAGE_ORDER,
            "slash_command_handlers": SLASH_ORDER,
            "interactive_handlers": INTERACTIVE_ORDER,
        },
        "bots": bots,
    }


def _all_bots(config):
    """Yield ``(team, bot, app id or None, left-out reason or None)`` for every bot the file defines."""
    rows = [(bot.team.name, bot.name, bot.app_id, None) for bot in config.bots.values()]
    for label, reason in config.skipped_bots.items():
        team_name, _, bot_name = label.partition("/")
        rows.append((team_name, bot_name, None, reason))
    return sorted(rows, key=lambda row: (row[0], row[1]))


def _message_rows(handlers):
    rows = []
    commands = []
    for handler in handlers:
        if handler.kind != model.MESSAGE:
            continue
        row = _row(handler, handler.match_type, handler.match)
        if handler.match_type == "command":
            earlier = next((other for other in commands if _shadows(other, handler)), None)
            if earlier is not None:
                row["shadowed_by"] = earlier.label
            commands.append(handler)
        rows.append(row)
    return rows


def _shadows(earlier, later):
    """Return whether command handler ``earlier`` matches every message that ``later`` matches."""
    return (
        later.match.startswith(earlier.match)
        and (earlier.match_mention or not later.match_mention)
        and (earlier.match_reply or not later.match_reply)
    )


def _slash_rows(handlers):
    rows = []
    first = {}
    slash_handlers = [handler for handler in handlers if handler.kind == model.SLASH_COMMAND]
    for handler in sorted(slash_handlers, key=lambda handler: (handler.command, handler.index)):
        row = _row(handler, "slash_command", handler.command)
        if handler.command in first:
            row["shadowed_by"] = first[handler.command].label
        else:
            first[handler.command] = handler
        rows.append(row)
    return rows


def _interactive_rows(handlers):
    interactive = [handler for handler in handlers if handler.kind == model.INTERACTIVE]
    levels = (interactive_routing.ACTION_ID, interactive_routing.BLOCK_ID, interactive_routing.CALLBACK_ID)
    rows = []
    seen = {}
    for level in levels:
        for handler in interactive:
            if _level(handler) != level:
                continue
            row = _row(handler, level, getattr(handler, level))
            row["requires"] = {
                key: getattr(handler, key) for key in levels if key != level and getattr(handler, key)
            }
            identity = tuple(getattr(handler, key) for key in levels)
            if identity in seen:
                row["shadowed_by"] = seen[identity].label
            else:
                seen[identity] = handler
            rows.append(row)
    return rows


def _level(handler):
    for key in (interactive_routing.ACTION_ID, interactive_routing.BLOCK_ID):
        if getattr(handler, key):
            return key
    return interactive_routing.CALLBACK_ID


def _row(handler, match_type, pattern):
    return {
        "handler": handler.label,
        "match_type": match_type,
        "pattern": pattern,
        "callbacks": [
            {"module": spec.module, "kwargs": dict(spec.kwargs), "synchronous": spec.synchronous}
            for spec in handler.callbacks
        ],
        "flags": _flags(handler),
        "description": handler.description,
        "shadowed_by": None,
    }


def _flags(handler):
    flags = []
    if handler.absence:
        flags.append("regex_type=absence")
    if handler.match_mention:
        flags.append("match_mention")
    if handler.match_reply:
        flags.append("match_reply")
    if handler.response_type:
        flags.append(f"response_type={handler.response_type}")
    if handler.dialog:
        flags.append("dialog")
    if handler.canned_response:
        flags.append("canned_response")
    if handler.no_message_response:
        flags.append("no_message_response")
    return flags


# -- text output -----------------------------------------------------------------


def render_text(table: dict) -> str:
    """Return the table as indented text, one block per bot."""
    lines = []
    for bot in table["bots"]:
        app = bot["app_id"] or "no app id"
        lines.append(f"{bot['team']} ({bot['team_id']}) / {bot['bot']} ({app})")
        if bot["left_out"]:
            lines.append(f"  NOT SERVED: {bot['left_out']}")
        for key, title in (
            ("message_handlers", "message handlers"),
            ("slash_command_handlers", "slash commands"),
            ("interactive_handlers", "interactive handlers"),
        ):
            lines.extend(_section(title, table["order"][key], bot[key]))
        lines.append("")
    return "\n".join(lines).rstrip("\n")


def _section(title, order, rows):
    if not rows:
        return [f"  {title}: none"]
    lines = [f"  {title} ({order}):"]
    for row in rows:
        pattern = row["pattern"]
        requires = " ".join(f"{key}={value}" for key, value in row.get("requires", {}).items())
        lines.append(f"    {row['handler']}  {row['match_type']} {pattern!r}" + (f"  requires {requires}" if requires else ""))
        for spec in row["callbacks"]:
            marker = "  [synchronous]" if spec["synchronous"] else ""
            lines.append(f"      -> {spec['module']}{_kwargs_text(spec['kwargs'])}{marker}")
        if not row["callbacks"]:
            lines.append("      -> no callbacks")
        if row["flags"]:
            lines.append(f"      flags: {', '.join(row['flags'])}")
        if row["shadowed_by"]:
            lines.append(f"      never runs: {row['shadowed_by']} matches first")
    return lines


def _kwargs_text(kwargs):
    if not kwargs:
        return ""
    parts = []
    for name, value in kwargs.items():
        value_text = json.dumps(value)
        if len(value_text) > KWARG_WIDTH:
            value_text = value_text[: KWARG_WIDTH - 3] + "..."
        parts.append(f"{name}={value_text}")
    return "(" + ", ".join(parts) + ")"
