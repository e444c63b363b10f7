"""Interactive components: routing rules, team ids, the HTTP responses and the container.

The app runs in the Flask test client with SQLite backends; Slack lookups
and dialogs go to a fake Slack on loopback.
"""

import copy
import json
import logging
import time
import urllib.parse
import uuid

import pytest

from omnibot.app import create_app
from omnibot.config.loader import load_config_text
from omnibot.containers import InteractiveComponent
from omnibot.errors import BackendUnavailable
from omnibot.fake_slack import FakeSlack
from omnibot.inbound import dialogs
from omnibot.inbound.interactive import inject_team_id, team_id_of
from omnibot.processing import interactive_routing
from omnibot.processing.processor import Processor
from omnibot.runtime import Runtime
from omnibot.settings import Settings
from tests import recorders
from tests.support import BASE_CONFIG, case_bytes, case_json, credentials_env, signed

FORM = "application/x-www-form-urlencoded"
PATH = "/api/v1/slack/interactive"
C13 = "C13-view-submission-sync-errors"
C15 = "C15-block-actions-routing"
C17 = "C17-malformed-and-oversized-bodies"
OTHER_TEAM_SECRET = "other-team-signing-secret"
NO_HANDLER = "This interactive component does not have any omnibot handler associated with it."

CONFIG = (
    BASE_CONFIG.replace('"test-team": "T0TEST001"', '"test-team": "T0TEST001"\n  "other-team": "T0OTHER01"').replace(
        '"testbot": "A0TEST001"',
        '"testbot": "A0TEST001"\n  "other-team":\n    "otherteambot": "A0OTHER01"',
    )
    + """
handlers:
  interactive_component_handlers:
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
      callbacks: [{module: "tests.recorders:slow_validate", synchronous: true, kwargs: {seconds: 1.0}}]
    - callback_id: "ask_more"
      response_type: "in_channel"
      canned_response: "Opening a form..."
      bots: {"test-team": ["testbot"]}
      dialog:
        title: "More"
        callback_id: "echo_submit"
        elements: [{type: "text", label: "Echo this text", name: "echo_element"}]
    - callback_id: "echo_submit"
      bots: {"test-team": ["testbot"]}
      callbacks: [{module: "tests.recorders:record"}]
    - action_id: "team_picker"
      bots: {"test-team": ["testbot"]}
      callbacks: [{module: "tests.recorders:suggest_options", synchronous: true}]
    - callback_id: "legacy_buttons"
      response_type: "in_channel"
      bots: {"test-team": ["testbot"]}
      callbacks: [{module: "tests.recorders:record"}]
    - callback_id: "weekly_report"
      canned_response: "never sent for shortcuts and views"
      bots: {"test-team": ["testbot"]}
      callbacks: [{module: "tests.recorders:record"}]
    - action_id: "reply_button"
      bots: {"test-team": ["testbot"]}
      callbacks: [{module: "tests.recorders:respond", kwargs: {text: "thread reply"}}]
"""
)


@pytest.fixture(scope="module")
def slack():
    fake = FakeSlack().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def runtime(slack, tmp_path_factory):
    folder = tmp_path_factory.mktemp("interactive")
    environ = {**credentials_env(), **credentials_env(signing_secret=OTHER_TEAM_SECRET, app_id="A0OTHER01")}
    config = load_config_text(CONFIG, environ=environ)
    runtime = Runtime(Settings(data_dir=str(folder), slack_api_url=slack.api_url), config)
    yield runtime
    runtime.close()


@pytest.fixture(scope="module")
def client(runtime):
    return create_app(runtime).test_client()


@pytest.fixture(scope="module")
def handlers(runtime):
    return runtime.config.bot("test-team", "testbot").interactive_handlers


@pytest.fixture(autouse=True)
def record_file(tmp_path, monkeypatch):
    path = str(tmp_path / "calls.jsonl")
    monkeypatch.setenv("OMNIBOT_TEST_RECORD_FILE", path)
    return path


@pytest.fixture(autouse=True)
def empty_queue(runtime, slack):
    drain(runtime)
    slack.clear_calls()
    yield
    drain(runtime)


def drain(runtime):
    envelopes = []
    while True:
        delivery = runtime.queue.get(timeout=0)
        if delivery is None:
            return envelopes
        runtime.queue.ack(delivery)
        envelopes.append(delivery.body)


def process_queued(runtime):
    processor = Processor(runtime)
    for envelope in drain(runtime):
        processor.process(envelope, uuid.uuid4().hex)


def fresh(payload):
    """Return a copy of ``payload`` with a new trigger_id, so that de-duplication does not apply."""
    payload = copy.deepcopy(payload)
    payload["trigger_id"] = f"1.2.{uuid.uuid4().hex}"
    return payload


def form(payload):
    return urllib.parse.urlencode({"payload": json.dumps(payload)})


def post(client, body, secret="test-signing-secret", sign=True):
    if sign:
        raw, headers = signed(body, secret=secret, content_type=FORM)
    else:
        raw, headers = body.encode(), {"Content-Type": FORM}
    return client.post(PATH, data=raw, headers=headers)


def suggestion(action_id="team_picker", value="pl"):
    return {
        "type": "block_suggestion",
        "api_app_id": "A0TEST001",
        "team": {"id": "T0TEST001", "domain": "test-team"},
        "user": {"id": "U0TEST001", "team_id": "T0TEST001"},
        "action_id": action_id,
        "block_id": "team_block",
        "value": value,
        "view": {"id": "V0TEST009", "callback_id": "incident_create", "state": {"values": {}}},
    }


def legacy_button(**changes):
    payload = {
        "type": "interactive_message",
        "callback_id": "legacy_buttons",
        "api_app_id": "A0TEST001",
        "team": {"id": "T0TEST001", "domain": "test-team"},
        "user": {"id": "U0TEST001", "name": "alice", "team_id": "T0TEST001"},
        "channel": {"id": "C0TEST001", "name": "general"},
        "actions": [{"name": "approve", "type": "button", "value": "yes"}],
        "action_ts": "1764871200.000100",
        "message_ts": "1764871100.001600",
        "original_message": {"type": "message", "text": "Approve <@U0TEST001>?", "ts": "1764871100.001600", "team": "T0TEST001"},
        "response_url": "http://127.0.0.1:9/hooks/unused",
        "trigger_id": "1.2.legacy",
    }
    payload.update(changes)
    return payload


# -- routing ------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload_file, key, value, handler_callback",
    [
        # A: Slack-generated block_id; the action_id handler matches
        ("payload_message_autogen_block_id.json", "action_id", "ack_alert", "tests.recorders:record_ack"),
        # B: a select inside a modal; the block_id handler wins over the view's callback_id
        ("payload_modal_block_id_only.json", "block_id", "severity_block", "tests.recorders:record_severity"),
        # C: two actions; the second one is ours
        ("payload_two_actions.json", "action_id", "ack_alert", "tests.recorders:record_ack"),
    ],
)
def test_c15_block_actions_route(handlers, payload_file, key, value, handler_callback):
    route = interactive_routing.find_route(handlers, case_json(C15, payload_file))

    assert route is not None
    assert (route.key, route.value) == (key, value)
    assert [spec.module for spec in route.handler.callbacks] == [handler_callback]


def test_c15_no_actions_routes_nowhere(handlers, caplog):
    caplog.set_level(logging.INFO)
    payload = case_json(C15, "payload_no_actions.json")

    assert interactive_routing.has_no_actions(payload)
    assert interactive_routing.find_route(handlers, payload) is None
    assert "no actions" in caplog.text


@pytest.mark.parametrize(
    "payload, expected",
    [
        # a modal action that matches no action_id or block_id falls back to view.callback_id
        (
            {"type": "block_actions", "view": {"callback_id": "incident_create"}, "actions": [{"action_id": "x", "block_id": "y"}]},
            ("callback_id", "incident_create"),
        ),
        # omnibot's rule: callback_id compared with the action's block_id
        ({"type": "block_actions", "actions": [{"action_id": "x", "block_id": "echo_submit"}]}, ("callback_id", "echo_submit")),
        # view_submission routes by view.callback_id
        ({"type": "view_submission", "view": {"callback_id": "incident_create"}}, ("callback_id", "incident_create")),
        # view_closed too
        ({"type": "view_closed", "view": {"callback_id": "slow_modal"}}, ("callback_id", "slow_modal")),
        # block_suggestion routes by its own action_id
        (suggestion(), ("action_id", "team_picker")),
        # a legacy message button routes by the top-level callback_id
        (legacy_button(), ("callback_id", "legacy_buttons")),
        # a top-level callback_id of a view type is not used
        ({"type": "view_submission", "callback_id": "incident_create", "view": {}}, None),
        # an action that matches nothing
        ({"type": "block_actions", "actions": [{"action_id": "x", "block_id": "y"}]}, None),
        # actions that are not objects are skipped
        ({"type": "block_actions", "actions": ["ack_alert", {"action_id": "ack_alert"}]}, ("action_id", "ack_alert")),
    ],
)
def test_routing_key_rules(handlers, payload, expected):
    route = interactive_routing.find_route(handlers, payload)

    assert (None if route is None else (route.key, route.value)) == expected


def test_handler_with_two_keys_needs_both(runtime):
    config = load_config_text(
        BASE_CONFIG
        + """
handlers:
  interactive_component_handlers:
    - action_id: "approve"
      block_id: "deploy_block"
      bots: {"test-team": ["testbot"]}
      callbacks: [{module: "tests.recorders:record"}]
""",
        environ=credentials_env(),
    )
    handlers = config.bot("test-team", "testbot").interactive_handlers
    matching = {"type": "block_actions", "actions": [{"action_id": "approve", "block_id": "deploy_block"}]}
    other_block = {"type": "block_actions", "actions": [{"action_id": "approve", "block_id": "other"}]}

    assert interactive_routing.find_route(handlers, matching) is not None
    assert interactive_routing.find_route(handlers, other_block) is None


@pytest.mark.parametrize(
    "changes, expected",
    [
        # not an enterprise install: team.id first
        ({"team": {"id": "T0TEST001"}, "original_message": {"team": "T0OTHER01"}, "user": {"team_id": "T0OTHER01"}}, "T0TEST001"),
        # not an enterprise install, no team: original_message.team
        ({"team": None, "original_message": {"team": "T0TEST001"}, "user": {"team_id": "T0OTHER01"}}, "T0TEST001"),
        # enterprise install without team: original_message.team first
        ({"is_enterprise_install": True, "team": None, "original_message": {"team": "T0TEST001"}, "user": {"team_id": "T0OTHER01"}}, "T0TEST001"),
        # enterprise install without team or original message: user.team_id
        ({"is_enterprise_install": True, "team": None, "original_message": None, "user": {"team_id": "T0TEST001"}}, "T0TEST001"),
        # enterprise install that still names its team: team.id
        ({"is_enterprise_install": True, "team": {"id": "T0TEST001"}, "user": {"team_id": "T0OTHER01"}}, "T0TEST001"),
        # nothing anywhere
        ({"team": None, "original_message": None, "user": {"team_id": None}}, None),
    ],
)
def test_team_id_rules(changes, expected):
    payload = legacy_button(**changes)

    assert team_id_of(payload) == expected


@pytest.mark.parametrize(
    "team, expected",
    [
        (None, {"id": "T0TEST001"}),  # team null
        ({"domain": "test-team"}, {"domain": "test-team", "id": "T0TEST001"}),  # team without id
        ({"id": "T0TEST001"}, {"id": "T0TEST001"}),  # already there
    ],
)
def test_team_id_injected_when_missing(team, expected):
    payload = {"team": team}
    inject_team_id(payload, "T0TEST001")

    assert payload["team"] == expected


# -- omnibot's responses ------------------------------------------------------


@pytest.mark.parametrize(
    "body_file, message",
    [
        ("body_missing_payload.form", "Missing the payload form field."),  # C17 A
        ("body_bad_json.form", "The payload form field is not valid JSON"),  # C17 B: truncated JSON
    ],
)
def test_c17_bad_payload_is_400(client, runtime, body_file, message):
    response = post(client, case_bytes(C17, body_file).decode())

    assert response.status_code == 400
    assert response.get_json()["status"] == "failure"
    assert response.get_json()["error"].startswith(message)
    assert drain(runtime) == []


def test_c17_ssl_check_smuggle_not_dispatched(client, runtime, slack, record_file):
    response = post(client, case_bytes(C17, "body_ssl_check_smuggle.form").decode(), sign=False)

    assert response.status_code == 200
    assert response.data == b""
    assert drain(runtime) == []
    assert recorders.read_calls(record_file) == []
    assert slack.calls() == []


@pytest.mark.parametrize(
    "payload, secret, sign, status, error",
    [
        # a type omnibot does not route
        ({"type": "workflow_step_edit", "team": {"id": "T0TEST001"}}, None, True, 400, "Unsupported type=workflow_step_edit in interactive component."),
        # neither a token nor a signature
        ({"type": "block_actions", "team": {"id": "T0TEST001"}, "actions": []}, None, False, 403, "No verification token in interactive component."),
        # no team id anywhere
        ({"type": "block_actions", "team": None, "api_app_id": "A0TEST001", "actions": []}, None, True, 403, "No team id found in interactive component."),
        # a team that is not configured
        ({"type": "block_actions", "team": {"id": "T0NOPE001"}, "api_app_id": "A0TEST001"}, None, True, 403, "Unsupported team"),
        # an app id that is not configured
        ({"type": "block_actions", "team": {"id": "T0TEST001"}, "api_app_id": "A0NOPE001"}, None, True, 403, "Token sent with interactive component does not match any configured app."),
        # the app of another team
        ({"type": "block_actions", "team": {"id": "T0TEST001"}, "api_app_id": "A0OTHER01"}, OTHER_TEAM_SECRET, True, 403, "The app that sent this interactive component is configured for another team."),
        # the right app, signed with the wrong secret
        ({"type": "block_actions", "team": {"id": "T0TEST001"}, "api_app_id": "A0TEST001"}, "not-the-secret", True, 403, "Request verification failed: bad signature, stale timestamp or wrong token."),
    ],
)
def test_rejections_have_omnibot_messages(client, runtime, payload, secret, sign, status, error):
    response = post(client, form(payload), secret=secret or "test-signing-secret", sign=sign)

    assert response.status_code == status
    assert response.get_json() == {"status": "failure", "error": error}
    assert drain(runtime) == []


def test_non_object_payload_is_400(client):
    response = post(client, urllib.parse.urlencode({"payload": "[1, 2]"}))

    assert response.status_code == 400
    assert response.get_json()["error"] == "The payload form field must be a JSON object, not list"


def test_no_handler_response(client, runtime):
    response = post(client, form(legacy_button(callback_id="nobody_listens")))

    assert response.status_code == 200
    assert response.get_json() == {"response_type": "ephemeral", "text": NO_HANDLER}
    assert drain(runtime) == []


# -- C15 through the web -------------------------------------------------------


@pytest.mark.parametrize(
    "payload_file, queued",
    [
        ("payload_message_autogen_block_id.json", 1),  # A
        ("payload_modal_block_id_only.json", 1),  # B
        ("payload_two_actions.json", 1),  # C
        ("payload_no_actions.json", 0),  # D
    ],
)
def test_c15_responds_empty_body(client, runtime, payload_file, queued):
    response = post(client, form(fresh(case_json(C15, payload_file))))

    assert response.status_code == 200
    assert response.data == b""
    assert len(drain(runtime)) == queued


def test_c15_worker_calls_matching_callback_once(client, runtime, record_file):
    post(client, form(fresh(case_json(C15, "payload_two_actions.json"))))
    post(client, form(fresh(case_json(C15, "payload_modal_block_id_only.json"))))
    process_queued(runtime)

    acks = recorders.read_calls(record_file, "record_ack")
    severities = recorders.read_calls(record_file, "record_severity")
    assert len(acks) == 1
    assert acks[0]["payload"]["routed_action"]["value"] == "alert-9"
    assert acks[0]["payload"]["channel"]["id"] == "C0TEST001"
    assert len(severities) == 1
    assert severities[0]["payload"]["routed_action"]["selected_option"]["value"] == "sev1"
    assert recorders.read_calls(record_file, "record_view") == []
    assert recorders.read_calls(record_file, "validate_incident") == []


# -- C13: synchronous view_submission ------------------------------------------


def test_c13_invalid_submission_errors_body(client, runtime, slack, record_file):
    response = post(client, form(fresh(case_json(C13, "payload_invalid.json"))))

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.data == b'{"response_action": "errors", "errors": {"title_block": "Title is required"}}'
    calls = recorders.read_calls(record_file, "validate_incident")
    assert len(calls) == 1
    payload = calls[0]["payload"]
    assert payload["view"]["state"]["values"]["title_block"]["title_input"]["value"] is None
    assert payload["view"]["private_metadata"] == '{"channel":"C0TEST001"}'
    assert payload["user"]["id"] == "U0TEST001"
    assert payload["team"]["id"] == "T0TEST001"
    # The rejected submission does not reach the queued callback.
    assert drain(runtime) == []
    assert slack.calls("response_url") == []
    assert slack.calls("chat.postMessage") == []


def test_c13_valid_submission_empty_body(client, runtime, record_file):
    response = post(client, form(fresh(case_json(C13, "payload_valid.json"))))

    assert response.status_code == 200
    assert response.data == b""
    process_queued(runtime)
    assert len(recorders.read_calls(record_file, "validate_incident")) == 1
    assert len(recorders.read_calls(record_file, "record_view")) == 1


def test_c13_slow_callback_abandoned(client, runtime, record_file, caplog, monkeypatch):
    monkeypatch.setattr(dialogs, "SYNC_DEADLINE", 0.2)
    payload = fresh(case_json(C13, "payload_invalid.json"))
    payload["view"]["callback_id"] = "slow_modal"
    response = post(client, form(payload))

    assert response.status_code == 200
    assert response.data == b""
    assert "timed out after" in caplog.text
    assert drain(runtime) == []

    # The callback finishes later in its thread; its result is only logged.
    deadline = time.monotonic() + 5
    while not recorders.read_calls(record_file, "slow_validate") and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.1)
    assert len(recorders.read_calls(record_file, "slow_validate_started")) == 1
    assert "its result is discarded" in caplog.text


def test_expired_deadline_starts_nothing(runtime, handlers, record_file, caplog):
    bot = runtime.config.bot("test-team", "testbot")
    payload = case_json(C13, "payload_invalid.json")
    route = interactive_routing.find_route(handlers, payload)
    body = dialogs.run_synchronous(
        lambda: InteractiveComponent(bot, payload, bot.trace, runtime.slack_data, route),
        route.handler.synchronous_callbacks,
        dialogs.Deadline(0),
        bot.trace,
    )

    assert body is None
    assert "was not started" in caplog.text
    assert recorders.read_calls(record_file) == []


def test_dialog_open_failure_keeps_response(client, runtime, slack, caplog):
    slack.add_fault("dialog.open", error="expired_trigger_id")
    payload = legacy_button(callback_id="ask_more", trigger_id=f"1.2.{uuid.uuid4().hex}")
    response = post(client, form(payload))

    assert response.status_code == 200
    assert response.get_json() == {"text": "Opening a form...", "response_type": "in_channel"}
    assert "Slack API dialog.open failed: expired_trigger_id" in caplog.text


def test_block_suggestion_options(client, runtime, record_file):
    response = post(client, form(suggestion(value="plat")))

    assert response.status_code == 200
    assert [option["value"] for option in response.get_json()["options"]] == ["plat1", "plat2"]
    assert drain(runtime) == []
    assert len(recorders.read_calls(record_file, "suggest_options")) == 1


def test_dialog_opened_and_canned_response(client, runtime, slack):
    payload = legacy_button(callback_id="ask_more", trigger_id=f"1.2.{uuid.uuid4().hex}")
    response = post(client, form(payload))

    assert response.status_code == 200
    assert response.get_json() == {"text": "Opening a form...", "response_type": "in_channel"}
    calls = slack.calls("dialog.open")
    assert len(calls) == 1
    assert calls[0]["args"]["trigger_id"] == payload["trigger_id"]
    assert json.loads(calls[0]["args"]["dialog"])["callback_id"] == "echo_submit"
    assert drain(runtime) == []


def test_dialog_submission_responds_empty(client, runtime):
    payload = {
        "type": "dialog_submission",
        "callback_id": "echo_submit",
        "api_app_id": "A0TEST001",
        "team": {"id": "T0TEST001"},
        "user": {"id": "U0TEST001"},
        "channel": {"id": "C0TEST001"},
        "submission": {"echo_element": "hello"},
        "response_url": "http://127.0.0.1:9/hooks/unused",
    }
    response = post(client, form(payload))

    assert response.status_code == 200
    assert response.data == b""
    assert len(drain(runtime)) == 1


def test_legacy_button_in_channel_response(client, runtime):
    response = post(client, form(legacy_button(trigger_id=f"1.2.{uuid.uuid4().hex}")))

    assert response.status_code == 200
    assert response.get_json() == {"response_type": "in_channel"}
    envelopes = drain(runtime)
    assert len(envelopes) == 1
    assert envelopes[0]["kind"] == "interactive_component"
    assert "token" not in envelopes[0]["payload"]


@pytest.mark.parametrize(
    "payload",
    [
        # a global shortcut
        {"type": "shortcut", "callback_id": "weekly_report", "trigger_id": "1.2.shortcut"},
        # a modal closed by the user; Slack sends no trigger_id
        {"type": "view_closed", "view": {"id": "V0TEST010", "callback_id": "weekly_report"}, "is_cleared": False},
    ],
)
def test_shortcut_and_view_closed_empty_body(client, runtime, payload):
    payload = dict(payload, api_app_id="A0TEST001", team={"id": "T0TEST001"}, user={"id": "U0TEST001"})
    response = post(client, form(payload))

    assert response.status_code == 200
    assert response.data == b""
    assert [envelope["payload"]["type"] for envelope in drain(runtime)] == [payload["type"]]


def test_worker_replies_in_component_thread(client, runtime, slack):
    payload = fresh(case_json(C15, "payload_message_autogen_block_id.json"))
    payload["actions"][0]["action_id"] = "reply_button"
    payload["response_url"] = slack.hook_url("reply-button")
    response = post(client, form(payload))
    process_queued(runtime)

    assert response.status_code == 200
    hooks = slack.calls("response_url")
    assert [call["args"] for call in hooks] == [{"text": "thread reply", "response_type": "ephemeral"}]
    posts = slack.calls("chat.postMessage")
    assert len(posts) == 1
    assert posts[0]["args"]["channel"] == "C0TEST001"
    assert posts[0]["args"]["thread_ts"] == "1764871100.001600"


def test_duplicate_trigger_queued_once(client, runtime):
    body = form(fresh(case_json(C15, "payload_message_autogen_block_id.json")))
    first = post(client, body)
    second = post(client, body)

    assert first.status_code == second.status_code == 200
    assert first.data == second.data == b""
    assert len(drain(runtime)) == 1


def test_enterprise_install_routed_to_team(client, runtime, record_file):
    payload = fresh(case_json(C15, "payload_message_autogen_block_id.json"))
    payload.update(is_enterprise_install=True, team=None, enterprise={"id": "E0TEST001", "name": "grid"})
    response = post(client, form(payload))

    assert response.status_code == 200
    envelopes = drain(runtime)
    assert [envelope["team_id"] for envelope in envelopes] == ["T0TEST001"]
    assert envelopes[0]["payload"]["team"] == {"id": "T0TEST001"}


# -- the container --------------------------------------------------------------


def test_container_fields_for_block_actions(runtime, handlers):
    bot = runtime.config.bot("test-team", "testbot")
    component = case_json(C15, "payload_two_actions.json")
    component["message"]["text"] = "Alert for <@U0TEST001> in <#C0TEST001>"
    route = interactive_routing.find_route(handlers, component)
    container = InteractiveComponent(bot, component, bot.trace, runtime.slack_data, route)
    payload = container.payload

    assert payload["omnibot_payload_type"] == "interactive_component"
    assert payload["type"] == "block_actions"
    assert payload["callback_id"] == "aB3x+"
    assert payload["routed_by"] == {"key": "action_id", "value": "ack_alert"}
    assert payload["team"] == {"name": "test-team", "team_id": "T0TEST001", "id": "T0TEST001"}
    assert payload["parsed_user"]["name"] == "alice"
    assert payload["parsed_channel"]["name"] == "general"
    assert payload["message"]["parsed_text"] == "Alert for @alice in #general"
    assert payload["message"]["users"] == {"<@U0TEST001>": "alice"}
    assert payload["message"]["parsed_user"] is None
    assert payload["actions"] == component["actions"]
    assert container.channel_id == "C0TEST001"
    assert container.reply_thread_ts == "1764871100.001600"
    assert json.loads(json.dumps(payload)) == payload


def test_container_for_view_submission(runtime):
    bot = runtime.config.bot("test-team", "testbot")
    component = case_json(C13, "payload_valid.json")
    container = InteractiveComponent(bot, component, bot.trace, runtime.slack_data)
    payload = container.payload

    assert payload["callback_id"] == "incident_create"
    assert payload["view"]["state"]["values"]["title_block"]["title_input"]["value"] == "db latency"
    assert payload["channel"] is None
    assert payload["parsed_channel"] is None
    assert payload["message"] is None
    assert container.channel_id is None
    assert container.response_url is None


def test_interactive_queue_outage_logged(client, runtime, caplog, monkeypatch):
    def unavailable(envelope):
        raise BackendUnavailable("queue file is locked")

    monkeypatch.setattr(runtime.queue, "put", unavailable)
    caplog.set_level(logging.ERROR)

    response = post(client, form(fresh(legacy_button())))

    assert response.status_code == 503
    assert response.get_json()["error"] == "Queue backend unavailable; retry later."
    errors = [record for record in caplog.records if "queue backend unavailable" in record.getMessage()]
    assert [record.name for record in errors] == ["omnibot.inbound.interactive"]
