"""The internal API under gunicorn, behind the Envoy checks, against a fake Slack over HTTP.

Every response is also checked against docs/openapi.yaml.
"""

import os

import pytest
from openapi_core import OpenAPI
from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse

from omnibot.fake_slack import FakeSlack
from tests.integration.stack import Stack
from tests.support import REPO

CONFIG = """
authorization:
  checks:
    - module: "omnibot.authnz.envoy_checks:envoy_internal_check"
    - module: "omnibot.authnz.envoy_checks:envoy_permissions_check"
  permissions:
    lookups:
      methods: ["GET"]
      paths: ["^/api/v1/slack/get_"]
    messages:
      methods: ["POST"]
      paths:
        - "^/api/v1/slack/send_im/test-team/testbot/"
        - "^/api/v2/slack/action/test-team/testbot$"
  bindings:
    "^deploys$":
      - "lookups"
      - "messages"
    "^directory$":
      - "lookups"
teams:
  "test-team": "T0TEST001"
bots:
  "test-team":
    "testbot": "A0TEST001"
"""

API = "/api/v1/slack"
DEPLOYS = {"x-envoy-internal": "true", "x-envoy-downstream-service-cluster": "deploys"}
DIRECTORY = {"x-envoy-internal": "true", "x-envoy-downstream-service-cluster": "directory"}


@pytest.fixture(scope="module")
def fake_slack():
    fake = FakeSlack().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, fake_slack):
    stack = Stack(str(tmp_path_factory.mktemp("internal_api")), CONFIG, fake_slack.api_url, workers=0)
    stack.start()
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def openapi():
    return OpenAPI.from_file_path(os.path.join(REPO, "docs", "openapi.yaml"))


@pytest.fixture
def call(stack, openapi, fake_slack):
    """Return a function that sends one request to gunicorn and checks the response against the OpenAPI description."""
    fake_slack.clear_calls()
    fake_slack.clear_faults()

    def send(method, path, headers, **kwargs):
        response = stack.session.request(method, stack.url + path, headers=headers, timeout=15, **kwargs)
        assert response.headers["Content-Type"].startswith("application/json"), response.text
        openapi.validate_response(RequestsOpenAPIRequest(response.request), RequestsOpenAPIResponse(response))
        return response

    return send


def test_get_team(call):
    response = call("GET", f"{API}/get_team/test-team", DIRECTORY)

    assert response.status_code == 200
    assert response.json() == {"team_id": "T0TEST001"}


def test_get_user(call):
    response = call("GET", f"{API}/get_user/test-team/testbot/alice@example.com", DIRECTORY)

    assert response.status_code == 200
    assert response.json() == {
        "user": {"email": "alice@example.com", "name": "alice", "team_id": "T0TEST001", "user_id": "U0TEST001"}
    }


def test_get_channel(call):
    response = call("GET", f"{API}/get_channel/test-team/testbot/ops-private", DIRECTORY)

    assert response.status_code == 200
    assert response.json()["id"] == "G0TEST001"


def test_get_ims(call):
    response = call("GET", f"{API}/get_ims/test-team/testbot", DIRECTORY)

    assert response.status_code == 200
    assert [im["id"] for im in response.json()["ims"]] == ["D0TEST001"]


def test_send_im(call, fake_slack):
    body = {"action": "chat.postMessage", "kwargs": {"text": "@here deploy 42 finished", "omnibot_parse": {"text": ["specials"]}}}

    response = call("POST", f"{API}/send_im/test-team/testbot/alice@example.com", DEPLOYS, json=body)

    assert response.status_code == 200
    assert response.json()["channel"] == "D0TEST001"
    posts = fake_slack.calls("chat.postMessage")
    assert len(posts) == 1
    assert posts[0]["args"]["channel"] == "D0TEST001"
    assert posts[0]["args"]["text"] == "<!here> deploy 42 finished"


def test_send_im_unknown_user(call, fake_slack):
    response = call("POST", f"{API}/send_im/test-team/testbot/nobody@example.com", DEPLOYS, json={"text": "hi"})

    assert response.status_code == 404
    assert response.json()["email"] == "nobody@example.com"
    assert fake_slack.calls("chat.postMessage") == []


def test_action(call, fake_slack):
    body = {"action": "chat.postMessage", "kwargs": {"channel": "C0TEST001", "text": "deploy 42 starts"}}

    response = call("POST", "/api/v2/slack/action/test-team/testbot", DEPLOYS, json=body)

    assert response.status_code == 200
    assert response.json()["ok"] is True
    assert fake_slack.calls("chat.postMessage")[0]["args"] == {"channel": "C0TEST001", "text": "deploy 42 starts"}


def test_action_slack_error(call, fake_slack):
    fake_slack.add_fault("chat.postMessage", error="channel_not_found", times=2)
    body = {"action": "chat.postMessage", "kwargs": {"channel": "C0NOPE001", "text": "hi"}}

    response = call("POST", "/api/v2/slack/action/test-team/testbot", DEPLOYS, json=body)

    assert response.status_code == 400
    assert response.json() == {"ok": False, "error": "channel_not_found"}


def test_action_bad_body(call, fake_slack):
    response = call("POST", "/api/v2/slack/action/test-team/testbot", DEPLOYS, data=b"not json")

    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]
    assert fake_slack.calls() == []


@pytest.mark.parametrize(
    "method, path, headers",
    [
        # directory may look up but not post.
        ("POST", "/api/v2/slack/action/test-team/testbot", DIRECTORY),
        # deploys without the internal header is an external caller.
        ("GET", f"{API}/get_team/test-team", {"x-envoy-downstream-service-cluster": "deploys"}),
        # No identity at all.
        ("GET", f"{API}/get_team/test-team", {"x-envoy-internal": "true"}),
    ],
)
def test_denied(call, fake_slack, method, path, headers):
    response = call(method, path, headers, json={"action": "chat.postMessage", "kwargs": {}})

    assert response.status_code == 403
    assert response.json()["status"] == "failure"
    assert fake_slack.calls() == []


def test_denial_logged_without_secrets(call, stack):
    headers = dict(DIRECTORY, Authorization="Bearer s3cr3t-in-header")

    response = call("POST", "/api/v2/slack/action/test-team/testbot", headers, json={"action": "chat.postMessage", "kwargs": {}})

    assert response.status_code == 403
    logs = stack.logs()
    assert "denied POST /api/v2/slack/action/test-team/testbot for caller 'directory'" in logs
    assert "s3cr3t" not in logs
