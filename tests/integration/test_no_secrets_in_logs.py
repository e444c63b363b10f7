"""No credential reaches a log line, even at DEBUG, through gunicorn and a worker process.

The stack gets a known signing secret, verification token, bot token and
user token. An event, a slash command and an interactive payload carry the
verification token in their ``token`` field, a Slack API error makes the
worker retry with the user token, and a request signed with a wrong secret
is rejected. Then every line that the web and worker processes logged is
searched for each credential.
"""

import json
import urllib.parse
import uuid

import pytest

from omnibot.fake_slack import FakeSlack
from tests.integration.stack import Stack
from tests.support import BASE_CONFIG, BOT_TOKEN, USER_TOKEN, credentials_env, message_event, wait_until

SIGNING_SECRET = "signing-secret-0f3a9c7e51"
VERIFICATION_TOKEN = "verification-token-8d2b6e14"
FORM = "application/x-www-form-urlencoded"

CONFIG = BASE_CONFIG + """
handlers:
  message_handlers:
    - match: "hello"
      match_type: "command"
      bots: {"test-team": ["testbot"]}
      callbacks: [{module: "tests.recorders:record_and_reply", kwargs: {text: "hi"}}]
  slash_command_handlers:
    - command: "/respond"
      bots: {"test-team": ["testbot"]}
      callbacks: [{module: "tests.recorders:respond", kwargs: {text: "handled"}}]
  interactive_component_handlers:
    - callback_id: "approve_buttons"
      bots: {"test-team": ["testbot"]}
      callbacks: [{module: "tests.recorders:record"}]
"""

SECRETS = {
    "signing secret": SIGNING_SECRET,
    "verification token": VERIFICATION_TOKEN,
    "bot token": BOT_TOKEN,
    "user token": USER_TOKEN,
}


@pytest.fixture(scope="module")
def slack():
    fake = FakeSlack().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def logs(slack, tmp_path_factory):
    """Run the requests through a DEBUG-level stack, stop it and return everything it logged."""
    folder = tmp_path_factory.mktemp("no-secrets")
    env = {
        **credentials_env(signing_secret=SIGNING_SECRET, verification_token=VERIFICATION_TOKEN),
        "LOG_LEVEL": "DEBUG",
        "LOG_FORMAT": "json",
    }
    stack = Stack(str(folder), CONFIG, slack.api_url, env=env)
    try:
        stack.start()
        run_requests(stack, slack)
    finally:
        stack.stop()
    return stack.logs()


def run_requests(stack, slack):
    # The bot token fails, so the worker retries the post with the user token.
    slack.add_fault("chat.postMessage", error="not_in_channel")
    event = message_event("hello", channel="C0TEST001", user="U0TEST001")
    event["token"] = VERIFICATION_TOKEN
    event["event"]["text"] = "<@U0BOT0001> hello"
    assert stack.post_event(event, secret=SIGNING_SECRET).status_code == 200

    command = {
        "token": VERIFICATION_TOKEN,
        "team_id": "T0TEST001",
        "api_app_id": "A0TEST001",
        "channel_id": "C0TEST001",
        "user_id": "U0TEST001",
        "command": "/respond",
        "text": "now",
        "response_url": slack.hook_url("respond"),
        "trigger_id": f"1.2.{uuid.uuid4().hex}",
    }
    body = urllib.parse.urlencode(command)
    response = stack.post("/api/v1/slack/slash_command", body, secret=SIGNING_SECRET, content_type=FORM)
    assert response.status_code == 200

    payload = {
        "type": "interactive_message",
        "token": VERIFICATION_TOKEN,
        "callback_id": "approve_buttons",
        "api_app_id": "A0TEST001",
        "team": {"id": "T0TEST001"},
        "user": {"id": "U0TEST001"},
        "channel": {"id": "C0TEST001"},
        "actions": [{"name": "approve", "type": "button", "value": "yes"}],
        "response_url": slack.hook_url("buttons"),
        "trigger_id": f"1.2.{uuid.uuid4().hex}",
    }
    body = urllib.parse.urlencode({"payload": json.dumps(payload)})
    assert stack.post("/api/v1/slack/interactive", body, secret=SIGNING_SECRET, content_type=FORM).status_code == 200

    rejected = stack.post_event(message_event("hello"), secret="a-wrong-signing-secret")
    assert rejected.status_code == 403

    stack.wait_calls("record_and_reply")
    stack.wait_calls("respond")
    stack.wait_calls("record")
    wait_until(lambda: len(slack.calls("chat.postMessage")) >= 2, message="the post with the user token")


@pytest.mark.parametrize("name", sorted(SECRETS))
def test_secret_absent_from_logs(logs, name):
    assert SECRETS[name] not in logs


def test_logs_cover_the_requests(logs):
    # Without these lines the absence checks would prove nothing.
    assert '"level": "DEBUG"' in logs
    assert "processing message" in logs
    assert "Slack API chat.postMessage failed: not_in_channel" in logs
    assert "retrying with the user token" in logs
    assert "rejected POST /api/v1/slack/event with 403" in logs
