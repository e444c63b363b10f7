"""Config loading and validation: every problem with its file, line and key path."""

import textwrap

import pytest

from omnibot.config import load_config, load_config_text
from omnibot.config.loader import check_config_text
from omnibot.errors import ConfigError
from tests.support import BASE_CONFIG, credentials_env

ENV = credentials_env()


def problems_of(text):
    _, problems = check_config_text(textwrap.dedent(text), "omnibot.yaml", ENV)
    return [str(problem) for problem in problems]


def handler_config(handler_yaml, kind="message_handlers"):
    return BASE_CONFIG + f"handlers:\n  {kind}:\n" + textwrap.indent(textwrap.dedent(handler_yaml), "    ")


def test_example_config_loads():
    config = load_config("config/omnibot.yaml", ENV)

    assert set(config.teams) == {"test-team"}
    assert config.bot("test-team", "testbot").app_id == "A0TEST001"
    assert config.warnings == []


@pytest.mark.parametrize(
    "handler, expected",
    [
        # Unknown match type, with the line of the key.
        (
            """
            - match: "x"
              match_type: "regexp"
              bots: {"test-team": ["testbot"]}
              callbacks: [{module: "tests.recorders:record"}]
            """,
            "omnibot.yaml:18: handlers.message_handlers[0].match_type: 'regexp' is not one of command, regex, reaction",
        ),
        # A regex that does not compile.
        (
            """
            - match: "(unclosed"
              match_type: "regex"
              bots: {"test-team": ["testbot"]}
              callbacks: [{module: "tests.recorders:record"}]
            """,
            "omnibot.yaml:17: handlers.message_handlers[0].match: regex '(unclosed' does not compile",
        ),
        # A module string without the colon.
        (
            """
            - match: "x"
              match_type: "command"
              bots: {"test-team": ["testbot"]}
              callbacks: [{module: "tests.recorders.record"}]
            """,
            "omnibot.yaml:20: handlers.message_handlers[0].callbacks[0].module: 'tests.recorders.record' is not of the form package.module:function",
        ),
        # A module that does not exist.
        (
            """
            - match: "x"
              match_type: "command"
              bots: {"test-team": ["testbot"]}
              callbacks: [{module: "tests.no_such_module:record"}]
            """,
            "module 'tests.no_such_module' not found",
        ),
        # A function the module does not have.
        (
            """
            - match: "x"
              match_type: "command"
              bots: {"test-team": ["testbot"]}
              callbacks: [{module: "tests.recorders:no_such_function"}]
            """,
            "module 'tests.recorders' has no attribute 'no_such_function'",
        ),
        # Kwargs the function does not accept.
        (
            """
            - match: "x"
              match_type: "command"
              bots: {"test-team": ["testbot"]}
              callbacks: [{module: "tests.recorders:record_and_reply", kwargs: {colour: "red"}}]
            """,
            "does not accept the configured kwargs",
        ),
        # Missing required keys.
        (
            """
            - match_type: "command"
              bots: {"test-team": ["testbot"]}
              callbacks: [{module: "tests.recorders:record"}]
            """,
            "omnibot.yaml:17: handlers.message_handlers[0].match: missing required key",
        ),
        (
            """
            - match: "x"
              match_type: "command"
              bots: {"test-team": ["testbot"]}
            """,
            "handlers.message_handlers[0].callbacks: missing required key",
        ),
        # Wrong types.
        (
            """
            - match: "x"
              match_type: "command"
              match_reply: "yes"
              bots: {"test-team": ["testbot"]}
              callbacks: [{module: "tests.recorders:record"}]
            """,
            "omnibot.yaml:19: handlers.message_handlers[0].match_reply: must be true or false, not 'yes'",
        ),
        (
            """
            - match: "x"
              match_type: "regex"
              regex_type: "presence"
              bots: {"test-team": ["testbot"]}
              callbacks: [{module: "tests.recorders:record"}]
            """,
            "handlers.message_handlers[0].regex_type: 'presence' is not one of absence",
        ),
    ],
)
def test_handler_errors(handler, expected):
    problems = problems_of(handler_config(handler))

    assert any(expected in problem for problem in problems), problems


def test_slash_command_must_start_with_slash():
    problems = problems_of(
        handler_config(
            """
            - command: "echo"
              bots: {"test-team": ["testbot"]}
            """,
            "slash_command_handlers",
        )
    )

    assert any("slash command 'echo' must start with '/'" in problem for problem in problems)


def test_interactive_handler_needs_a_key():
    problems = problems_of(
        handler_config(
            """
            - bots: {"test-team": ["testbot"]}
              callbacks: [{module: "tests.recorders:record"}]
            """,
            "interactive_component_handlers",
        )
    )

    assert any("needs callback_id, action_id or block_id" in problem for problem in problems)


def test_unknown_keys_are_warnings_with_suggestion():
    config, problems = check_config_text(BASE_CONFIG + "handler:\n  message_handlers: []\nteam_fallback: x\n", "omnibot.yaml", ENV)

    assert config is not None
    assert "omnibot.yaml:14: handler: warning: unknown key 'handler' is ignored; did you mean 'handlers'?" in [str(p) for p in problems]
    assert any("unknown key 'team_fallback' is ignored" in str(p) for p in problems)


def test_undefined_bots_in_handler_are_warnings():
    config, problems = check_config_text(
        handler_config(
            """
            - match: "x"
              match_type: "command"
              bots: {"test-team": ["ghost"], "no-team": ["testbot"]}
              callbacks: [{module: "tests.recorders:record"}]
            """
        ),
        "omnibot.yaml",
        ENV,
    )

    assert config is not None
    messages = [str(problem) for problem in problems]
    assert any("bot 'ghost' is not defined in bots.test-team" in m for m in messages)
    assert any("team 'no-team' is not defined in teams" in m for m in messages)


def test_every_error_is_reported():
    text = handler_config(
        """
        - match: "("
          match_type: "regex"
          bots: {"test-team": ["testbot"]}
          callbacks: [{module: "bad"}]
        - match: "x"
          match_type: "nope"
          bots: {"test-team": ["testbot"]}
          callbacks: [{module: "tests.recorders:record"}]
        """
    )

    with pytest.raises(ConfigError) as raised:
        load_config_text(text, "omnibot.yaml", ENV)

    assert len(raised.value.problems) == 3


def test_yaml_syntax_error_has_line():
    problems = problems_of("teams:\n  a: [unclosed\n")

    assert problems[0].startswith("omnibot.yaml:3:")
    assert "invalid YAML" in problems[0]


@pytest.mark.parametrize(
    "env, missing",
    [
        # No signing secret and no verification token.
        ({"CREDENTIALS_SLACK_OAUTH_BOT_TOKEN_A0TEST001": "xoxb"}, "CREDENTIALS_SLACK_SIGNING_SECRET_A0TEST001"),
        # No bot token.
        ({"CREDENTIALS_SLACK_SIGNING_SECRET_A0TEST001": "s"}, "CREDENTIALS_SLACK_OAUTH_BOT_TOKEN_A0TEST001"),
    ],
)
def test_bot_without_credentials_is_left_out(env, missing):
    config = load_config_text(BASE_CONFIG, "omnibot.yaml", env)

    assert config.bots == {}
    assert missing in config.skipped_bots["test-team/testbot"]
    assert any(missing in str(problem) for problem in config.warnings)


def test_legacy_token_is_enough_to_verify():
    env = {"CREDENTIALS_SLACK_VERIFICATION_TOKEN_A0TEST001": "t", "CREDENTIALS_SLACK_OAUTH_BOT_TOKEN_A0TEST001": "x"}

    config = load_config_text(BASE_CONFIG, "omnibot.yaml", env)

    assert config.bot("test-team", "testbot").credentials.verification_token == "t"


def test_handlers_are_indexed_per_bot_once():
    config = load_config_text(
        handler_config(
            """
            - match: "a"
              match_type: "command"
              bots: {"test-team": ["testbot"]}
              callbacks: [{module: "tests.recorders:record"}]
            - match: "b.*"
              match_type: "regex"
              bots: {"test-team": ["testbot"]}
              callbacks: [{module: "tests.recorders:record"}]
            """
        ),
        "omnibot.yaml",
        ENV,
    )
    bot = config.bot("test-team", "testbot")

    assert [handler.match for handler in bot.message_handlers] == ["a", "b.*"]
    assert bot.message_handlers[1].pattern.search("xbz")


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as raised:
        load_config(str(tmp_path / "absent.yaml"), ENV)

    assert "cannot read config file" in str(raised.value)
