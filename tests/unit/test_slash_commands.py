"""Slash commands: the HTTP responses, the queued envelope and the SlashCommand container.

The app runs in the Flask test client with SQLite backends; Slack lookups,
dialogs and response_url posts go to a fake Slack on loopback.
"""

import json
import os
import urllib.parse
import uuid

import pytest

from omnibot.app import create_app
from omnibot.config.loader import load_config_text
from omnibot.containers import SlashCommand
from omnibot.fake_slack import FakeSlack
from omnibot.processing.processor import Processor
from omnibot.runtime import Runtime
from omnibot.settings import Settings
from tests import recorders
from tests.support import BASE_CONFIG, LEGACY_TOKEN, case_bytes, credentials_env, signed

FORM = "application/x-www-form-urlencoded"
PATH = "/api/v1/slack/slash_command"
CASE = "C12-slash-empty-text"
CASE_HOOK = "https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT0TEST001%2F0000000003%2Fplaceholder"
CASE_TRIGGER = "0000000000.0000000000.placeholdertrigger"
TOKENBOT_TOKEN = "tokenbot-legacy-token"
OTHER_TEAM_SECRET = "other-team-signing-secret"
NO_HANDLER = "This slash command does not have any omnibot handler associated with it."

CONFIG = (
    BASE_CONFIG.replace('"test-team": "T0TEST001"', '"test-team": "T0TEST001"\n  "other-team": "T0OTHER01"').replace(
        '"testbot": "A0TEST001"',
        '"testbot": "A0TEST001"\n    "otherbot": "A0TEST002"\n    "tokenbot": "A0TEST003"\n'
        '  "other-team":\n    "otherteambot": "A0OTHER01"',
    )
    + """
handlers:
  slash_command_handlers:
    - command: "/oncall"
      response_type: "in_channel"
      bots: {"test-team": ["testbot"]}
      callbacks: [{module: "tests.recorders:record"}]
    - command: "/canned"
      canned_response: "Working on it..."
      bots: {"test-team": ["testbot"]}
      callbacks: [{module: "tests.recorders:record"}]
    - command: "/quiet"
      bots: {"test-team": ["testbot"]}
      callbacks: [{module: "tests.recorders:respond", kwargs: {text: "quiet reply"}}]
    - command: "/shared"
      bots: {"test-team": ["testbot", "otherbot", "tokenbot"]}
      callbacks: [{module: "tests.recorders:record"}]
    - command: "/form"
      bots: {"test-team": ["testbot"]}
      dialog:
        title: "Echo dialog"
        submit_label: "submit"
        callback_id: "echo_submit"
        elements: [{type: "text", label: "Echo this text", name: "echo_element"}]
    - command: "/modal"
      bots: {"test-team": ["testbot"]}
      dialog:
        type: "modal"
        callback_id: "incident_create"
        title: {type: "plain_text", text: "New incident"}
        blocks: []
    - command: "/instant"
      bots: {"test-team": ["testbot"]}
      callbacks:
        - module: "tests.recorders:suggest_options"
          synchronous: true
        - module: "tests.recorders:record"
"""
)


@pytest.fixture(scope="module")
def slack():
    fake = FakeSlack().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def runtime(slack, tmp_path_factory):
    folder = tmp_path_factory.mktemp("slash")
    environ = {
        **credentials_env(),
        **credentials_env(app_id="A0TEST002"),
        **credentials_env(signing_secret=None, verification_token=TOKENBOT_TOKEN, app_id="A0TEST003"),
        **credentials_env(signing_secret=OTHER_TEAM_SECRET, app_id="A0OTHER01"),
    }
    config = load_config_text(CONFIG, environ=environ)
    runtime = Runtime(Settings(data_dir=str(folder), slack_api_url=slack.api_url), config)
    yield runtime
    runtime.close()


@pytest.fixture(scope="module")
def client(runtime):
    return create_app(runtime).test_client()


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
    """Remove and return the envelopes waiting in the queue."""
    envelopes = []
    while True:
        delivery = runtime.queue.get(timeout=0)
        if delivery is None:
            return envelopes
        runtime.queue.ack(delivery)
        envelopes.append(delivery.body)


def process_queued(runtime):
    """Run the worker's processing on every queued envelope, as ``omnibot worker`` would."""
    processor = Processor(runtime)
    for envelope in drain(runtime):
        processor.process(envelope, uuid.uuid4().hex)


def command_form(command="/oncall", text="", app_id="A0TEST001", **overrides):
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
        "api_app_id": app_id,
        "is_enterprise_install": "false",
        "response_url": "http://127.0.0.1:9/hooks/unused",
        "trigger_id": f"1.2.{uuid.uuid4().hex}",
    }
    fields.update(overrides)
    return urllib.parse.urlencode({key: value for key, value in fields.items() if value is not None})


def case_form(name, slack, hook="c12"):
    """Return a C12 body with the fake's hook as response_url and a fresh trigger_id."""
    body = case_bytes(CASE, name).decode()
    body = body.replace(CASE_HOOK, urllib.parse.quote(slack.hook_url(hook), safe=""))
    return body.replace(CASE_TRIGGER, f"1.2.{uuid.uuid4().hex}")


def post(client, body, secret="test-signing-secret", sign=True, content_type=FORM):
    if sign:
        raw, headers = signed(body, secret=secret, content_type=content_type)
    else:
        raw, headers = body.encode(), {"Content-Type": content_type}
    return client.post(PATH, data=raw, headers=headers)


# -- C12: empty and blank text, unknown command ------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "body.form",  # A: text= empty, issued in a DM
        "body_whitespace.form",  # B: text is spaces and a U+00A0
    ],
)
def test_c12_empty_text_response_and_payload(client, runtime, slack, record_file, name):
    response = post(client, case_form(name, slack))

    assert response.status_code == 200
    assert response.get_json() == {"response_type": "in_channel"}
    envelopes = drain(runtime)
    assert len(envelopes) == 1
    assert envelopes[0]["kind"] == "slash_command"
    assert envelopes[0]["app_id"] == "A0TEST001"
    assert "token" not in envelopes[0]["payload"]

    runtime.queue.put(envelopes[0])
    process_queued(runtime)
    calls = recorders.read_calls(record_file, "record")
    assert len(calls) == 1
    payload = calls[0]["payload"]
    assert payload["command"] == "/oncall"
    assert payload["text"] == urllib.parse.parse_qs(case_bytes(CASE, name).decode(), keep_blank_values=True)["text"][0]
    assert payload["args"] == ""
    assert payload["channel_id"] == "D0TEST001"


def test_c12_unknown_command_no_handler(client, runtime, slack):
    response = post(client, case_form("body_unknown.form", slack))

    assert response.status_code == 200
    assert response.get_json() == {"response_type": "ephemeral", "text": NO_HANDLER}
    assert drain(runtime) == []


# -- omnibot's responses ------------------------------------------------------


@pytest.mark.parametrize(
    "body, sign, secret, status, error",
    [
        # neither a token nor a signature
        (command_form(token=None), False, None, 403, "No verification token in slash command."),
        # no team_id field
        (command_form(team_id=None), True, None, 403, "No team_id in slash command."),
        # a team that is not configured
        (command_form(team_id="T0NOPE001"), True, None, 403, "Unsupported team"),
        # an app id that is not configured
        (command_form(app_id="A0NOPE001"), True, None, 403, "Token sent with slash command does not match any configured app."),
        # no app id, and a legacy token that no app has
        (command_form(app_id=None, token="wrong"), False, None, 403, "Token sent with slash command does not match any configured app."),
        # the app of another team, named by its app id
        (command_form(app_id="A0OTHER01"), True, OTHER_TEAM_SECRET, 403, "The app that sent this slash command is configured for another team."),
        # no app id, signed by the app of another team
        (command_form(app_id=None), True, OTHER_TEAM_SECRET, 403, "The app that sent this slash command is configured for another team."),
        # the right app, signed with the wrong secret
        (command_form(), True, "not-the-secret", 403, "Request verification failed: bad signature, stale timestamp or wrong token."),
    ],
)
def test_rejections_have_omnibot_messages(client, runtime, body, sign, secret, status, error):
    response = post(client, body, secret=secret or "test-signing-secret", sign=sign)

    assert response.status_code == status
    assert response.get_json() == {"status": "failure", "error": error}
    assert drain(runtime) == []


@pytest.mark.parametrize(
    "content_type, body, status",
    [
        ("application/json", json.dumps({"command": "/oncall"}), 415),  # JSON instead of a form
        ("text/plain", "command=/oncall", 415),  # a form body with the wrong type
        (FORM, "text=%FF&command=/oncall", 400),  # a percent-encoded byte that is not UTF-8
    ],
)
def test_unreadable_body_is_json_error(client, runtime, content_type, body, status):
    response = post(client, body, content_type=content_type)

    assert response.status_code == status
    assert response.get_json()["status"] == "failure"
    assert drain(runtime) == []


@pytest.mark.parametrize("path", [PATH, "/api/v1/slack/interactive"])
def test_oversized_body_is_413(client, runtime, path):
    body = "text=" + "x" * (runtime.settings.max_body_bytes + 1)
    raw, headers = signed(body, content_type=FORM)
    response = client.post(path, data=raw, headers=headers)

    assert response.status_code == 413
    assert response.get_json()["status"] == "failure"
    assert drain(runtime) == []


def test_ssl_check_unsigned_empty_body(client, runtime, slack):
    body = case_bytes("C17-malformed-and-oversized-bodies", "body_ssl_check.form").decode()
    response = post(client, body, sign=False)

    assert response.status_code == 200
    assert response.data == b""
    assert drain(runtime) == []
    assert slack.calls() == []


def test_canned_response_body(client, runtime):
    response = post(client, command_form("/canned"))

    assert response.status_code == 200
    assert response.get_json() == {"text": "Working on it...", "response_type": "ephemeral"}
    assert len(drain(runtime)) == 1


def test_ephemeral_handler_empty_body(client, runtime):
    response = post(client, command_form("/quiet"))

    assert response.status_code == 200
    assert response.data == b""
    assert len(drain(runtime)) == 1


def test_duplicate_trigger_queued_once(client, runtime):
    body = command_form("/canned")
    first = post(client, body)
    second = post(client, body)

    assert first.get_json() == second.get_json()
    assert len(drain(runtime)) == 1


@pytest.mark.parametrize(
    "app_id, token, sign",
    [
        ("A0TEST001", LEGACY_TOKEN, True),  # named by api_app_id, signed
        ("A0TEST002", LEGACY_TOKEN, True),  # the second bot of the handler, signed
        ("A0TEST003", TOKENBOT_TOKEN, False),  # the third bot, verified by its legacy token only
        (None, TOKENBOT_TOKEN, False),  # no api_app_id: found by its legacy token
    ],
)
def test_command_for_several_bots_routes_each(client, runtime, app_id, token, sign):
    expected_app = app_id or "A0TEST003"
    response = post(client, command_form("/shared", app_id=app_id, token=token), secret="test-signing-secret", sign=sign)

    assert response.status_code == 200
    envelopes = drain(runtime)
    assert [envelope["app_id"] for envelope in envelopes] == [expected_app]


def test_command_of_one_bot_not_routed_for_another(client, runtime):
    response = post(client, command_form("/oncall", app_id="A0TEST002"))

    assert response.get_json() == {"response_type": "ephemeral", "text": NO_HANDLER}
    assert drain(runtime) == []


@pytest.mark.parametrize(
    "command, method, argument",
    [
        ("/form", "dialog.open", "dialog"),  # a legacy dialog
        ("/modal", "views.open", "view"),  # a Block Kit modal
    ],
)
def test_dialog_opened_inline(client, runtime, slack, command, method, argument):
    body = command_form(command)
    trigger_id = urllib.parse.parse_qs(body)["trigger_id"][0]
    response = post(client, body)

    assert response.status_code == 200
    assert response.data == b""
    calls = slack.calls(method)
    assert len(calls) == 1
    assert calls[0]["args"]["trigger_id"] == trigger_id
    assert json.loads(calls[0]["args"][argument])["callback_id"] in ("echo_submit", "incident_create")
    assert drain(runtime) == []


def test_synchronous_callback_is_answer(client, runtime, record_file):
    response = post(client, command_form("/instant", text="ab"))

    assert response.status_code == 200
    assert [option["value"] for option in response.get_json()["options"]] == ["ab1", "ab2"]
    assert len(recorders.read_calls(record_file, "suggest_options")) == 1

    process_queued(runtime)
    assert len(recorders.read_calls(record_file, "record")) == 1
    assert len(recorders.read_calls(record_file, "suggest_options")) == 1


# -- the worker side ------------------------------------------------------------


def test_worker_posts_responses_then_actions(client, runtime, slack):
    post(client, command_form("/quiet", response_url=slack.hook_url("quiet")))
    process_queued(runtime)

    hooks = slack.calls("response_url")
    assert [call["path"] for call in hooks] == ["/hooks/quiet"]
    assert hooks[0]["args"] == {"text": "quiet reply", "response_type": "ephemeral"}
    posts = slack.calls("chat.postMessage")
    assert [call["args"]["channel"] for call in posts] == ["C0TEST001"]
    assert "thread_ts" not in posts[0]["args"]


def test_worker_failed_response_url_still_runs_actions(client, runtime, slack, caplog):
    # 404 is not retried (see tests/unit/test_response_url_retries.py for 500 and 503).
    slack.add_fault("response_url", status=404, error="expired_url")
    post(client, command_form("/quiet", response_url=slack.hook_url("broken")))
    process_queued(runtime)

    assert [call["status"] for call in slack.calls("response_url")] == [404]
    assert len(slack.calls("chat.postMessage")) == 1
    assert "response_url returned HTTP 404" in caplog.text


def test_worker_response_url_timeout_logged(client, runtime, slack, caplog, monkeypatch):
    from omnibot.processing import results

    monkeypatch.setattr(results, "RESPONSE_URL_TIMEOUT", 0.2)
    slack.add_fault("response_url", delay=1.0)
    post(client, command_form("/quiet", response_url=slack.hook_url("slow")))
    process_queued(runtime)

    assert "posting to response_url failed: ReadTimeout" in caplog.text
    assert len(slack.calls("chat.postMessage")) == 1


# -- the container --------------------------------------------------------------


def test_container_parses_markup(runtime):
    bot = runtime.config.bot("test-team", "testbot")
    fields = urllib.parse.parse_qs(
        command_form(text="page <@U0TEST001> in <#C0TEST001|general> about <!here>  :fire:\u00a0now"),
        keep_blank_values=True,
    )
    fields = {key: values[0] for key, values in fields.items()}
    container = SlashCommand(bot, fields, bot.trace, runtime.slack_data)
    payload = container.payload

    assert payload["omnibot_payload_type"] == "slash_command"
    assert payload["parsed_text"] == "page @alice in #general about @here  :fire: now"
    assert payload["args"] == "page @alice in #general about @here :fire: now"
    assert payload["users"] == {"<@U0TEST001>": "alice"}
    assert payload["channels"] == {"<#C0TEST001|general>": "general"}
    assert payload["specials"] == {"<!here>": "@here"}
    assert payload["emojis"] == {":fire:": "fire"}
    assert payload["parsed_user"]["name"] == "alice"
    assert payload["channel"]["name"] == "general"
    assert payload["bot"] == {"name": "testbot", "bot_id": "A0TEST001"}
    assert payload["team"] == {"name": "test-team", "team_id": "T0TEST001"}
    assert json.loads(json.dumps(payload)) == payload


@pytest.mark.parametrize(
    "fields",
    [
        {},  # no fields at all
        {"text": "   \u00a0 ", "channel_id": "C0UNKNOWN", "user_id": "U0UNKNOWN"},  # blank text, unknown ids
    ],
)
def test_container_tolerates_missing_fields(runtime, fields):
    bot = runtime.config.bot("test-team", "testbot")
    container = SlashCommand(bot, fields, bot.trace, runtime.slack_data)

    assert container.payload["args"] == ""
    assert isinstance(container.payload["channel"], dict)
    assert container.reply_thread_ts is None


def test_container_emoji_url_from_emoji_list(runtime):
    bot = runtime.config.bot("test-team", "testbot")
    container = SlashCommand(bot, {"command": "/bigemoji", "text": "x"}, bot.trace, runtime.slack_data)
    emoji = runtime.clients.call(bot, "emoji.list", {})["emoji"]
    name, url = next(iter(emoji.items()))

    assert container.emoji_url(name) == url
    assert container.emoji_url("no-such-emoji") is None
