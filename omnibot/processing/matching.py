"""Which handlers a message or reaction reaches, by omnibot's rules.

- Command handlers see directed messages (a DM, or text starting with the
  bot's mention), or with ``match_mention`` any message that mentions the
  bot. They match by prefix of ``command_text``; only the first command
  match counts.
- Regex handlers search ``parsed_text``; every matching one runs.
  ``regex_type: absence`` inverts the test.
- Thread replies reach only handlers with ``match_reply: true``.
- Reaction handlers full-match the emoji name.
"""

import typing

from omnibot.config.model import Handler


class Match(typing.NamedTuple):
    """A handler that matched, with what to record in the payload."""

    handler: Handler
    match_type: str
    value: str
    args: typing.Optional[str] = None


def match_message(message) -> typing.List[Match]:
    """Return the handlers of ``message.bot`` that ``message`` reaches, in config order."""
    matches = []
    command_matched = False
    is_reply = message.is_reply

    for handler in message.bot.message_handlers:
        if is_reply and not handler.match_reply:
            continue

        if handler.match_type == "command":
            if command_matched:
                continue
            if not (message.directed or (handler.match_mention and message.mentioned)):
                continue
            if message.command_text.startswith(handler.match):
                command_matched = True
                args = message.command_text[len(handler.match):].strip()
                matches.append(Match(handler, "command", handler.match, args))

        elif handler.match_type == "regex":
            found = handler.pattern.search(message.parsed_text) is not None
            if found != handler.absence:
                matches.append(Match(handler, "regex", handler.match))

    return matches


def match_reaction(reaction) -> typing.List[Match]:
    """Return the reaction handlers of ``reaction.bot`` whose pattern full-matches the emoji."""
    matches = []
    for handler in reaction.bot.message_handlers:
        if handler.match_type != "reaction":
            continue
        found = handler.pattern.fullmatch(reaction.emoji_name) is not None
        if found != handler.absence:
            matches.append(Match(handler, "reaction", handler.match))
    return matches
