"""Walk the parsed YAML, collect every problem, and build the model parts."""

import difflib
import re
import typing

from omnibot.config import imports, model
from omnibot.config.problems import ERROR, WARNING, Problem, format_path

TOP_LEVEL_KEYS = (
    "teams",
    "bots",
    "primary_bot",
    "authorization",
    "handlers",
    "help_callback",
    "default_to_help",
    "list_provider_update_frequency",
)
HANDLER_LISTS = {
    "message_handlers": model.MESSAGE,
    "slash_command_handlers": model.SLASH_COMMAND,
    "interactive_component_handlers": model.INTERACTIVE,
}
COMMON_HANDLER_KEYS = ("bots", "callbacks", "description")
HANDLER_KEYS = {
    model.MESSAGE: COMMON_HANDLER_KEYS
    + ("match", "match_type", "regex_type", "match_mention", "match_reply"),
    model.SLASH_COMMAND: COMMON_HANDLER_KEYS
    + ("command", "response_type", "dialog", "canned_response", "no_message_response"),
    model.INTERACTIVE: COMMON_HANDLER_KEYS
    + (
        "callback_id",
        "action_id",
        "block_id",
        "response_type",
        "dialog",
        "canned_response",
        "no_message_response",
    ),
}
CALLBACK_KEYS = ("module", "kwargs", "synchronous")
MATCH_TYPES = ("command", "regex", "reaction")
REGEX_TYPES = ("absence",)
RESPONSE_TYPES = ("in_channel", "ephemeral")
AUTHORIZATION_KEYS = ("checks", "permissions", "bindings")


class Validator:
    """Validate parsed config data; problems accumulate in ``problems``.

    Args:
        data: The parsed YAML document.
        lines: Key path -> line, from :func:`parse_with_lines`.
        path: The file name used in problem messages.
        import_callbacks: Import callbacks and checks and test their kwargs.
    """

    def __init__(self, data, lines, path, *, import_callbacks=True):
        self.data = data
        self.lines = lines
        self.path = path
        self.import_callbacks = import_callbacks
        self.problems: typing.List[Problem] = []
        self._imported: typing.Dict[str, typing.Callable] = {}

    # -- reporting ---------------------------------------------------------

    def error(self, path, message):
        self.problems.append(Problem(format_path(path), message, ERROR, self.path, self._line(path)))

    def warning(self, path, message):
        self.problems.append(Problem(format_path(path), message, WARNING, self.path, self._line(path)))

    def _line(self, path):
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get(())

    def _unknown_keys(self, mapping, known, path):
        for key in mapping:
            if key in known:
                continue
            close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.75)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            self.warning(path + (key,), f"unknown key {key!r} is ignored{hint}")

    # -- typed getters -----------------------------------------------------

    def _mapping(self, value, path, required=False):
        if value is None:
            if required:
                self.error(path, "missing required key")
            return {}
        if not isinstance(value, dict):
            self.error(path, f"must be a mapping, not {_type_name(value)}")
            return {}
        return value

    def _list(self, value, path):
        if value is None:
            return []
        if not isinstance(value, list):
            self.error(path, f"must be a list, not {_type_name(value)}")
            return []
        return value

    def _string(self, value, path, required=False):
        if value is None:
            if required:
                self.error(path, "missing required key")
            return None
        if not isinstance(value, str):
            self.error(path, f"must be a string, not {_type_name(value)}")
            return None
        return value

    def _bool(self, value, path, default=False):
        if value is None:
            return default
        if not isinstance(value, bool):
            self.error(path, f"must be true or false, not {value!r}")
            return default
        return value

    def _choice(self, value, choices, path):
        if value is None:
            return None
        if value not in choices:
            self.error(path, f"{value!r} is not one of {', '.join(choices)}")
            return None
        return value

    # -- sections ----------------------------------------------------------

    def run(self) -> typing.Dict[str, typing.Any]:
        """Validate the whole document; return the parts the model is built from."""
        root = self._mapping(self.data, (), required=True) if self.data is not None else {}
        if self.data is None:
            self.error((), "config file is empty")
        self._unknown_keys(root, TOP_LEVEL_KEYS, ())

        teams = self._teams(root.get("teams"))
        bots = self._bots(root.get("bots"), teams)
        primary_bots = self._primary_bots(root.get("primary_bot"), teams, bots)
        authorization, checks = self._authorization(root.get("authorization"))
        handlers = self._handlers(root.get("handlers"), teams, bots)
        help_callback = self._help_callback(root.get("help_callback"))
        default_to_help = self._bool(root.get("default_to_help"), ("default_to_help",), True)
        frequency = self._frequency(root.get("list_provider_update_frequency"))
        return dict(
            teams=teams,
            bots=bots,
            primary_bots=primary_bots,
            authorization=authorization,
            checks=checks,
            handlers=handlers,
            help_callback=help_callback,
            default_to_help=default_to_help,
            list_provider_update_frequency=frequency,
        )

    def _teams(self, value):
        teams = {}
        for name, team_id in self._mapping(value, ("teams",), required=True).items():
            path = ("teams", name)
            if not isinstance(name, str) or not isinstance(team_id, str) or not team_id:
                self.error(path, f"must map a team name to a Slack team id string, not {team_id!r}")
                continue
            teams[name] = model.Team(name=name, team_id=team_id)

        seen = {}
        for team in teams.values():
            if team.team_id in seen:
                self.error(("teams", team.name), f"team id {team.team_id!r} is also used by team {seen[team.team_id]!r}")
            seen[team.team_id] = team.name
        return teams

    def _bots(self, value, teams):
        bots = {}
        seen_app_ids = {}
        for team_name, team_bots in self._mapping(value, ("bots",), required=True).items():
            team_path = ("bots", team_name)
            team_bots = self._mapping(team_bots, team_path)
            team = teams.get(team_name)
            if team is None and team_bots:
                self.warning(team_path, f"team {team_name!r} is not defined in teams; its bots are ignored")
                continue
            for bot_name, app_id in team_bots.items():
                path = team_path + (bot_name,)
                if not isinstance(bot_name, str) or not isinstance(app_id, str) or not app_id:
                    self.error(path, f"must map a bot name to a Slack app id string, not {app_id!r}")
                    continue
                if app_id in seen_app_ids:
                    self.error(path, f"app id {app_id!r} is also used by bot {seen_app_ids[app_id]!r}")
                    continue
                seen_app_ids[app_id] = f"{team_name}/{bot_name}"
                bots[(team_name, bot_name)] = model.Bot(team=team, name=bot_name, app_id=app_id)
        return bots

    def _primary_bots(self, value, teams, bots):
        primary = {}
        for team_name, bot_name in self._mapping(value, ("primary_bot",)).items():
            path = ("primary_bot", team_name)
            if not isinstance(bot_name, str):
                self.error(path, f"must be a bot name string, not {_type_name(bot_name)}")
                continue
            if team_name not in teams:
                self.warning(path, f"team {team_name!r} is not defined in teams")
                continue
            if (team_name, bot_name) not in bots:
                self.warning(path, f"bot {bot_name!r} is not defined in bots.{team_name}")
            primary[team_name] = bot_name
        return primary

    def _authorization(self, value):
        path = ("authorization",)
        section = self._mapping(value, path)
        self._unknown_keys(section, AUTHORIZATION_KEYS, path)
        checks = []
        for index, entry in enumerate(self._list(section.get("checks"), path + ("checks",))):
            spec = self._callback(entry, path + ("checks", index), first_argument=None)
            if spec is not None:
                checks.append(spec)
                self._check_path_patterns(spec, path + ("checks", index, "kwargs", "paths"))
        self._permissions(section.get("permissions"), path + ("permissions",))
        self._bindings(section.get("bindings"), path + ("bindings",))
        return section, checks

    def _check_path_patterns(self, spec, path):
        """Compile the ``paths`` of the built-in allowed_paths check at load, not at the first request."""
        if spec.module != "omnibot.authnz:allowed_paths":
            return
        paths = spec.kwargs.get("paths")
        if isinstance(paths, str):
            paths = [paths]
        if not isinstance(paths, list):
            self.error(path, f"must be a list of path regexes, not {_type_name(paths)}")
            return
        for index, pattern in enumerate(paths):
            if not isinstance(pattern, str):
                self.error(path + (index,), f"must be a string, not {_type_name(pattern)}")
                continue
            self._regex(pattern, path + (index,))

    def _permissions(self, value, path):
        for name, policy in self._mapping(value, path).items():
            policy_path = path + (name,)
            policy = self._mapping(policy, policy_path)
            self._unknown_keys(policy, ("methods", "paths", "internal_only"), policy_path)
            for key in ("methods", "paths"):
                for index, item in enumerate(self._list(policy.get(key), policy_path + (key,))):
                    self._string(item, policy_path + (key, index))
            for index, pattern in enumerate(policy.get("paths") or []):
                self._regex(pattern, policy_path + ("paths", index))
            self._bool(policy.get("internal_only"), policy_path + ("internal_only",), True)

    def _bindings(self, value, path):
        for subject, permissions in self._mapping(value, path).items():
            self._regex(subject, path + (subject,))
            for index, name in enumerate(self._list(permissions, path + (subject,))):
                self._string(name, path + (subject, index))

    def _regex(self, pattern, path):
        if not isinstance(pattern, str):
            return
        try:
            re.compile(pattern)
        except re.error as error:
            self.error(path, f"regex {pattern!r} does not compile: {error}")

    def _help_callback(self, value):
        if value is None:
            return None
        path = ("help_callback",)
        section = self._mapping(value, path)
        self._unknown_keys(section, ("callback",), path)
        return self._callback(section.get("callback"), path + ("callback",))

    def _frequency(self, value):
        if value is None:
            return 120.0
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            self.error(("list_provider_update_frequency",), f"must be a positive number of seconds, not {value!r}")
            return 120.0
        return float(value)

    # -- handlers ----------------------------------------------------------

    def _handlers(self, value, teams, bots):
        path = ("handlers",)
        section = self._mapping(value, path)
        self._unknown_keys(section, tuple(HANDLER_LISTS), path)
        handlers = []
        for list_name, kind in HANDLER_LISTS.items():
            entries = self._list(section.get(list_name), path + (list_name,))
            for index, entry in enumerate(entries):
                handler = self._handler(entry, kind, index, path + (list_name, index), teams, bots)
                if handler is not None:
                    handlers.append(handler)
        self._warn_shadowed_commands(handlers)
        return handlers

    def _warn_shadowed_commands(self, handlers):
        first = {}
        for handler in handlers:
            if handler.kind != model.SLASH_COMMAND:
                continue
            for bot_key in sorted(handler.bots):
                earlier = first.setdefault((bot_key, handler.command), handler)
                if earlier is not handler:
                    self.warning(
                        ("handlers", "slash_command_handlers", handler.index, "command"),
                        f"{handler.command} of {bot_key[0]}/{bot_key[1]} is already handled by "
                        f"slash_command_handlers[{earlier.index}]; this handler is never used for that bot",
                    )

    def _handler(self, entry, kind, index, path, teams, bots):
        if not isinstance(entry, dict):
            self.error(path, f"must be a mapping, not {_type_name(entry)}")
            return None
        errors_before = self._error_count()
        self._unknown_keys(entry, HANDLER_KEYS[kind], path)

        fields = dict(
            kind=kind,
            index=index,
            description=self._string(entry.get("description"), path + ("description",)) or "",
            bots=self._handler_bots(entry.get("bots"), path + ("bots",), teams, bots),
        )
        callbacks = self._callbacks(entry.get("callbacks"), path + ("callbacks",), required=kind == model.MESSAGE)
        fields["callbacks"] = tuple(callbacks)
        if kind == model.MESSAGE:
            for index, callback in enumerate(callbacks):
                if callback.synchronous:
                    self.warning(
                        path + ("callbacks", index, "synchronous"),
                        "synchronous has no effect on message handlers; the callback runs in the worker",
                    )

        if kind == model.MESSAGE:
            fields.update(self._message_fields(entry, path))
        elif kind == model.SLASH_COMMAND:
            fields.update(self._slash_fields(entry, path))
        else:
            fields.update(self._interactive_fields(entry, path))

        if self._error_count() > errors_before:
            return None
        return model.Handler(**fields)

    def _message_fields(self, entry, path):
        match = self._string(entry.get("match"), path + ("match",), required=True)
        match_type = self._string(entry.get("match_type"), path + ("match_type",), required=True)
        match_type = self._choice(match_type, MATCH_TYPES, path + ("match_type",))
        regex_type = self._choice(entry.get("regex_type"), REGEX_TYPES, path + ("regex_type",))

        pattern = None
        if match is not None and match_type in ("regex", "reaction"):
            try:
                pattern = model.compile_pattern(match)
            except re.error as error:
                self.error(path + ("match",), f"regex {match!r} does not compile: {error}")
        if regex_type and match_type == "command":
            self.warning(path + ("regex_type",), "regex_type has no effect on command handlers")

        return dict(
            match=match,
            match_type=match_type,
            pattern=pattern,
            absence=regex_type == "absence",
            match_mention=self._bool(entry.get("match_mention"), path + ("match_mention",)),
            match_reply=self._bool(entry.get("match_reply"), path + ("match_reply",)),
        )

    def _slash_fields(self, entry, path):
        command = self._string(entry.get("command"), path + ("command",), required=True)
        if command is not None and not command.startswith("/"):
            self.error(path + ("command",), f"slash command {command!r} must start with '/'")
        no_message_response = self._bool(entry.get("no_message_response"), path + ("no_message_response",))
        return dict(command=command, no_message_response=no_message_response, **self._response_fields(entry, path))

    def _interactive_fields(self, entry, path):
        keys = {}
        for key in ("callback_id", "action_id", "block_id"):
            keys[key] = self._string(entry.get(key), path + (key,))
            if keys[key] == "":
                self.error(path + (key,), "must not be empty")
        if not any(keys.values()) and all(entry.get(key) is None for key in keys):
            self.error(path, "needs callback_id, action_id or block_id")
        keys["no_message_response"] = self._bool(entry.get("no_message_response"), path + ("no_message_response",))
        return dict(**keys, **self._response_fields(entry, path))

    def _response_fields(self, entry, path):
        response_type = self._choice(entry.get("response_type"), RESPONSE_TYPES, path + ("response_type",))
        dialog = entry.get("dialog")
        if dialog is not None:
            self._mapping(dialog, path + ("dialog",))
        return dict(
            response_type=response_type,
            dialog=dialog if isinstance(dialog, dict) else None,
            canned_response=self._string(entry.get("canned_response"), path + ("canned_response",)),
        )

    def _handler_bots(self, value, path, teams, bots):
        pairs = set()
        section = self._mapping(value, path, required=True)
        if value is not None and not section and isinstance(value, dict):
            self.warning(path, "names no bots, so the handler never runs")
        for team_name, bot_names in section.items():
            team_path = path + (team_name,)
            if isinstance(bot_names, str):
                bot_names = [bot_names]
            for position, bot_name in enumerate(self._list(bot_names, team_path)):
                if not isinstance(bot_name, str):
                    self.error(team_path + (position,), f"must be a bot name string, not {_type_name(bot_name)}")
                    continue
                if team_name not in teams:
                    self.warning(team_path, f"team {team_name!r} is not defined in teams")
                    break
                if (team_name, bot_name) not in bots:
                    self.warning(team_path + (position,), f"bot {bot_name!r} is not defined in bots.{team_name}")
                    continue
                pairs.add((team_name, bot_name))
        return frozenset(pairs)

    def _callbacks(self, value, path, required):
        if value is None:
            if required:
                self.error(path, "missing required key")
            return []
        callbacks = []
        for index, entry in enumerate(self._list(value, path)):
            spec = self._callback(entry, path + (index,))
            if spec is not None:
                callbacks.append(spec)
        return callbacks

    def _callback(self, entry, path, first_argument="container"):
        if entry is None:
            self.error(path, "missing required key")
            return None
        if not isinstance(entry, dict):
            self.error(path, f"must be a mapping with 'module' and 'kwargs', not {_type_name(entry)}")
            return None
        self._unknown_keys(entry, CALLBACK_KEYS, path)
        module = self._string(entry.get("module"), path + ("module",), required=True)
        kwargs = self._mapping(entry.get("kwargs"), path + ("kwargs",))
        synchronous = self._bool(entry.get("synchronous"), path + ("synchronous",))
        if module is None:
            return None
        if not imports.is_callback_string(module):
            self.error(path + ("module",), f"{module!r} is not of the form package.module:function")
            return None

        function = None
        if self.import_callbacks:
            function = self._import(module, kwargs, path + ("module",), first_argument)
            if function is None:
                return None
        return model.CallbackSpec(module=module, kwargs=kwargs, synchronous=synchronous, function=function)

    def _import(self, module, kwargs, path, first_argument):
        try:
            function = self._imported.get(module) or imports.import_callable(module)
            self._imported[module] = function
            imports.check_kwargs(function, kwargs, first_argument)
        except imports.ImportProblem as problem:
            self.error(path, str(problem))
            return None
        return function

    def _error_count(self):
        return sum(1 for problem in self.problems if problem.is_error)


def _type_name(value):
    if value is None:
        return "null"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )
