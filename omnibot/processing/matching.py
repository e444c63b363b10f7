"""Handler matching for messages and reactions, by omnibot's rules.

- Command handlers see directed messages (a DM, or text starting with the
  bot's mention), or with ``match_mention`` any message that mentions the
  bot. They match by prefix of ``command_text``; only the first command
  match counts.
- Regex handlers search ``parsed_text``; every matching one runs.
  ``regex_type: absence`` inverts the test.
- Thread replies reach only handlers with ``match_reply: true``.
- Reaction handlers full-match the emoji name.

Matches are returned in config order. Command handlers are looked up in a
:class:`MessageRoutes` index instead of being scanned, so the cost of finding
the command does not grow with their number. Regex handlers are still
searched one by one, because each may match.
"""

import typing

from omnibot.config.model import Handler


class Match(typing.NamedTuple):
    """A handler that matched, with what to record in the payload."""

    handler: Handler
    match_type: str
    value: str
    args: typing.Optional[str] = None


class _CommandCandidates:
    """The first handler of one ``match`` string for each combination of ``match_reply`` and ``match_mention``.

    Attributes:
        first: ``(match_reply, match_mention)`` to ``(position, handler)`` of
            the earliest such handler in the bot's list.
    """

    __slots__ = ("first",)

    def __init__(self):
        self.first: typing.Dict[typing.Tuple[bool, bool], typing.Tuple[int, Handler]] = {}


class MessageRoutes:
    """Lookup tables over one bot's message handlers, built once from its list in config order.

    Attributes:
        source: The handler list the tables were built from.
        size: Its length when they were built, so that :func:`routes_of`
            notices a list that grew and builds the tables again.
        commands: Command handlers grouped by their ``match`` string.
        command_lengths: The distinct lengths of those strings, shortest first.
        regexes: ``(position, handler)`` of every regex handler, in order.
        reactions: Every reaction handler, in order.
    """

    __slots__ = ("source", "size", "commands", "command_lengths", "regexes", "reactions")

    def __init__(self, handlers: typing.List[Handler]):
        self.source = handlers
        self.size = len(handlers)
        self.commands: typing.Dict[str, _CommandCandidates] = {}
        self.regexes: typing.List[typing.Tuple[int, Handler]] = []
        self.reactions: typing.List[Handler] = []

        for position, handler in enumerate(handlers):
            if handler.match_type == "command":
                candidates = self.commands.setdefault(handler.match, _CommandCandidates())
                candidates.first.setdefault((handler.match_reply, handler.match_mention), (position, handler))
            elif handler.match_type == "regex":
                self.regexes.append((position, handler))
            elif handler.match_type == "reaction":
                self.reactions.append(handler)

        self.command_lengths = sorted({len(match) for match in self.commands})

    def first_command(self, command_text: str, is_reply: bool, directed: bool, mentioned: bool):
        """Return ``(position, handler)`` of the first command handler the message reaches, or None.

        A handler is reached when its ``match`` is a prefix of ``command_text``,
        the message is not a thread reply unless the handler has ``match_reply``,
        and the message is directed, or mentions the bot and the handler has
        ``match_mention``. Each prefix length of ``command_text`` costs one
        dict lookup, however many handlers there are.
        """
        if not directed and not mentioned:
            return None

        # The (match_reply, match_mention) combinations the message can reach.
        replies = (True,) if is_reply else (False, True)
        mentions = (False, True) if directed else (True,)
        keys = [(reply, mention) for reply in replies for mention in mentions]

        best = None
        text_length = len(command_text)
        for length in self.command_lengths:
            if length > text_length:
                break
            candidates = self.commands.get(command_text[:length])
            if candidates is None:
                continue
            for key in keys:
                found = candidates.first.get(key)
                if found is not None and (best is None or found[0] < best[0]):
                    best = found
        return best


def routes_of(bot) -> MessageRoutes:
    """Return the index of ``bot.message_handlers``, building it when missing or built from another list.

    The config loader builds it once per bot. Bots made by hand (tests, the
    testing helpers) get it on first use.
    """
    routes = bot.message_routes
    handlers = bot.message_handlers
    if routes is None or routes.source is not handlers or routes.size != len(handlers):
        routes = MessageRoutes(handlers)
        bot.message_routes = routes
    return routes


def match_message(message) -> typing.List[Match]:
    """Return the handlers of ``message.bot`` that ``message`` reaches, in config order."""
    routes = routes_of(message.bot)
    is_reply = message.is_reply

    command = routes.first_command(message.command_text, is_reply, message.directed, message.mentioned)

    matches = []
    command_pending = command is not None
    for position, handler in routes.regexes:
        if command_pending and command[0] < position:
            matches.append(_command_match(command[1], message.command_text))
            command_pending = False

        if is_reply and not handler.match_reply:
            continue
        found = handler.pattern.search(message.parsed_text) is not None
        if found != handler.absence:
            matches.append(Match(handler, "regex", handler.match))

    if command_pending:
        matches.append(_command_match(command[1], message.command_text))
    return matches


def _command_match(handler: Handler, command_text: str) -> Match:
    args = command_text[len(handler.match):].strip()
    return Match(handler, "command", handler.match, args)


def match_reaction(reaction) -> typing.List[Match]:
    """Return the reaction handlers of ``reaction.bot`` whose pattern full-matches the emoji."""
    matches = []
    for handler in routes_of(reaction.bot).reactions:
        found = handler.pattern.fullmatch(reaction.emoji_name) is not None
        if found != handler.absence:
            matches.append(Match(handler, "reaction", handler.match))
    return matches
