"""Slash commands and interactive components end to end: gunicorn, a worker process and a fake Slack.

The fake Slack serves both the Web API and the ``response_url`` hooks, so
every request these tests cause stays on loopback.
"""

import copy
import json
import urllib.parse
import uuid

import pytest

from omnibot.fake_slack import FakeSlack
from tests.integration.stack import Stack
from tests.support import BASE_CONFIG, LEGACY_TOKEN, case_bytes, case_json, credentials_env, wait_until

FORM = "application/x-www-form-urlencoded"
SLASH = "/api/v1/slack/slash_command"
INTERACTIVE = "/api/v1/slack/interactive"
C12 = "C12-slash-empty-text"
C13 = "C13-view-submission-sync-errors"
C15 = "C15-block-actions-routing"
C17 = "C17-malformed-and-oversized-bodies"
C12_HOOK = "https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT0TEST001%2F0000000003%2Fplaceholder"
C12_TRIGGER = "0000000000.0000000000.placeholdertrigger"
OTHER_TEAM_SECRET = "other-team-signing-secret"

# A second workspace with its own app, to check that an app is accepted only for its own team.
CONFIG = BASE_CONFIG.replace('"test-team": "T0TEST001"', '"test-team": "T0TEST001"\n  "other-team": "T0OTHER01"').replace(
    '"testbot": "A0TEST001"', '"testbot": "A0TEST001"\n  "other-team":\n    "otherteambot": "A0OTHER01"'
)

HANDLERS = """
handlers:
  slash_command_handlers:
    - command: "/oncall"
      response_type: "in_channel"
      bots: {"test-team": ["testbot"]}
      callbacks: [{module: "tests.recorders:record"}]
    - command: "/respond"
      bots: {"test-team": ["testbot"]}
      callbacks: [{module: "tests.recorders:respond", kwargs: {text: "handled"}}]
    - command: "/echo"
      response_type: "in_channel"
      bots: {"test-team": ["testbot"]}
      callbacks: [{module: "omnibot.callbacks.slash_command_callbacks:echo_callback"}]
    - command: "/echoform"
      response_type: "in_channel"
      bots: {"test-team": ["testbot"]}
      dialog:
        title: "Echo dialog"
        submit_label: "submit"
        callback_id: "echo_submit"
        elements:
          - type: "text"
            label: "Echo this text"
            name: "echo_element"
  interactive_component_handlers:
    - callback_id: "echo_submit"
      response_type: "in_channel"
      bots: {"test-team": ["testbot"]}
      callbacks: [{module: "omnibot.callbacks.interactive_component_callbacks:echo_dialog_submission_callback"}]
    - action_id: "ack_alert"
      no_message_response: true
      bots: {"test-team": ["testbot"]}
      callbacks: [{module: "tests.recorders:record_ack"}]
    - block_id: "severity_block"
      no_message_response: true
      bots: {"test-team": ["testbot"]}
      callbacks: [{module: "tests.recorders:record_severity"}]
    - callback_id: "incident_create"
      bots: {"test-team": ["testbot"]}
      callbacks:
        - {module: "tests.recorders:validate_incident", synchronous: true}
        - {module: "tests.recorders:record_view"}
    - callback_id: "slow_modal"
      bots: {"test-team": ["testbot"]}
      callbacks: [{module: "tests.recorders:slow_validate", synchronous: true, kwargs: {seconds: 4}}]
    - action_id: "team_picker"
      bots: {"test-team": ["testbot"]}
      callbacks: [{module: "tests.recorders:suggest_options", synchronous: true}]
"""


@pytest.fixture(scope="module")
def slack():
    fake = FakeSlack().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def stack(slack, tmp_path_factory):
    stack = Stack(
        str(tmp_path_factory.mktemp("slash-interactive")),
        CONFIG + HANDLERS,
        slack.api_url,
        env=credentials_env(signing_secret=OTHER_TEAM_SECRET, app_id="A0OTHER01"),
    )
    stack.start()
    yield stack
    stack.stop()


def new_trigger():
    return f"1.2.{uuid.uuid4().hex}"


def command_form(command, text="", hook=None, trigger_id=None, **overrides):
    fields = {
        "token": LEGACY_TOKEN,
        "team_id": "T0TEST001",
        "team_domain": "test-team",
        "channel_id": "C0TEST001",
        "channel_name": "general",
        "user_id": "U0TEST001",
        "user_name": "alice",
        "command": command,
        "text": text,
        "api_app_id": "A0TEST001",
        "is_enterprise_install": "false",
        "response_url": hook or "http://127.0.0.1:9/hooks/unused",
        "trigger_id": trigger_id or new_trigger(),
    }
    fields.update(overrides)
    return urllib.parse.urlencode({key: value for key, value in fields.items() if value is not None})


def payload_form(payload):
    return urllib.parse.urlencode({"payload": json.dumps(payload)})


def fresh(payload, slack=None, hook=None):
    """Return a copy of a case payload with a new trigger_id and, when ``hook`` is given, the fake's hook as response_url."""
    payload = copy.deepcopy(payload)
    payload["trigger_id"] = new_trigger()
    if hook:
        payload["response_url"] = slack.hook_url(hook)
    return payload


def hook_calls(slack, name):
    return [call for call in slack.calls("response_url") if call["path"] == f"/hooks/{name}"]


def posts_with(slack, text):
    return [call for call in slack.calls("chat.postMessage") if call["args"].get("text") == text]


# -- slash commands ---------------------------------------------------------------


@pytest.mark.parametrize(
    "name, text",
    [
        ("body.form", ""),  # C12 A: empty text in a DM
        ("body_whitespace.form", "   \u00a0 "),  # C12 B: blank text with a no-break space
    ],
)
def test_c12_blank_command_recorded(stack, slack, name, text):
    body = case_bytes(C12, name).decode()
    body = body.replace(C12_HOOK, urllib.parse.quote(slack.hook_url(f"c12-{name}"), safe=""))
    trigger_id = new_trigger()
    body = body.replace(C12_TRIGGER, trigger_id)

    response = stack.post(SLASH, body, content_type=FORM)

    assert response.status_code == 200
    assert response.json() == {"response_type": "in_channel"}
    calls = wait_until(
        lambda: [call for call in stack.calls("record") if call["payload"]["trigger_id"] == trigger_id],
        message=f"record for {name}",
    )
    assert len(calls) == 1
    assert calls[0]["payload"]["command"] == "/oncall"
    assert calls[0]["payload"]["text"] == text
    assert calls[0]["payload"]["args"] == ""


def test_c12_unknown_command(stack, slack):
    body = case_bytes(C12, "body_unknown.form").decode().replace(C12_TRIGGER, new_trigger())
    response = stack.post(SLASH, body, content_type=FORM)

    assert response.status_code == 200
    assert response.json() == {
        "response_type": "ephemeral",
        "text": "This slash command does not have any omnibot handler associated with it.",
    }


def test_slash_responses_and_actions_arrive(stack, slack):
    response = stack.post(SLASH, command_form("/respond", hook=slack.hook_url("respond")), content_type=FORM)

    assert response.status_code == 200
    assert response.content == b""
    wait_until(lambda: hook_calls(slack, "respond"), message="the response_url post")
    wait_until(lambda: posts_with(slack, "handled"), message="the chat.postMessage")
    assert hook_calls(slack, "respond")[0]["args"] == {"text": "handled", "response_type": "ephemeral"}
    assert posts_with(slack, "handled")[0]["args"]["channel"] == "C0TEST001"


def test_echo_builtin_restores_markup(stack, slack):
    response = stack.post(SLASH, command_form("/echo", text="ping <!here>", hook=slack.hook_url("echo")), content_type=FORM)

    assert response.json() == {"response_type": "in_channel"}
    calls = wait_until(lambda: hook_calls(slack, "echo"), message="the echo response")
    assert calls[0]["args"]["text"] == "ping <!here>"
    assert calls[0]["args"]["response_type"] == "in_channel"


def test_failed_response_url_keeps_actions(stack, slack):
    # 404: the hook expired; not retried.
    slack.add_fault("response_url", status=404)
    posted_before = len(posts_with(slack, "handled"))
    response = stack.post(SLASH, command_form("/respond", hook=slack.hook_url("fail-404")), content_type=FORM)

    assert response.status_code == 200
    calls = wait_until(lambda: hook_calls(slack, "fail-404"), message="the failing response_url post")
    assert calls[0]["status"] == 404
    wait_until(lambda: len(posts_with(slack, "handled")) > posted_before, message="the chat.postMessage")
    wait_until(lambda: "response_url returned HTTP 404" in stack.logs(), message="the HTTP 404 log line")
    assert len(hook_calls(slack, "fail-404")) == 1


def test_response_url_500_is_retried(stack, slack):
    slack.add_fault("response_url", status=500)
    response = stack.post(SLASH, command_form("/respond", hook=slack.hook_url("retry-500")), content_type=FORM)

    assert response.status_code == 200
    calls = wait_until(lambda: len(hook_calls(slack, "retry-500")) >= 2 and hook_calls(slack, "retry-500"), message="the retried post")
    assert [call["status"] for call in calls] == [500, 200]
    assert "retrying the POST to response_url after HTTP 500 (retry 1 of 3)" in stack.logs()
    assert "retry-500" not in stack.logs()


def test_chained_slash_dialog_interactive(stack, slack):
    trigger_id = new_trigger()
    response = stack.post(SLASH, command_form("/echoform", trigger_id=trigger_id), content_type=FORM)

    assert response.status_code == 200
    assert response.json() == {"response_type": "in_channel"}
    opened = [call for call in slack.calls("dialog.open") if call["args"]["trigger_id"] == trigger_id]
    assert len(opened) == 1
    dialog = json.loads(opened[0]["args"]["dialog"])
    assert dialog["callback_id"] == "echo_submit"

    submission = {
        "type": "dialog_submission",
        "token": LEGACY_TOKEN,
        "api_app_id": "A0TEST001",
        "team": {"id": "T0TEST001", "domain": "test-team"},
        "user": {"id": "U0TEST001", "name": "alice"},
        "channel": {"id": "C0TEST001", "name": "general"},
        "callback_id": "echo_submit",
        "action_ts": "1764871500.000100",
        "submission": {"echo_element": "hello from the dialog"},
        "response_url": slack.hook_url("chained"),
        "state": "",
    }
    submitted = stack.post(INTERACTIVE, payload_form(submission), content_type=FORM)

    assert submitted.status_code == 200
    assert submitted.content == b""
    calls = wait_until(lambda: hook_calls(slack, "chained"), message="the dialog echo")
    assert calls[0]["args"]["text"] == "hello from the dialog"
    assert calls[0]["args"]["response_type"] == "in_channel"


def test_c17_ssl_check_and_smuggle(stack, slack):
    before = len(slack.calls())
    plain = stack.post(SLASH, case_bytes(C17, "body_ssl_check.form"), sign=False, content_type=FORM)
    smuggled = stack.post(INTERACTIVE, case_bytes(C17, "body_ssl_check_smuggle.form"), sign=False, content_type=FORM)

    assert (plain.status_code, plain.content) == (200, b"")
    assert (smuggled.status_code, smuggled.content) == (200, b"")
    stack.settle(0.5)
    assert stack.calls("record_ack") == []
    assert len(slack.calls()) == before


@pytest.mark.parametrize("path", [SLASH, INTERACTIVE])
def test_get_is_405(stack, path):
    response = stack.session.get(stack.url + path, timeout=5)

    assert response.status_code == 405
    assert response.json()["status"] == "failure"


@pytest.mark.parametrize(
    "body_file",
    [
        "body_missing_payload.form",  # C17 A
        "body_bad_json.form",  # C17 B
    ],
)
def test_c17_bad_payload_400(stack, body_file):
    response = stack.post(INTERACTIVE, case_bytes(C17, body_file), content_type=FORM)

    assert response.status_code == 400
    assert response.json()["status"] == "failure"


@pytest.mark.parametrize(
    "overrides, sign, secret, status, error",
    [
        # neither a token nor a signature
        ({"token": None}, False, None, 403, "No verification token in slash command."),
        # no team_id
        ({"team_id": None}, True, None, 403, "No team_id in slash command."),
        # a team that is not configured
        ({"team_id": "T0NOPE001"}, True, None, 403, "Unsupported team"),
        # an app that is not configured
        ({"api_app_id": "A0NOPE001"}, True, None, 403, "Token sent with slash command does not match any configured app."),
        # the app of another team
        ({"api_app_id": "A0OTHER01"}, True, OTHER_TEAM_SECRET, 403, "The app that sent this slash command is configured for another team."),
        # a wrong signature
        ({}, True, "not-the-secret", 403, "Request verification failed: bad signature, stale timestamp or wrong token."),
    ],
)
def test_slash_rejections(stack, overrides, sign, secret, status, error):
    response = stack.post(SLASH, command_form("/oncall", **overrides), sign=sign, secret=secret, content_type=FORM)

    assert response.status_code == status
    assert response.json() == {"status": "failure", "error": error}


@pytest.mark.parametrize(
    "payload, sign, secret, status, body",
    [
        # a type omnibot does not route
        ({"type": "workflow_step_edit"}, True, None, 400, {"status": "failure", "error": "Unsupported type=workflow_step_edit in interactive component."}),
        # neither a token nor a signature
        ({"type": "block_actions", "team": {"id": "T0TEST001"}}, False, None, 403, {"status": "failure", "error": "No verification token in interactive component."}),
        # no team id anywhere
        ({"type": "block_actions", "team": None, "token": "x"}, True, None, 403, {"status": "failure", "error": "No team id found in interactive component."}),
        # a team that is not configured
        ({"type": "block_actions", "team": {"id": "T0NOPE001"}}, True, None, 403, {"status": "failure", "error": "Unsupported team"}),
        # an app that is not configured
        ({"type": "block_actions", "team": {"id": "T0TEST001"}, "api_app_id": "A0NOPE001"}, True, None, 403, {"status": "failure", "error": "Token sent with interactive component does not match any configured app."}),
        # the app of another team
        ({"type": "block_actions", "team": {"id": "T0TEST001"}, "api_app_id": "A0OTHER01"}, True, OTHER_TEAM_SECRET, 403, {"status": "failure", "error": "The app that sent this interactive component is configured for another team."}),
        # no handler for the callback_id
        (
            {"type": "message_action", "team": {"id": "T0TEST001"}, "api_app_id": "A0TEST001", "callback_id": "nobody", "trigger_id": "1.2.nobody"},
            True,
            None,
            200,
            {"response_type": "ephemeral", "text": "This interactive component does not have any omnibot handler associated with it."},
        ),
    ],
)
def test_interactive_responses(stack, payload, sign, secret, status, body):
    response = stack.post(INTERACTIVE, payload_form(payload), sign=sign, secret=secret, content_type=FORM)

    assert response.status_code == status
    assert response.json() == body


def test_json_body_is_415(stack):
    response = stack.post(SLASH, {"command": "/oncall"}, content_type="application/json")

    assert response.status_code == 415
    assert response.json()["status"] == "failure"


# -- interactive components -------------------------------------------------------


def test_c13_invalid_submission_errors(stack, slack):
    payload = fresh(case_json(C13, "payload_invalid.json"))
    response = stack.post(INTERACTIVE, payload_form(payload), content_type=FORM)

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == {"response_action": "errors", "errors": {"title_block": "Title is required"}}
    calls = [call for call in stack.calls("validate_incident") if call["payload"]["trigger_id"] == payload["trigger_id"]]
    assert len(calls) == 1
    assert calls[0]["payload"]["team"]["id"] == "T0TEST001"
    stack.settle(0.5)
    assert [call for call in stack.calls("record_view") if call["payload"]["trigger_id"] == payload["trigger_id"]] == []


def test_c13_valid_submission_closes_modal(stack):
    payload = fresh(case_json(C13, "payload_valid.json"))
    response = stack.post(INTERACTIVE, payload_form(payload), content_type=FORM)

    assert response.status_code == 200
    assert response.content == b""
    views = wait_until(
        lambda: [call for call in stack.calls("record_view") if call["payload"]["trigger_id"] == payload["trigger_id"]],
        message="the queued record_view",
    )
    stack.settle(0.5)
    assert len(views) == 1
    assert len([call for call in stack.calls("validate_incident") if call["payload"]["trigger_id"] == payload["trigger_id"]]) == 1


def test_c13_slow_validation_abandoned(stack):
    payload = fresh(case_json(C13, "payload_invalid.json"))
    payload["view"]["callback_id"] = "slow_modal"
    response = stack.post(INTERACTIVE, payload_form(payload), content_type=FORM)

    assert response.status_code == 200
    assert response.content == b""
    wait_until(lambda: "timed out after" in stack.logs(), message="the timeout log line")
    wait_until(lambda: "its result is discarded" in stack.logs(), message="the late result log line")
    assert len(stack.calls("slow_validate_started")) == 1


def test_block_suggestion_options(stack):
    payload = {
        "type": "block_suggestion",
        "token": LEGACY_TOKEN,
        "api_app_id": "A0TEST001",
        "team": {"id": "T0TEST001", "domain": "test-team"},
        "user": {"id": "U0TEST001", "team_id": "T0TEST001"},
        "action_id": "team_picker",
        "block_id": "team_block",
        "value": "inf",
        "view": {"id": "V0TEST009", "callback_id": "incident_create", "state": {"values": {}}},
    }
    response = stack.post(INTERACTIVE, payload_form(payload), content_type=FORM)

    assert response.status_code == 200
    assert [option["value"] for option in response.json()["options"]] == ["inf1", "inf2"]


@pytest.mark.parametrize(
    "payload_file, callback, value_path",
    [
        # C15 A: Slack-generated block_id, routed by action_id
        ("payload_message_autogen_block_id.json", "record_ack", ("value",)),
        # C15 B: routed by block_id inside a modal, not by the view's callback_id
        ("payload_modal_block_id_only.json", "record_severity", ("selected_option", "value")),
        # C15 C: the second of two actions is ours
        ("payload_two_actions.json", "record_ack", ("value",)),
    ],
)
def test_c15_block_actions_routed(stack, slack, payload_file, callback, value_path):
    payload = fresh(case_json(C15, payload_file), slack, hook=f"c15-{payload_file}")
    response = stack.post(INTERACTIVE, payload_form(payload), content_type=FORM)

    assert response.status_code == 200
    assert response.content == b""
    calls = wait_until(
        lambda: [call for call in stack.calls(callback) if call["payload"]["trigger_id"] == payload["trigger_id"]],
        message=callback,
    )
    value = calls[0]["payload"]["routed_action"]
    for key in value_path:
        value = value[key]
    assert value in ("alert-9", "sev1")
    stack.settle(0.5)
    assert len([call for call in stack.calls(callback) if call["payload"]["trigger_id"] == payload["trigger_id"]]) == 1
    assert [call for call in stack.calls("record_view") if call["payload"]["trigger_id"] == payload["trigger_id"]] == []


def test_c15_no_actions_calls_nothing(stack):
    payload = fresh(case_json(C15, "payload_no_actions.json"))
    response = stack.post(INTERACTIVE, payload_form(payload), content_type=FORM)

    assert response.status_code == 200
    assert response.content == b""
    stack.settle(0.5)
    assert [call for call in stack.calls() if call["payload"].get("trigger_id") == payload["trigger_id"]] == []


def test_enterprise_install_routed_to_team(stack):
    payload = fresh(case_json(C15, "payload_message_autogen_block_id.json"))
    payload.update(is_enterprise_install=True, team=None, enterprise={"id": "E0TEST001", "name": "grid"})
    response = stack.post(INTERACTIVE, payload_form(payload), content_type=FORM)

    assert response.status_code == 200
    calls = wait_until(
        lambda: [call for call in stack.calls("record_ack") if call["payload"]["trigger_id"] == payload["trigger_id"]],
        message="record_ack for the enterprise payload",
    )
    assert calls[0]["payload"]["team"]["team_id"] == "T0TEST001"
    assert calls[0]["payload"]["is_enterprise_install"] is True
    assert calls[0]["payload"]["enterprise"]["id"] == "E0TEST001"
