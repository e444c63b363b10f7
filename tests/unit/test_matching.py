"""Message matching through the per-bot command index, against omnibot's linear rules."""

import random
import types

import pytest

from omnibot.config import model
from omnibot.processing import matching

TEAM = model.Team(name="test-team", team_id="T0TEST001")


def make_handler(index, match_type, match, match_reply=False, match_mention=False, absence=False):
    return model.Handler(
        kind=model.MESSAGE,
        index=index,
        callbacks=(),
        bots=frozenset({("test-team", "testbot")}),
        match=match,
        match_type=match_type,
        pattern=model.compile_pattern(match) if match_type in ("regex", "reaction") else None,
        absence=absence,
        match_reply=match_reply,
        match_mention=match_mention,
    )


def make_message(bot, command_text, parsed_text=None, directed=True, mentioned=False, is_reply=False):
    return types.SimpleNamespace(
        bot=bot,
        command_text=command_text,
        parsed_text=command_text if parsed_text is None else parsed_text,
        directed=directed,
        mentioned=mentioned,
        is_reply=is_reply,
    )


def linear_matches(message):
    """omnibot's rules as a plain scan of the handlers in config order, the reference for the index."""
    matches = []
    command_matched = False
    for handler in message.bot.message_handlers:
        if message.is_reply and not handler.match_reply:
            continue
        if handler.match_type == "command":
            if command_matched or not (message.directed or (handler.match_mention and message.mentioned)):
                continue
            if message.command_text.startswith(handler.match):
                command_matched = True
                args = message.command_text[len(handler.match):].strip()
                matches.append(matching.Match(handler, "command", handler.match, args))
        elif handler.match_type == "regex":
            if (handler.pattern.search(message.parsed_text) is not None) != handler.absence:
                matches.append(matching.Match(handler, "regex", handler.match))
    return matches


def summary(matches):
    return [(match.handler.index, match.match_type, match.args) for match in matches]


@pytest.mark.parametrize(
    "handlers, message_kwargs, expected",
    [
        # The first command handler in config order wins, not the longest match.
        ([("command", "dep"), ("command", "deploy")], {"command_text": "deploy web"}, [(0, "command", "loy web")]),
        # A prefix that is not a whole word still matches, as in omnibot.
        ([("command", "echo")], {"command_text": "echoes"}, [(0, "command", "es")]),
        # The command keeps its config position between regex matches.
        (
            [("regex", "web"), ("command", "deploy"), ("regex", "dep")],
            {"command_text": "deploy web"},
            [(0, "regex", None), (1, "command", "web"), (2, "regex", None)],
        ),
        # A command handler after the regex handlers comes last.
        ([("regex", "x"), ("command", "x")], {"command_text": "x"}, [(0, "regex", None), (1, "command", "")]),
        # Undirected messages reach no command handler without match_mention.
        ([("command", "deploy"), ("regex", "deploy")], {"command_text": "deploy", "directed": False}, [(1, "regex", None)]),
        # An empty match is a prefix of every command text.
        ([("command", ""), ("command", "deploy")], {"command_text": "deploy"}, [(0, "command", "deploy")]),
        # A command longer than the text does not match.
        ([("command", "deploy-all")], {"command_text": "deploy"}, []),
    ],
)
def test_match_message_cases(handlers, message_kwargs, expected):
    bot = model.Bot(team=TEAM, name="testbot", app_id="A0TEST001")
    bot.message_handlers.extend(make_handler(index, *spec) for index, spec in enumerate(handlers))

    found = matching.match_message(make_message(bot, **message_kwargs))

    assert summary(found) == expected


def test_match_message_skips_ineligible_first_command():
    bot = model.Bot(team=TEAM, name="testbot", app_id="A0TEST001")
    bot.message_handlers.extend(
        [
            make_handler(0, "command", "deploy"),
            make_handler(1, "command", "deploy", match_mention=True),
            make_handler(2, "command", "dep", match_reply=True, match_mention=True),
        ]
    )

    mentioned = matching.match_message(make_message(bot, "deploy", directed=False, mentioned=True))
    reply = matching.match_message(make_message(bot, "deploy", directed=False, mentioned=True, is_reply=True))

    assert summary(mentioned) == [(1, "command", "")]
    assert summary(reply) == [(2, "command", "loy")]


def test_index_follows_appended_handlers():
    bot = model.Bot(team=TEAM, name="testbot", app_id="A0TEST001")
    bot.message_handlers.append(make_handler(0, "command", "status"))
    assert summary(matching.match_message(make_message(bot, "deploy"))) == []

    bot.message_handlers.append(make_handler(1, "command", "deploy"))

    assert summary(matching.match_message(make_message(bot, "deploy"))) == [(1, "command", "")]


def test_index_agrees_with_linear_scan():
    rng = random.Random(1234)
    words = ["deploy", "dep", "d", "", "status", "stat", "echo", "help", "deploy web", "web"]
    for _ in range(300):
        bot = model.Bot(team=TEAM, name="testbot", app_id="A0TEST001")
        for index in range(rng.randint(0, 12)):
            match_type = rng.choice(["command", "command", "regex", "reaction"])
            match = rng.choice(words) if match_type == "command" else rng.choice(["dep", "^web", "x|y", "s$", ".*"])
            bot.message_handlers.append(
                make_handler(
                    index,
                    match_type,
                    match,
                    match_reply=rng.random() < 0.5,
                    match_mention=rng.random() < 0.5,
                    absence=match_type == "regex" and rng.random() < 0.2,
                )
            )
        message = make_message(
            bot,
            rng.choice(["deploy web now", "dep", "status", "echo hi", "", "xyz", "help me"]),
            directed=rng.random() < 0.5,
            mentioned=rng.random() < 0.5,
            is_reply=rng.random() < 0.3,
        )

        assert summary(matching.match_message(message)) == summary(linear_matches(message)), bot.message_handlers
