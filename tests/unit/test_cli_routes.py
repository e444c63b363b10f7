"""``omnibot routes``: the routing table in text and JSON, filters, and what it flags."""

import json
import os

import pytest

from omnibot.cli import main
from tests.support import REPO, credentials_env

CONFIGS = os.path.join(REPO, "tests", "configs")
VALID = os.path.join(CONFIGS, "valid.yaml")


@pytest.fixture(autouse=True)
def _credentials(monkeypatch):
    for name, value in {**credentials_env(), **credentials_env(app_id="A0TEST002")}.items():
        monkeypatch.setenv(name, value)


def routes(capsys, *argv):
    status = main(["routes", *argv])
    output = capsys.readouterr()
    return status, output.out, output.err


def routes_json(capsys, *argv):
    status, out, err = routes(capsys, *argv, "--format", "json")
    assert status == 0, err
    return json.loads(out)


def bot_table(table, name):
    return next(bot for bot in table["bots"] if bot["bot"] == name)


def test_json_lists_every_bot(capsys):
    table = routes_json(capsys, VALID)

    assert table["config"] == VALID
    assert [(bot["team"], bot["bot"], bot["app_id"]) for bot in table["bots"]] == [
        ("test-team", "otherbot", "A0TEST002"),
        ("test-team", "testbot", "A0TEST001"),
    ]
    assert [row["handler"] for row in bot_table(table, "otherbot")["message_handlers"]] == ["message_handlers[2]"]


def test_json_message_handlers_in_config_order(capsys):
    rows = bot_table(routes_json(capsys, VALID), "testbot")["message_handlers"]

    assert [(row["match_type"], row["pattern"]) for row in rows] == [
        ("command", "echo"),
        ("command", "echo loud"),
        ("regex", "deploy"),
    ]
    assert rows[0]["callbacks"] == [
        {"module": "omnibot.callbacks.message_callbacks:echo_callback", "kwargs": {}, "synchronous": False}
    ]
    assert rows[0]["description"] == "Repeat what follows."
    assert rows[1]["callbacks"][0]["kwargs"] == {"text": "LOUD"}
    assert rows[2]["flags"] == ["regex_type=absence", "match_reply"]


def test_command_prefix_is_shadowed(capsys):
    rows = bot_table(routes_json(capsys, VALID), "testbot")["message_handlers"]

    assert rows[0]["shadowed_by"] is None
    # "echo loud" starts with "echo", which the first command handler matches first.
    assert rows[1]["shadowed_by"] == "message_handlers[0]"


def test_json_slash_and_interactive(capsys):
    testbot = bot_table(routes_json(capsys, VALID), "testbot")

    slash = testbot["slash_command_handlers"]
    assert [(row["match_type"], row["pattern"], row["flags"]) for row in slash] == [
        ("slash_command", "/echo", ["response_type=in_channel"])
    ]
    interactive = testbot["interactive_handlers"]
    # action_id handlers come before callback_id-only handlers, whatever the config order.
    assert [(row["handler"], row["match_type"], row["pattern"]) for row in interactive] == [
        ("interactive_component_handlers[1]", "action_id", "ack_alert"),
        ("interactive_component_handlers[0]", "callback_id", "incident_create"),
    ]
    assert interactive[0]["requires"] == {"callback_id": "alerts"}
    assert interactive[0]["flags"] == ["no_message_response"]
    assert interactive[1]["callbacks"][0]["synchronous"] is True


def test_text_output(capsys):
    status, out, _ = routes(capsys, VALID, "--bot", "testbot")

    assert status == 0
    lines = out.splitlines()
    assert lines[0] == "test-team (T0TEST001) / testbot (A0TEST001)"
    assert "    message_handlers[0]  command 'echo'" in lines
    assert "      -> omnibot.callbacks.message_callbacks:test_callback(text=\"LOUD\")" in lines
    assert "      never runs: message_handlers[0] matches first" in lines
    assert "      flags: regex_type=absence, match_reply" in lines
    assert "    slash_command_handlers[0]  slash_command '/echo'" in lines
    assert "    interactive_component_handlers[1]  action_id 'ack_alert'  requires callback_id=alerts" in lines
    assert (
        "      -> omnibot.callbacks.interactive_component_callbacks:echo_dialog_submission_callback  [synchronous]"
        in lines
    )
    assert "otherbot" not in out


@pytest.mark.parametrize(
    "argv, bots",
    [
        # Only one bot name.
        (["--bot", "otherbot"], ["otherbot"]),
        # One team keeps both of its bots.
        (["--team", "test-team"], ["otherbot", "testbot"]),
        # Both filters together.
        (["--team", "test-team", "--bot", "testbot"], ["testbot"]),
    ],
)
def test_filters(capsys, argv, bots):
    table = routes_json(capsys, VALID, *argv)

    assert [bot["bot"] for bot in table["bots"]] == bots


def test_unknown_bot_exits_1(capsys):
    status, out, err = routes(capsys, VALID, "--bot", "ghostbot")

    assert status == 1
    assert out == ""
    assert "no bot matches" in err


def test_bot_without_credentials_is_listed(capsys, monkeypatch):
    monkeypatch.delenv("CREDENTIALS_SLACK_SIGNING_SECRET_A0TEST002")

    table = routes_json(capsys, VALID)

    otherbot = bot_table(table, "otherbot")
    assert otherbot["app_id"] is None
    assert "CREDENTIALS_SLACK_SIGNING_SECRET_A0TEST002" in otherbot["left_out"]
    assert [row["pattern"] for row in otherbot["message_handlers"]] == ["deploy"]


def test_broken_callback_module_still_lists_routes(capsys):
    # routes does not import callbacks; check-config reports this file.
    table = routes_json(capsys, os.path.join(CONFIGS, "module_not_found.yaml"))

    rows = bot_table(table, "testbot")["message_handlers"]
    assert rows[0]["callbacks"][0]["module"] == "omnibot_no_such_package.callbacks:ping"


def test_invalid_config_exits_1(capsys):
    status, out, err = routes(capsys, os.path.join(CONFIGS, "bad_match_type.yaml"))

    assert status == 1
    assert out == ""
    assert "bad_match_type.yaml:15: handlers.message_handlers[0].match_type:" in err
    assert "run omnibot check-config" in err


def test_duplicate_interactive_handler_is_shadowed(tmp_path, capsys):
    with open(VALID, encoding="utf-8") as source:
        text = source.read()
    text += """
    - callback_id: "incident_create"
      bots:
        "test-team": ["testbot"]
      callbacks:
        - module: "omnibot.callbacks.message_callbacks:test_callback"
"""
    path = tmp_path / "duplicate.yaml"
    path.write_text(text, encoding="utf-8")

    rows = bot_table(routes_json(capsys, str(path)), "testbot")["interactive_handlers"]

    assert [row["handler"] for row in rows][1:] == [
        "interactive_component_handlers[0]",
        "interactive_component_handlers[2]",
    ]
    assert rows[2]["shadowed_by"] == "interactive_component_handlers[0]"
