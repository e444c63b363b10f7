"""Shared test helpers: Slack-shaped requests, the case files, free ports."""

import json
import os
import socket
import time

from omnibot.signing import signature_headers

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
SIGNING_SECRET = "test-signing-secret"
LEGACY_TOKEN = "legacy-verification-token-placeholder"
BOT_TOKEN = "xoxb-test-bot-token"
USER_TOKEN = "xoxp-test-user-token"
APP_ID = "A0TEST001"
TEAM_ID = "T0TEST001"

BASE_CONFIG = """
authorization:
  checks:
    - module: "omnibot.authnz:allowed_paths"
      kwargs:
        paths: ["^/api/"]
teams:
  "test-team": "T0TEST001"
bots:
  "test-team":
    "testbot": "A0TEST001"
primary_bot:
  "test-team": "testbot"
"""


def case_file(case, name):
    """Return the path of a request body from ``tests/cases/<case>/``."""
    return os.path.join(HERE, "cases", case, name)


def case_json(case, name):
    with open(case_file(case, name), encoding="utf-8") as body:
        return json.load(body)


def case_bytes(case, name):
    with open(case_file(case, name), "rb") as body:
        return body.read()


def fresh_event(body, ts=None):
    """Return a copy of a case event body with a new ``event_id`` (and ``ts`` when given)."""
    body = json.loads(json.dumps(body))
    suffix = f"{time.time_ns()}"
    body["event_id"] = f"{body.get('event_id', 'Ev')}-{suffix}"
    if ts:
        body["event"]["ts"] = ts
        body["event"]["event_ts"] = ts
    return body


def credentials_env(signing_secret=SIGNING_SECRET, verification_token=None, app_id=APP_ID):
    env = {f"CREDENTIALS_SLACK_OAUTH_BOT_TOKEN_{app_id}": BOT_TOKEN, f"CREDENTIALS_SLACK_OAUTH_TOKEN_{app_id}": USER_TOKEN}
    if signing_secret:
        env[f"CREDENTIALS_SLACK_SIGNING_SECRET_{app_id}"] = signing_secret
    if verification_token:
        env[f"CREDENTIALS_SLACK_VERIFICATION_TOKEN_{app_id}"] = verification_token
    return env


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def signed(body, secret=SIGNING_SECRET, timestamp=None, content_type="application/json"):
    """Return ``(raw bytes, headers)`` for a body signed like Slack signs it."""
    if isinstance(body, (dict, list)):
        raw = json.dumps(body).encode()
    elif isinstance(body, str):
        raw = body.encode()
    else:
        raw = body
    headers = {"Content-Type": content_type}
    headers.update(signature_headers(secret, raw, timestamp))
    return raw, headers


def message_event(text, channel="C0TEST001", user="U0TEST001", ts=None, event_id=None, **event_fields):
    """Return an ``event_callback`` body with a ``message`` event."""
    ts = ts or f"{time.time():.6f}"
    event = {
        "type": "message",
        "user": user,
        "text": text,
        "ts": ts,
        "channel": channel,
        "channel_type": "im" if channel.startswith("D") else "channel",
        "event_ts": ts,
    }
    event.update(event_fields)
    return {
        "token": LEGACY_TOKEN,
        "team_id": TEAM_ID,
        "api_app_id": APP_ID,
        "event": event,
        "type": "event_callback",
        "event_id": event_id or f"Ev{ts.replace('.', '')}",
        "event_time": int(float(ts)),
    }


def wait_until(predicate, timeout=15.0, interval=0.05, message="condition"):
    """Poll ``predicate`` until it returns a truthy value; raise AssertionError on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {message}")


class FakeClock:
    """A clock for code that takes a ``clock`` callable: it returns ``now``, which moves only when a test advances it."""

    def __init__(self, now=1000.0):
        self.now = now

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds
