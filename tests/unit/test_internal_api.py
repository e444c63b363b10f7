"""The internal API routes, through the Flask test client, against a fake Slack over HTTP.

Every response is also checked against docs/openapi.yaml.
"""

import json
import os

import pytest
from openapi_core import OpenAPI
from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest, WerkzeugOpenAPIResponse
from werkzeug.test import EnvironBuilder

from omnibot.app import create_app
from omnibot.backends import open_cache, open_queue
from omnibot.backends.sqlite_cache import SqliteCache
from omnibot.config import load_config_text
from omnibot.errors import BackendUnavailable
from omnibot.fake_slack import FakeSlack, default_workspace
from omnibot.runtime import Runtime
from omnibot.settings import Settings
from omnibot.slack.data import SlackData
from tests.support import APP_ID, BASE_CONFIG, REPO, credentials_env, free_port

OPENAPI_PATH = os.path.join(REPO, "docs", "openapi.yaml")

# Distinct last four characters, so the fake's call log shows which token a call used.
BOT_TOKEN = "xoxb-internal-api-b0t1"
USER_TOKEN = "xoxp-internal-api-u5r2"

API = "/api/v1/slack"
ACTION = "/api/v2/slack/action/test-team/testbot"
SEND_IM_BOB = f"{API}/send_im/test-team/testbot/bob@example.com"


# -- fixtures ---------------------------------------------------------------


@pytest.fixture(scope="module")
def openapi():
    return OpenAPI.from_file_path(OPENAPI_PATH)


@pytest.fixture
def fake_slack():
    fake = FakeSlack().start()
    yield fake
    fake.stop()


def build_runtime(tmp_path, slack_api_url, cache=None):
    environ = credentials_env()
    environ[f"CREDENTIALS_SLACK_OAUTH_BOT_TOKEN_{APP_ID}"] = BOT_TOKEN
    environ[f"CREDENTIALS_SLACK_OAUTH_TOKEN_{APP_ID}"] = USER_TOKEN
    data_dir = str(tmp_path / "data")
    settings = Settings(slack_api_url=slack_api_url, data_dir=data_dir, environ=environ)
    config = load_config_text(BASE_CONFIG, environ=environ)
    cache = cache if cache is not None else open_cache(None, data_dir)
    return Runtime(settings, config, open_queue(None, data_dir), cache)


@pytest.fixture
def runtime(tmp_path, fake_slack):
    runtime = build_runtime(tmp_path, fake_slack.api_url)
    yield runtime
    runtime.close()


@pytest.fixture
def client(runtime, openapi):
    return CheckedClient(create_app(runtime).test_client(), openapi)


@pytest.fixture
def start_with_workspace(tmp_path, openapi):
    """Return a function that starts a fake Slack serving a workspace and a client of an app using it."""
    started = []

    def start(workspace):
        fake = FakeSlack(workspace).start()
        runtime = build_runtime(tmp_path, fake.api_url)
        started.append((fake, runtime))
        return fake, CheckedClient(create_app(runtime).test_client(), openapi)

    yield start
    for fake, runtime in started:
        runtime.close()
        fake.stop()


class CheckedClient:
    """A Flask test client whose every response must match the OpenAPI description."""

    def __init__(self, client, openapi):
        self._client = client
        self._openapi = openapi

    def get(self, path, **kwargs):
        return self._checked(self._client.get(path, **kwargs))

    def post(self, path, **kwargs):
        response = self._checked(self._client.post(path, **kwargs))
        if response.status_code == 200:
            # The app accepted the body, so the description must accept it too.
            request = EnvironBuilder(path=path, method="POST", **kwargs).get_request()
            self._openapi.validate_request(WerkzeugOpenAPIRequest(request))
        return response

    def _checked(self, response):
        assert response.is_json, response.data
        self._openapi.validate_response(
            RequestWithoutBody(response.request), WerkzeugOpenAPIResponse(response)
        )
        return response


class RequestWithoutBody(WerkzeugOpenAPIRequest):
    """The request side of a response check; the app has already consumed the body."""

    @property
    def body(self):
        return None


# -- get_team ---------------------------------------------------------------


@pytest.mark.parametrize(
    "team_name, status, body",
    [
        # A configured team returns its Slack id.
        ("test-team", 200, {"team_id": "T0TEST001"}),
        # An unknown team has omnibot's message.
        ("other-team", 404, {"error": "provided team_name is not configured."}),
    ],
)
def test_get_team(client, team_name, status, body):
    response = client.get(f"{API}/get_team/{team_name}")

    assert response.status_code == status
    assert response.get_json() == body


# -- unknown team or bot on every bot route -----------------------------------


BOT_ROUTES = [
    # (method, path template, body)
    ("GET", API + "/get_user/{team}/{bot}/alice@example.com", None),
    ("GET", API + "/get_channel/{team}/{bot}/general", None),
    ("GET", API + "/get_ims/{team}/{bot}", None),
    ("POST", API + "/send_im/{team}/{bot}/alice@example.com", {"text": "hi"}),
    ("POST", "/api/v2/slack/action/{team}/{bot}", {"action": "chat.postMessage", "kwargs": {}}),
]


@pytest.mark.parametrize("method, template, body", BOT_ROUTES)
@pytest.mark.parametrize(
    "team, bot, error",
    [
        # The team is not in teams.
        ("other-team", "testbot", "provided team name was not found."),
        # The team exists but has no such bot.
        ("test-team", "otherbot", "provided bot name was not found."),
    ],
)
def test_bot_routes_unknown_team_or_bot(client, fake_slack, method, template, body, team, bot, error):
    path = template.format(team=team, bot=bot)

    if method == "GET":
        response = client.get(path)
    else:
        response = client.post(path, json=body)

    assert response.status_code == 404
    assert response.get_json()["error"] == error
    assert fake_slack.calls() == []


def test_send_im_unknown_bot_names_request(client):
    response = client.post(f"{API}/send_im/test-team/otherbot/alice@example.com", json={"text": "hi"})

    assert response.status_code == 404
    assert response.get_json() == {
        "error": "provided bot name was not found.",
        "team_name": "test-team",
        "bot_name": "otherbot",
        "email": "alice@example.com",
    }


# -- get_user -------------------------------------------------------------------


@pytest.mark.parametrize(
    "email, user",
    [
        # A user with a display name.
        ("alice@example.com", {"email": "alice@example.com", "name": "alice", "team_id": "T0TEST001", "user_id": "U0TEST001"}),
        # An Enterprise Grid W id.
        ("bob@example.com", {"email": "bob@example.com", "name": "bob", "team_id": "T0TEST001", "user_id": "W0TEST002"}),
        # Emails are compared without case; the response has the profile's spelling.
        ("Alice@Example.COM", {"email": "alice@example.com", "name": "alice", "team_id": "T0TEST001", "user_id": "U0TEST001"}),
    ],
)
def test_get_user_found(client, email, user):
    response = client.get(f"{API}/get_user/test-team/testbot/{email}")

    assert response.status_code == 200
    assert response.get_json() == {"user": user}


def test_get_user_name_falls_back_to_user_name(start_with_workspace):
    workspace = default_workspace()
    workspace["users"].append(
        {"id": "U0TEST009", "name": "carol", "profile": {"display_name": "", "email": "carol@example.com"}}
    )
    _, client = start_with_workspace(workspace)

    response = client.get(f"{API}/get_user/test-team/testbot/carol@example.com")

    assert response.status_code == 200
    assert response.get_json()["user"]["name"] == "carol"


@pytest.mark.parametrize(
    "user",
    [
        # A deactivated account.
        {"id": "U0GONE001", "name": "gone", "deleted": True, "profile": {"email": "gone@example.com"}},
        # A bot user that has an email.
        {"id": "U0BOT0009", "name": "robot", "is_bot": True, "profile": {"email": "gone@example.com"}},
    ],
)
def test_get_user_skips_deleted_and_bots(start_with_workspace, user):
    workspace = default_workspace()
    workspace["users"].append(user)
    _, client = start_with_workspace(workspace)

    response = client.get(f"{API}/get_user/test-team/testbot/gone@example.com")

    assert response.status_code == 404
    assert response.get_json() == {"error": "unable to find slack user for given email."}


def test_get_user_unknown_email(client):
    response = client.get(f"{API}/get_user/test-team/testbot/nobody@example.com")

    assert response.status_code == 404
    assert response.get_json() == {"error": "unable to find slack user for given email."}


def test_get_user_cached_after_first_lookup(client, fake_slack):
    first = client.get(f"{API}/get_user/test-team/testbot/alice@example.com")
    second = client.get(f"{API}/get_user/test-team/testbot/ALICE@example.com")

    assert first.get_json() == second.get_json()
    assert len(fake_slack.calls("users.lookupByEmail")) == 1
    assert fake_slack.calls("users.info") == []


def test_get_user_slack_error_is_502(client, fake_slack):
    fake_slack.add_fault("users.lookupByEmail", error="missing_scope")

    response = client.get(f"{API}/get_user/test-team/testbot/alice@example.com")

    assert response.status_code == 502
    assert response.get_json() == {
        "error": "Slack method users.lookupByEmail failed: missing_scope",
        "slack_error": "missing_scope",
    }


def test_get_user_uses_bulk_cache(client, fake_slack, monkeypatch):
    requested = []

    def user_id_by_email(self, bot, email, read_through=True):
        requested.append(email)
        return "W0TEST002"

    monkeypatch.setattr(SlackData, "user_id_by_email", user_id_by_email, raising=False)

    response = client.get(f"{API}/get_user/test-team/testbot/someone@example.com")

    assert response.status_code == 200
    assert response.get_json()["user"]["user_id"] == "W0TEST002"
    assert requested == ["someone@example.com"]
    assert fake_slack.calls("users.lookupByEmail") == []


def test_get_user_bulk_cache_miss_calls_slack(client, fake_slack, monkeypatch):
    monkeypatch.setattr(SlackData, "user_id_by_email", lambda self, bot, email, read_through=True: None, raising=False)

    response = client.get(f"{API}/get_user/test-team/testbot/alice@example.com")

    assert response.status_code == 200
    assert len(fake_slack.calls("users.lookupByEmail")) == 1


# -- get_channel ----------------------------------------------------------------


@pytest.mark.parametrize(
    "name, channel_id",
    [
        # A public channel.
        ("general", "C0TEST001"),
        # A leading # is ignored (sent as %23).
        ("%23general", "C0TEST001"),
        # A private channel.
        ("ops-private", "G0TEST001"),
        # A user id finds the bot's IM with that user, as in omnibot.
        ("U0TEST001", "D0TEST001"),
    ],
)
def test_get_channel_found(client, name, channel_id):
    response = client.get(f"{API}/get_channel/test-team/testbot/{name}")

    assert response.status_code == 200
    assert response.get_json()["id"] == channel_id


def test_get_channel_returns_conversation_object(client):
    response = client.get(f"{API}/get_channel/test-team/testbot/general")

    channel = response.get_json()
    assert channel["name"] == "general"
    assert channel["is_channel"] is True
    assert channel["is_archived"] is False


@pytest.mark.parametrize(
    "name",
    [
        # No such conversation.
        "nowhere",
        # An archived channel is not found.
        "old-news",
        # Only a leading # is dropped, so an empty name finds nothing.
        "%23",
    ],
)
def test_get_channel_not_found(start_with_workspace, name):
    workspace = default_workspace()
    workspace["channels"].append({"id": "C0OLD0001", "name": "old-news", "is_channel": True, "is_archived": True})
    _, client = start_with_workspace(workspace)

    response = client.get(f"{API}/get_channel/test-team/testbot/{name}")

    assert response.status_code == 404
    assert response.get_json() == {"error": "provided channel_name was not found."}


def test_get_channel_reads_later_pages(start_with_workspace):
    workspace = default_workspace()
    for number in range(450):
        workspace["channels"].append({"id": f"C1{number:08d}", "name": f"team-{number}", "is_channel": True})
    fake_slack, client = start_with_workspace(workspace)

    response = client.get(f"{API}/get_channel/test-team/testbot/team-449")

    assert response.status_code == 200
    assert response.get_json()["id"] == "C100000449"
    calls = fake_slack.calls("conversations.list")
    assert len(calls) == 3
    assert "cursor" not in calls[0]["args"]
    assert calls[1]["args"]["cursor"]


def test_get_channel_caches_names_of_pages_read(client, fake_slack):
    client.get(f"{API}/get_channel/test-team/testbot/general")
    fake_slack.clear_calls()

    response = client.get(f"{API}/get_channel/test-team/testbot/ops-private")

    assert response.status_code == 200
    assert fake_slack.calls() == []


def test_get_channel_without_private_scopes_searches_public(client, fake_slack):
    fake_slack.add_fault("conversations.list", error="missing_scope")

    response = client.get(f"{API}/get_channel/test-team/testbot/general")

    assert response.status_code == 200
    types = [call["args"]["types"] for call in fake_slack.calls("conversations.list")]
    assert types == ["public_channel,private_channel,mpim,im", "public_channel"]


def test_get_channel_slack_error_is_502(client, fake_slack):
    fake_slack.add_fault("conversations.list", error="invalid_auth")

    response = client.get(f"{API}/get_channel/test-team/testbot/general")

    assert response.status_code == 502
    assert response.get_json()["slack_error"] == "invalid_auth"


def test_get_channel_uses_bulk_cache(client, fake_slack, monkeypatch):
    names = {"general": "C0TEST001"}
    monkeypatch.setattr(SlackData, "channel_id_by_name", lambda self, bot, name: names.get(name), raising=False)
    monkeypatch.setattr(SlackData, "refreshed_at", lambda self, bot, kind: 1.0)

    found = client.get(f"{API}/get_channel/test-team/testbot/general")
    missing = client.get(f"{API}/get_channel/test-team/testbot/ops-private")

    assert found.status_code == 200
    assert found.get_json()["id"] == "C0TEST001"
    assert missing.status_code == 404
    assert fake_slack.calls("conversations.list") == []


# -- get_ims ----------------------------------------------------------------------


def test_get_ims_lists_ims(client, fake_slack):
    response = client.get(f"{API}/get_ims/test-team/testbot")

    assert response.status_code == 200
    ims = response.get_json()["ims"]
    assert [im["id"] for im in ims] == ["D0TEST001"]
    assert ims[0]["user"] == "U0TEST001"
    assert fake_slack.calls("conversations.list")[0]["args"]["types"] == "im"


def test_get_ims_empty(start_with_workspace):
    workspace = default_workspace()
    workspace["channels"] = [channel for channel in workspace["channels"] if not channel.get("is_im")]
    _, client = start_with_workspace(workspace)

    response = client.get(f"{API}/get_ims/test-team/testbot")

    assert response.status_code == 200
    assert response.get_json() == {"ims": []}


def test_get_ims_uses_bulk_cache(client, fake_slack, monkeypatch):
    ims = [{"id": "D0BULK001", "is_im": True, "user": "W0TEST002"}]
    monkeypatch.setattr(SlackData, "ims", lambda self, bot: ims, raising=False)
    monkeypatch.setattr(SlackData, "refreshed_at", lambda self, bot, kind: 1.0)

    response = client.get(f"{API}/get_ims/test-team/testbot")

    assert response.get_json() == {"ims": ims}
    assert fake_slack.calls() == []


# -- send_im ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        # omnibot's envelope.
        {"action": "chat.postMessage", "kwargs": {"text": "deploy finished"}},
        # The kwargs of chat.postMessage alone.
        {"text": "deploy finished"},
        # kwargs without action: the action defaults to chat.postMessage.
        {"kwargs": {"text": "deploy finished"}},
        # A channel from the caller is replaced by the IM.
        {"action": "chat.postMessage", "kwargs": {"channel": "C0TEST001", "text": "deploy finished"}},
    ],
)
def test_send_im_posts_to_im(client, fake_slack, body):
    response = client.post(SEND_IM_BOB, json=body)

    assert response.status_code == 200
    answer = response.get_json()
    assert answer["ok"] is True
    opened = fake_slack.calls("conversations.open")
    assert [call["args"] for call in opened] == [{"users": "W0TEST002"}]
    posts = fake_slack.calls("chat.postMessage")
    assert len(posts) == 1
    assert posts[0]["args"]["text"] == "deploy finished"
    assert posts[0]["args"]["channel"] == answer["channel"]
    assert answer["channel"].startswith("D")


def test_send_im_reuses_existing_im(client, fake_slack):
    response = client.post(f"{API}/send_im/test-team/testbot/alice@example.com", json={"text": "hi"})

    assert response.status_code == 200
    assert response.get_json()["channel"] == "D0TEST001"


def test_send_im_posts_as_bot(client, fake_slack):
    client.post(SEND_IM_BOB, json={"text": "hi"})

    post = fake_slack.calls("chat.postMessage")[0]
    assert post["headers"]["token_last4"] == BOT_TOKEN[-4:]


def test_send_im_applies_omnibot_parse(client, fake_slack):
    body = {"kwargs": {"text": "@here deploy", "omnibot_parse": {"text": ["specials"]}}}

    response = client.post(SEND_IM_BOB, json=body)

    assert response.status_code == 200
    args = fake_slack.calls("chat.postMessage")[0]["args"]
    assert args["text"] == "<!here> deploy"
    assert "omnibot_parse" not in args


def test_send_im_unknown_email(client, fake_slack):
    response = client.post(f"{API}/send_im/test-team/testbot/nobody@example.com", json={"text": "hi"})

    assert response.status_code == 404
    assert response.get_json() == {
        "error": "unable to find slack user for given email.",
        "team_name": "test-team",
        "bot_name": "testbot",
        "email": "nobody@example.com",
    }
    assert fake_slack.calls("chat.postMessage") == []


def test_send_im_open_fails(client, fake_slack):
    fake_slack.add_fault("conversations.open", error="cannot_dm_bot")

    response = client.post(SEND_IM_BOB, json={"text": "hi"})

    assert response.status_code == 404
    assert response.get_json() == {
        "error": "unable to find IM channel.",
        "slack_error": "cannot_dm_bot",
        "team_name": "test-team",
        "bot_name": "testbot",
        "email": "bob@example.com",
    }
    assert fake_slack.calls("chat.postMessage") == []


def test_send_im_slack_error_is_400(client, fake_slack):
    fake_slack.add_fault("chat.postMessage", error="invalid_blocks")

    response = client.post(SEND_IM_BOB, json={"text": "hi", "blocks": [{"type": "nonsense"}]})

    assert response.status_code == 400
    assert response.get_json() == {"ok": False, "error": "invalid_blocks"}


def test_send_im_reuses_bulk_cache_im(client, fake_slack, monkeypatch):
    monkeypatch.setattr(
        SlackData,
        "im_for_user",
        lambda self, bot, user_id: {"id": "D0TEST001", "user": user_id, "is_user_deleted": False},
        raising=False,
    )

    response = client.post(f"{API}/send_im/test-team/testbot/alice@example.com", json={"text": "hi"})

    assert response.status_code == 200
    assert fake_slack.calls("conversations.open") == []
    assert fake_slack.calls("chat.postMessage")[0]["args"]["channel"] == "D0TEST001"


def test_send_im_bulk_im_of_deleted_user_reopens(client, fake_slack, monkeypatch):
    monkeypatch.setattr(
        SlackData,
        "im_for_user",
        lambda self, bot, user_id: {"id": "D0STALE01", "user": user_id, "is_user_deleted": True},
        raising=False,
    )

    response = client.post(f"{API}/send_im/test-team/testbot/alice@example.com", json={"text": "hi"})

    assert response.status_code == 200
    assert len(fake_slack.calls("conversations.open")) == 1
    assert fake_slack.calls("chat.postMessage")[0]["args"]["channel"] == "D0TEST001"


@pytest.mark.parametrize(
    "raw, message",
    [
        # Not JSON at all.
        (b"text=hi", "not valid JSON"),
        # An empty body.
        (b"", "not valid JSON"),
        # JSON, but not an object.
        (b'["hi"]', "must be a JSON object"),
        # An envelope without kwargs.
        (b'{"action": "chat.postMessage"}', "kwargs missing"),
        # kwargs of the wrong type.
        (b'{"action": "chat.postMessage", "kwargs": "hi"}', "kwargs must be a JSON object"),
        # action of the wrong type.
        (b'{"action": 7, "kwargs": {}}', "action must be a string"),
    ],
)
def test_send_im_bad_body(client, fake_slack, raw, message):
    response = client.post(SEND_IM_BOB, data=raw, content_type="application/json")

    assert response.status_code == 400
    assert message in response.get_json()["error"]
    assert fake_slack.calls("chat.postMessage") == []


# -- action (v2) -----------------------------------------------------------------


def test_action_returns_slack_response(client, fake_slack):
    body = {"action": "chat.postMessage", "kwargs": {"channel": "C0TEST001", "text": "deploy starts"}}

    response = client.post(ACTION, json=body)

    assert response.status_code == 200
    answer = response.get_json()
    assert answer["ok"] is True
    assert answer["channel"] == "C0TEST001"
    assert answer["message"]["text"] == "deploy starts"
    post = fake_slack.calls("chat.postMessage")[0]
    assert post["args"] == {"channel": "C0TEST001", "text": "deploy starts"}
    assert post["headers"]["token_last4"] == BOT_TOKEN[-4:]


def test_action_encodes_structured_kwargs(client, fake_slack):
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*hi*"}}]
    body = {"action": "chat.postMessage", "kwargs": {"channel": "C0TEST001", "blocks": blocks, "unfurl_links": False}}

    response = client.post(ACTION, json=body)

    assert response.status_code == 200
    args = fake_slack.calls("chat.postMessage")[0]["args"]
    assert json.loads(args["blocks"]) == blocks
    assert args["unfurl_links"] == "false"


def test_action_any_method(client, fake_slack):
    body = {"action": "conversations.setTopic", "kwargs": {"channel": "C0TEST001", "topic": "release day"}}

    response = client.post(ACTION, json=body)

    assert response.status_code == 200
    assert response.get_json()["channel"]["topic"]["value"] == "release day"


def test_action_slack_error_is_400(client, fake_slack):
    fake_slack.add_fault("chat.postMessage", error="is_archived")
    body = {"action": "chat.postMessage", "kwargs": {"channel": "C0TEST001", "text": "hi"}}

    response = client.post(ACTION, json=body)

    assert response.status_code == 400
    assert response.get_json() == {"ok": False, "error": "is_archived"}


def test_action_falls_back_to_user_token(client, fake_slack):
    fake_slack.add_fault("chat.postMessage", error="not_in_channel")
    body = {"action": "chat.postMessage", "kwargs": {"channel": "C0TEST001", "text": "hi"}}

    response = client.post(ACTION, json=body)

    assert response.status_code == 200
    tokens = [call["headers"]["token_last4"] for call in fake_slack.calls("chat.postMessage")]
    assert tokens == [BOT_TOKEN[-4:], USER_TOKEN[-4:]]


def test_action_no_fallback_for_other_errors(client, fake_slack):
    fake_slack.add_fault("chat.postMessage", error="msg_too_long")
    body = {"action": "chat.postMessage", "kwargs": {"channel": "C0TEST001", "text": "hi"}}

    response = client.post(ACTION, json=body)

    assert response.status_code == 400
    assert len(fake_slack.calls("chat.postMessage")) == 1


@pytest.mark.parametrize(
    "omnibot_parse_place",
    [
        # Inside kwargs, as omnibot's example has it.
        "kwargs",
        # Next to kwargs, as omnibot's parameter list has it.
        "body",
    ],
)
def test_action_applies_omnibot_parse(client, fake_slack, omnibot_parse_place):
    instructions = {"text": ["specials"]}
    kwargs = {"channel": "C0TEST001", "text": "@channel and @everyone, see #general"}
    body = {"action": "chat.postMessage", "kwargs": kwargs}
    if omnibot_parse_place == "kwargs":
        kwargs["omnibot_parse"] = instructions
    else:
        body["omnibot_parse"] = instructions

    response = client.post(ACTION, json=body)

    assert response.status_code == 200
    args = fake_slack.calls("chat.postMessage")[0]["args"]
    assert args["text"] == "<!channel> and <!everyone>, see #general"
    assert "omnibot_parse" not in args


@pytest.mark.parametrize(
    "raw, message",
    [
        # Not JSON.
        (b"{action: chat.postMessage}", "not valid JSON"),
        # Not UTF-8.
        (b'{"action": "\xff"}', "not valid UTF-8"),
        # A JSON array.
        (b"[]", "must be a JSON object"),
        # Both fields missing.
        (b"{}", "action and kwargs missing"),
        # kwargs missing.
        (b'{"action": "chat.postMessage"}', "kwargs missing"),
        # action missing.
        (b'{"kwargs": {"channel": "C0TEST001"}}', "action missing"),
        # action is not a string.
        (b'{"action": ["chat.postMessage"], "kwargs": {}}', "action must be a string"),
        # action is null.
        (b'{"action": null, "kwargs": {}}', "not null"),
        # action is not a Web API method name: no path tricks.
        (b'{"action": "../oauth.access", "kwargs": {}}', "is not a Slack Web API method name"),
        # action without a dot.
        (b'{"action": "postMessage", "kwargs": {}}', "is not a Slack Web API method name"),
        # kwargs is an array.
        (b'{"action": "chat.postMessage", "kwargs": []}', "kwargs must be a JSON object"),
        # kwargs is null.
        (b'{"action": "chat.postMessage", "kwargs": null}', "kwargs must be a JSON object"),
    ],
)
def test_action_bad_body(client, fake_slack, raw, message):
    response = client.post(ACTION, data=raw, content_type="application/json")

    assert response.status_code == 400
    assert message in response.get_json()["error"]
    assert fake_slack.calls() == []


def test_action_body_too_large(tmp_path, fake_slack, openapi):
    runtime = build_runtime(tmp_path, fake_slack.api_url)
    app = create_app(runtime)
    app.config["MAX_CONTENT_LENGTH"] = 1024
    client = CheckedClient(app.test_client(), openapi)
    body = {"action": "chat.postMessage", "kwargs": {"channel": "C0TEST001", "text": "x" * 2048}}

    response = client.post(ACTION, json=body)

    assert response.status_code == 413
    assert fake_slack.calls() == []
    runtime.close()


def test_action_slack_unreachable_is_502(tmp_path, openapi):
    # Nothing listens on this port, so every attempt is refused.
    runtime = build_runtime(tmp_path, f"http://127.0.0.1:{free_port()}/api/")
    client = CheckedClient(create_app(runtime).test_client(), openapi)
    body = {"action": "chat.postMessage", "kwargs": {"channel": "C0TEST001", "text": "hi"}}

    response = client.post(ACTION, json=body)

    assert response.status_code == 502
    assert response.get_json()["ok"] is False
    assert response.get_json()["error"] == "request_failed"
    runtime.close()


class UnreachableCache(SqliteCache):
    """A cache whose server is down: every read and write raises BackendUnavailable."""

    def get(self, key):
        raise BackendUnavailable("cache at 127.0.0.1:6379 refused the connection")

    def get_many(self, keys):
        raise BackendUnavailable("cache at 127.0.0.1:6379 refused the connection")


@pytest.mark.parametrize(
    "path",
    [
        # A user lookup reads the cache first.
        f"{API}/get_user/test-team/testbot/alice@example.com",
        # So does a channel lookup.
        f"{API}/get_channel/test-team/testbot/general",
    ],
)
def test_cache_unavailable_is_503(tmp_path, fake_slack, openapi, path):
    runtime = build_runtime(tmp_path, fake_slack.api_url, cache=UnreachableCache(str(tmp_path / "cache.db")))
    client = CheckedClient(create_app(runtime).test_client(), openapi)

    response = client.get(path)

    assert response.status_code == 503
    assert "the cache backend is unavailable" in response.get_json()["error"]
    runtime.close()


@pytest.mark.parametrize(
    "method, path",
    [
        # A lookup route does not take POST.
        ("POST", f"{API}/get_team/test-team"),
        # The action route does not take GET.
        ("GET", ACTION),
    ],
)
def test_wrong_method_is_json_405(runtime, method, path):
    client = create_app(runtime).test_client()

    response = client.open(path, method=method)

    assert response.status_code == 405
    assert response.is_json
    assert response.get_json()["status"] == "failure"
