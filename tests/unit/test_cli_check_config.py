"""``omnibot check-config``: its output lines, summary and exit status on the files under tests/configs/."""

import os
import subprocess
import sys

import pytest

from omnibot.cli import main
from tests.support import REPO, credentials_env

CONFIGS = os.path.join(REPO, "tests", "configs")


@pytest.fixture(autouse=True)
def _credentials(monkeypatch):
    for name, value in {**credentials_env(), **credentials_env(app_id="A0TEST002")}.items():
        monkeypatch.setenv(name, value)


def config_path(name):
    return os.path.join(CONFIGS, name)


def check(capsys, *argv):
    status = main(["check-config", *argv])
    output = capsys.readouterr()
    return status, output.out.splitlines(), output.err.splitlines()


@pytest.mark.parametrize(
    "name, line, key_path, message",
    [
        # A line indented less than its sibling key.
        ("yaml_syntax.yaml", 16, "", "invalid YAML"),
        # A message handler without match.
        ("missing_required_key.yaml", 14, "handlers.message_handlers[0].match", "missing required key"),
        # callbacks given as a string.
        ("wrong_type.yaml", 17, "handlers.message_handlers[0].callbacks", "must be a list, not a string"),
        # match_type "comand".
        ("bad_match_type.yaml", 15, "handlers.message_handlers[0].match_type", "'comand' is not one of command, regex, reaction"),
        # regex_type other than absence.
        ("bad_regex_type.yaml", 16, "handlers.message_handlers[0].regex_type", "'presence' is not one of absence"),
        # A regex that does not compile.
        ("bad_regex.yaml", 14, "handlers.message_handlers[0].match", "does not compile"),
        # match_reply: "yes".
        ("bad_boolean.yaml", 16, "handlers.message_handlers[0].match_reply", "must be true or false"),
        # package.module.function with a dot for the colon.
        ("module_form.yaml", 18, "handlers.message_handlers[0].callbacks[0].module", "is not of the form package.module:function"),
        # A callback package that does not exist.
        ("module_not_found.yaml", 18, "handlers.message_handlers[0].callbacks[0].module", "module 'omnibot_no_such_package.callbacks' not found"),
        # A module without the named function.
        ("function_not_found.yaml", 18, "handlers.message_handlers[0].callbacks[0].module", "has no attribute 'no_such_callback'"),
        # A module that raises while it is imported.
        ("import_fails.yaml", 18, "handlers.message_handlers[0].callbacks[0].module", "RuntimeError: this module fails on purpose"),
        # kwargs that the function signature rejects.
        ("kwargs_rejected.yaml", 18, "handlers.message_handlers[0].callbacks[0].module", "unexpected keyword argument 'txt'"),
        # A slash command without its slash.
        ("slash_without_slash.yaml", 14, "handlers.slash_command_handlers[0].command", "must start with '/'"),
        # An interactive handler with nothing to route by.
        ("interactive_without_id.yaml", 14, "handlers.interactive_component_handlers[0]", "needs callback_id, action_id or block_id"),
        # response_type "public".
        ("bad_response_type.yaml", 15, "handlers.slash_command_handlers[0].response_type", "'public' is not one of in_channel, ephemeral"),
        # Two bots with one app id.
        ("duplicate_app_id.yaml", 12, "bots.test-team.otherbot", "app id 'A0TEST001' is also used"),
        # A negative refresh period.
        ("bad_frequency.yaml", 12, "list_provider_update_frequency", "must be a positive number of seconds"),
        # An authorization check that does not exist.
        ("bad_check_module.yaml", 4, "authorization.checks[0].module", "has no attribute 'no_such_check'"),
    ],
)
def test_error_names_its_line(capsys, name, line, key_path, message):
    status, out, err = check(capsys, config_path(name))

    assert status == 1
    assert len(out) == 1, out
    location = f"{config_path(name)}:{line}:"
    assert out[0].startswith(location), out[0]
    if key_path:
        assert out[0].startswith(f"{location} {key_path}: "), out[0]
    assert message in out[0]
    assert err == [f"{config_path(name)}: 1 error(s), 0 warning(s)"]


@pytest.mark.parametrize(
    "name, line, key_path, message",
    [
        # A misspelled key, with a suggestion.
        ("unknown_key.yaml", 16, "handlers.message_handlers[0].desciption", "did you mean 'description'?"),
        # A handler naming a bot that bots does not define.
        ("undefined_bot.yaml", 16, "handlers.message_handlers[0].bots.test-team[1]", "bot 'ghostbot' is not defined"),
    ],
)
def test_warning_passes_unless_strict(capsys, name, line, key_path, message):
    status, out, err = check(capsys, config_path(name))

    assert status == 0
    assert out[0].startswith(f"{config_path(name)}:{line}: {key_path}: warning: "), out[0]
    assert message in out[0]
    assert out[1].startswith(f"{config_path(name)}: OK: ")
    assert out[1].endswith("1 warning(s)")

    strict_status, strict_out, strict_err = check(capsys, "--strict", config_path(name))
    assert strict_status == 1
    assert strict_out == out[:1]
    assert strict_err == [f"{config_path(name)}: 0 error(s), 1 warning(s) (--strict fails on warnings)"]


def test_valid_config_prints_one_summary_line(capsys):
    status, out, err = check(capsys, config_path("valid.yaml"))

    assert status == 0
    assert out == [f"{config_path('valid.yaml')}: OK: 1 teams, 2 bots, 6 handlers, 6 callbacks imported, 0 warning(s)"]
    assert err == []


def test_every_error_is_listed_in_line_order(tmp_path, capsys):
    with open(config_path("valid.yaml"), encoding="utf-8") as source:
        text = source.read()
    text = text.replace('match_type: "regex"', 'match_type: "regexp"').replace('"/echo"', '"echo"')
    path = tmp_path / "two_errors.yaml"
    path.write_text(text, encoding="utf-8")

    status, out, err = check(capsys, str(path))

    assert status == 1
    assert [line.split(":")[1] for line in out] == ["40", "51"]
    assert "match_type: 'regexp' is not one of" in out[0]
    assert "command: slash command 'echo' must start with '/'" in out[1]
    assert err == [f"{path}: 2 error(s), 0 warning(s)"]


def test_config_file_variable_is_the_default(monkeypatch, capsys):
    monkeypatch.setenv("CONFIG_FILE", config_path("bad_regex.yaml"))

    status, out, _ = check(capsys)

    assert status == 1
    assert out[0].startswith(f"{config_path('bad_regex.yaml')}:14:")


def test_missing_path_exits_2(capsys):
    status, out, err = check(capsys)

    assert status == 2
    assert out == []
    assert err == ["omnibot check-config: no config file: pass PATH or set CONFIG_FILE"]


def test_unreadable_file_exits_1(tmp_path, capsys):
    missing = tmp_path / "missing.yaml"

    status, out, err = check(capsys, str(missing))

    assert status == 1
    assert err == [f"{missing}: cannot read: No such file or directory"]


def test_non_utf8_file_exits_1(tmp_path, capsys):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("teams: {caf\xe9: T1}\n".encode("latin-1"))

    status, _, err = check(capsys, str(path))

    assert status == 1
    assert err[0].startswith(f"{path}: not UTF-8 text:")


def test_command_line_exit_status(tmp_path):
    # The console entry point, as an operator's CI runs it.
    env = dict(os.environ, PYTHONPATH=REPO)
    command = [sys.executable, "-m", "omnibot", "check-config"]

    failed = subprocess.run(command + [config_path("bad_match_type.yaml")], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    passed = subprocess.run(command + [config_path("valid.yaml")], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)

    assert failed.returncode == 1, failed.stderr
    assert failed.stdout.startswith(f"{config_path('bad_match_type.yaml')}:15: ")
    assert passed.returncode == 0, passed.stderr
    assert passed.stdout.count("\n") == 1
