"""The validated config: teams, bots, handlers, and the per-bot routing tables.

Everything here is built once when the config is loaded and never changed
afterwards, so request and worker threads share it without locks.
"""

import dataclasses
import re
import typing

MESSAGE = "message"
SLASH_COMMAND = "slash_command"
INTERACTIVE = "interactive_component"


@dataclasses.dataclass(frozen=True)
class Team:
    """A Slack workspace: omnibot's name for it and Slack's team id."""

    name: str
    team_id: str


@dataclasses.dataclass(frozen=True)
class Credentials:
    """A bot's secrets, read from ``CREDENTIALS_SLACK_*_<APP_ID>`` variables."""

    signing_secret: typing.Optional[str] = dataclasses.field(default=None, repr=False)
    verification_token: typing.Optional[str] = dataclasses.field(default=None, repr=False)
    bot_token: typing.Optional[str] = dataclasses.field(default=None, repr=False)
    user_token: typing.Optional[str] = dataclasses.field(default=None, repr=False)


@dataclasses.dataclass(frozen=True)
class CallbackSpec:
    """A ``package.module:function`` callback with its kwargs.

    ``function`` is the imported callable; it is None only in configs loaded
    with ``import_callbacks=False`` (used by tools that must not import).
    """

    module: str
    kwargs: typing.Mapping[str, typing.Any]
    synchronous: bool = False
    function: typing.Optional[typing.Callable] = dataclasses.field(default=None, compare=False)


@dataclasses.dataclass(frozen=True)
class Handler:
    """One entry of ``handlers.*_handlers``.

    Attributes:
        kind: ``message``, ``slash_command`` or ``interactive_component``.
        index: Position in its list, used in logs and error messages.
        pattern: The compiled ``match`` for regex and reaction handlers.
        bots: ``(team name, bot name)`` pairs the handler applies to.
    """

    kind: str
    index: int
    callbacks: typing.Tuple[CallbackSpec, ...]
    bots: typing.FrozenSet[typing.Tuple[str, str]]
    description: str = ""
    match: typing.Optional[str] = None
    match_type: typing.Optional[str] = None
    pattern: typing.Optional[typing.Pattern] = None
    absence: bool = False
    match_mention: bool = False
    match_reply: bool = False
    command: typing.Optional[str] = None
    callback_id: typing.Optional[str] = None
    action_id: typing.Optional[str] = None
    block_id: typing.Optional[str] = None
    response_type: typing.Optional[str] = None
    dialog: typing.Optional[typing.Mapping] = None
    canned_response: typing.Optional[str] = None
    no_message_response: bool = False

    @property
    def label(self) -> str:
        """Return a short name for logs, e.g. ``message_handlers[2]``."""
        return f"{self.kind}_handlers[{self.index}]"

    @property
    def synchronous_callbacks(self) -> typing.Tuple[CallbackSpec, ...]:
        return tuple(callback for callback in self.callbacks if callback.synchronous)

    @property
    def queued_callbacks(self) -> typing.Tuple[CallbackSpec, ...]:
        return tuple(callback for callback in self.callbacks if not callback.synchronous)


@dataclasses.dataclass
class Bot:
    """A Slack app installed in a team, with its routing tables.

    ``app_id`` is Slack's ``api_app_id`` (omnibot called it ``bot_id``).
    """

    team: Team
    name: str
    app_id: str
    credentials: Credentials = dataclasses.field(default_factory=Credentials, repr=False)
    message_handlers: typing.List[Handler] = dataclasses.field(default_factory=list)
    slash_command_handlers: typing.Dict[str, typing.List[Handler]] = dataclasses.field(
        default_factory=dict
    )
    interactive_handlers: typing.List[Handler] = dataclasses.field(default_factory=list)
    # The index of message_handlers (omnibot.processing.matching.MessageRoutes), built by the loader.
    message_routes: typing.Any = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def key(self) -> typing.Tuple[str, str]:
        return (self.team.name, self.name)

    @property
    def trace(self) -> typing.Dict[str, str]:
        """Return the logging context naming this bot."""
        return {"team": self.team.name, "bot": self.name, "bot_id": self.app_id}

    def slash_command_handler(self, command: str) -> typing.Optional[Handler]:
        """Return the first handler of ``command`` (e.g. ``/echo``), or None."""
        handlers = self.slash_command_handlers.get(command)
        return handlers[0] if handlers else None


@dataclasses.dataclass
class Config:
    """The whole validated config file.

    Attributes:
        bots_by_app_id: Bots by Slack app id, across all teams.
        warnings: Problems that did not stop the load.
    """

    path: typing.Optional[str]
    teams: typing.Dict[str, Team]
    bots: typing.Dict[typing.Tuple[str, str], Bot]
    primary_bots: typing.Dict[str, str]
    handlers: typing.List[Handler]
    authorization: typing.Mapping[str, typing.Any]
    checks: typing.List[CallbackSpec]
    help_callback: typing.Optional[CallbackSpec]
    default_to_help: bool = True
    list_provider_update_frequency: float = 120.0
    warnings: typing.List = dataclasses.field(default_factory=list)
    teams_by_id: typing.Dict[str, Team] = dataclasses.field(default_factory=dict)
    bots_by_app_id: typing.Dict[str, Bot] = dataclasses.field(default_factory=dict)
    skipped_bots: typing.Dict[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        self.teams_by_id = {team.team_id: team for team in self.teams.values()}
        self.bots_by_app_id = {bot.app_id: bot for bot in self.bots.values()}

    def team_by_id(self, team_id: str) -> typing.Optional[Team]:
        return self.teams_by_id.get(team_id)

    def bot_by_app_id(self, app_id: str) -> typing.Optional[Bot]:
        return self.bots_by_app_id.get(app_id)

    def bot(self, team_name: str, bot_name: str) -> typing.Optional[Bot]:
        return self.bots.get((team_name, bot_name))

    def bots_of_team(self, team: Team) -> typing.List[Bot]:
        return [bot for bot in self.bots.values() if bot.team == team]

    def primary_bot(self, team: Team) -> typing.Optional[Bot]:
        name = self.primary_bots.get(team.name)
        return self.bots.get((team.name, name)) if name else None


def compile_pattern(pattern: str) -> typing.Pattern:
    """Compile a handler's ``match`` regex; raises re.error on bad syntax."""
    return re.compile(pattern)
