"""Malformed requests to every route of omnibot under gunicorn: never a 5xx, always a JSON error.

Hypothesis generates the requests. Their bodies are not JSON, JSON of the
wrong shape, or valid Slack bodies with fields removed or of the wrong type.
Others carry huge strings, deeply nested JSON, invalid UTF-8, a wrong
content type, a wrong method or a broken form encoding. Each request to a Slack route is
signed correctly or not, so both the verification and the code behind it
see the input.

Every handler in the config only records its call and returns nothing, so
no generated ``response_url`` is ever posted to. Slack Web API calls go to
the fake Slack on loopback.
"""

import json
import os
import time
import urllib.parse

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omnibot.app import create_app
from omnibot.config import load_config
from omnibot.fake_slack import FakeSlack
from omnibot.runtime import Runtime
from omnibot.settings import Settings
from tests.integration.stack import Stack
from tests.support import APP_ID, BASE_CONFIG, LEGACY_TOKEN, TEAM_ID, credentials_env, message_event, signed

EXAMPLES_PER_ROUTE = 100

# The authorization checks let every route through, so each one's own code sees the input.
CONFIG = BASE_CONFIG.replace('paths: ["^/api/"]', 'paths: ["^/api/", "^/metrics$", "^/static/"]')

HANDLERS = """
handlers:
  message_handlers:
    - match: "fuzz"
      match_type: "command"
      bots: {"test-team": ["testbot"]}
      callbacks: [{module: "tests.recorders:record"}]
  slash_command_handlers:
    - command: "/fuzz"
      bots: {"test-team": ["testbot"]}
      callbacks: [{module: "tests.recorders:record"}]
  interactive_component_handlers:
    - callback_id: "fuzz"
      bots: {"test-team": ["testbot"]}
      callbacks: [{module: "tests.recorders:record"}]
"""

# Every route of the app, with the methods it serves. test_route_table_is_complete
# fails when the app gains a route that is missing here.
ROUTES = {
    "/healthcheck": ("GET",),
    "/metrics": ("GET",),
    "/static/<path:filename>": ("GET",),
    "/api/v1/slack/event": ("POST",),
    "/api/v1/slack/slash_command": ("POST",),
    "/api/v1/slack/interactive": ("POST",),
    "/api/v1/slack/get_team/<team_name>": ("GET",),
    "/api/v1/slack/get_user/<team_name>/<bot_name>/<email>": ("GET",),
    "/api/v1/slack/get_channel/<team_name>/<bot_name>/<channel_name>": ("GET",),
    "/api/v1/slack/get_ims/<team_name>/<bot_name>": ("GET",),
    "/api/v1/slack/send_im/<team_name>/<bot_name>/<email>": ("POST",),
    "/api/v2/slack/action/<team_name>/<bot_name>": ("POST",),
    "/metrics": ("GET",),
}

SLACK_ROUTES = ("/api/v1/slack/event", "/api/v1/slack/slash_command", "/api/v1/slack/interactive")

# Path values that reach the configured team, bot, users and channels, so the
# code behind the lookups runs as well as the "not found" responses.
KNOWN_PATH_VALUES = {
    "team_name": ("test-team",),
    "bot_name": ("testbot",),
    "email": ("alice@example.com", "nobody@example.com"),
    "channel_name": ("general", "C0TEST001", "ops-private"),
    "path:filename": ("index.html",),
}

FORM = "application/x-www-form-urlencoded"
CONTENT_TYPES = (
    "application/json",
    FORM,
    "text/plain",
    "multipart/form-data; boundary=omnibot",
    "application/json; charset=latin-1",
    "application/xml",
    "",
)

HUGE_SIZES = (100_000, 1_048_000, 1_048_577, 2_500_000)

BROKEN_FORMS = (
    b"%ZZ",  # a percent escape that is not hex
    b"payload=%FF%FE",  # escapes that decode to invalid UTF-8
    b"payload=%7B",  # a lone "{"
    b"&&==&",
    b"command=%2Ffuzz&team_id",  # a field without "="
    b"a=1&" * 400,  # more fields than a Slack form has
    b"payload=" + b"%5B" * 5000,  # deeply nested JSON in the payload field
    b"text=\xff\xfe&team_id=T0TEST001",  # raw invalid UTF-8
    b"payload=null",
    b"payload=%22a%20string%22",
)

# -- valid bodies that the strategies break ------------------------------------------


def slash_fields():
    return {
        "token": LEGACY_TOKEN,
        "team_id": TEAM_ID,
        "api_app_id": APP_ID,
        "channel_id": "C0TEST001",
        "user_id": "U0TEST001",
        "command": "/fuzz",
        "text": "hello",
        "response_url": "http://127.0.0.1:9/hooks/unused",
        "trigger_id": "1.2.fuzz",
    }


def interactive_payload():
    return {
        "type": "interactive_message",
        "token": LEGACY_TOKEN,
        "api_app_id": APP_ID,
        "callback_id": "fuzz",
        "team": {"id": TEAM_ID, "domain": "test-team"},
        "user": {"id": "U0TEST001", "name": "alice", "team_id": TEAM_ID},
        "channel": {"id": "C0TEST001", "name": "general"},
        "actions": [{"name": "ack", "type": "button", "value": "1"}],
        "trigger_id": "1.2.fuzz",
        "response_url": "http://127.0.0.1:9/hooks/unused",
    }


def template(rule):
    """Return a valid JSON body of a POST route, or None for routes without a body."""
    if rule == "/api/v1/slack/event":
        return message_event("<@U0BOT0001> fuzz")
    if rule == "/api/v1/slack/slash_command":
        return slash_fields()
    if rule == "/api/v1/slack/interactive":
        return interactive_payload()
    if rule.startswith("/api/v1/slack/send_im/"):
        return {"action": "chat.postMessage", "kwargs": {"text": "hi"}}
    if rule.startswith("/api/v2/slack/action/"):
        return {"action": "chat.postMessage", "kwargs": {"channel": "C0TEST001", "text": "hi"}}
    return None


# -- strategies -----------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)


@st.composite
def mutated(draw, value, depth=0):
    """Return ``value`` with some fields removed or replaced by values of other types, at any depth."""
    if isinstance(value, dict):
        result = {}
        for key, item in value.items():
            choice = draw(st.sampled_from(("keep", "keep", "keep", "drop", "replace", "recurse")))
            if choice == "keep":
                result[key] = item
            elif choice == "replace":
                result[key] = draw(json_values)
            elif choice == "recurse" and depth < 3:
                result[key] = draw(mutated(item, depth + 1))
        return result
    if isinstance(value, list):
        return [draw(mutated(item, depth + 1)) for item in value]
    return draw(st.one_of(st.just(value), json_values))


def deeply_nested(depth, opener):
    if opener == "[":
        return b"[" * depth + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


@st.composite
def bodies(draw, rule):
    """Return ``(raw body, content type that fits it)``."""
    valid = template(rule)
    # Broken valid bodies four times as often as each other kind, because they reach the most code.
    kinds = ("mutated",) * 4 + ("binary", "text", "json", "mutated_form", "nested", "huge", "broken_form", "empty")
    kind = draw(st.sampled_from(kinds))

    if kind == "binary":
        return draw(st.binary(max_size=512)), "application/octet-stream"
    if kind == "text":
        return draw(st.text(max_size=512)).encode("utf-8", "surrogatepass"), "text/plain"
    if kind == "json":
        return json.dumps(draw(json_values)).encode(), "application/json"
    if kind == "nested":
        depth = draw(st.sampled_from((64, 1_000, 50_000, 200_000)))
        nested = deeply_nested(depth, draw(st.sampled_from(("[", "{"))))
        if rule == "/api/v1/slack/interactive" and draw(st.booleans()):
            return b"payload=" + urllib.parse.quote_from_bytes(nested).encode(), FORM
        return nested, "application/json"
    if kind == "huge":
        size = draw(st.sampled_from(HUGE_SIZES))
        body = dict(valid or {}, text="y" * size)
        return json.dumps(body).encode(), "application/json"
    if kind == "broken_form":
        return draw(st.sampled_from(BROKEN_FORMS)), FORM
    if kind == "empty":
        return b"", draw(st.sampled_from(CONTENT_TYPES))

    broken = draw(mutated(valid if valid is not None else {"field": "value"}))
    if kind == "mutated_form" or rule in ("/api/v1/slack/slash_command", "/api/v1/slack/interactive"):
        if rule == "/api/v1/slack/interactive":
            return urllib.parse.urlencode({"payload": json.dumps(broken)}).encode(), FORM
        fields = {str(key): value if isinstance(value, str) else json.dumps(value) for key, value in broken.items()}
        return urllib.parse.urlencode(fields).encode(), FORM
    return json.dumps(broken).encode(), "application/json"


def path_values(name):
    # Known values three times as often as random text, so most requests get past the lookups.
    return st.sampled_from(("known", "known", "known", "random")).flatmap(
        lambda pick: st.sampled_from(KNOWN_PATH_VALUES[name]) if pick == "known" else st.text(min_size=1, max_size=60)
    )


@st.composite
def requests_for(draw, rule):
    """Return the keyword arguments of one ``requests.request`` call to ``rule``."""
    path = rule
    for part in rule.split("/"):
        if part.startswith("<"):
            value = urllib.parse.quote(draw(path_values(part[1:-1])), safe="")
            path = path.replace(part, value, 1)

    # The served method four times in five, so most bodies reach the view.
    served = ROUTES[rule]
    method = draw(st.sampled_from(served * 16 + ("GET", "POST", "PUT", "DELETE", "PATCH")))
    raw, fitting_type = draw(bodies(rule))
    content_type = draw(st.sampled_from((fitting_type,) * 3 + CONTENT_TYPES))
    headers = {"Content-Type": content_type} if content_type else {}

    if rule in SLACK_ROUTES:
        signature = draw(st.sampled_from(("valid", "valid", "none", "stale", "garbage")))
        if signature == "valid":
            headers.update(signed(raw, content_type=content_type)[1])
        elif signature == "stale":
            headers.update(signed(raw, timestamp=int(time.time()) - 3600, content_type=content_type)[1])
        elif signature == "garbage":
            headers["X-Slack-Request-Timestamp"] = draw(st.sampled_from(("", "-1", "1e9", "abc", "9" * 40)))
            headers["X-Slack-Signature"] = draw(st.sampled_from(("", "v0=", "v0=zz", "v1=" + "0" * 64)))
        if draw(st.booleans()):
            headers["X-Slack-Retry-Num"] = draw(st.sampled_from(("1", "0", "-3", "many")))
            headers["X-Slack-Retry-Reason"] = "http_timeout"
        headers["Content-Type"] = content_type

    return {"method": method, "path": path, "data": raw if method != "GET" or draw(st.booleans()) else None, "headers": headers}


# -- the running app ------------------------------------------------------------------


@pytest.fixture(scope="module")
def slack():
    fake = FakeSlack().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def stack(slack, tmp_path_factory):
    stack = Stack(str(tmp_path_factory.mktemp("malformed")), CONFIG + HANDLERS, slack.api_url)
    # A start that fails half-way still stops the processes it started.
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


def booted_workers(stack):
    with open(os.path.join(stack.tmp_path, "web.log"), encoding="utf-8", errors="replace") as log:
        return log.read().count("Booting worker")


def test_route_table_is_complete(tmp_path):
    config_path = tmp_path / "omnibot.yaml"
    config_path.write_text(CONFIG + HANDLERS, encoding="utf-8")
    environ = credentials_env()
    app_settings = Settings.from_env(environ, config_file=str(config_path), data_dir=str(tmp_path))
    app = create_app(Runtime(app_settings, load_config(str(config_path), environ)))

    served = {rule.rule for rule in app.url_map.iter_rules()}

    assert served == set(ROUTES)


@pytest.mark.parametrize("rule", sorted(ROUTES))
def test_malformed_requests_get_4xx_json(stack, rule):
    session = requests.Session()
    workers_before = booted_workers(stack)

    @settings(
        max_examples=EXAMPLES_PER_ROUTE,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
    )
    @given(request=requests_for(rule))
    def check(request):
        # A connection per request: gunicorn closes one whose body it did not read (413).
        response = session.request(
            request["method"],
            stack.url + request["path"],
            data=request["data"],
            headers=dict(request["headers"], Connection="close"),
            timeout=30,
        )
        text = response.text

        assert response.status_code < 500, f"{response.status_code}: {text[:300]}"
        assert "Traceback" not in text
        assert 'File "' not in text
        if response.status_code >= 400:
            assert isinstance(response.json(), dict), text[:300]

    try:
        check()
    finally:
        session.close()

    assert stack.web.poll() is None
    assert requests.get(stack.url + "/healthcheck", timeout=5).status_code == 200
    # A gunicorn worker that crashed or hung would have been replaced by a new one.
    assert booted_workers(stack) == workers_before


def test_worker_survives_queued_input(stack):
    """Signed but malformed bodies that reached the queue were processed without an unexpected error."""
    stack.settle(2)

    assert all(worker.poll() is None for worker in stack.workers)
    with open(os.path.join(stack.tmp_path, "worker0.log"), encoding="utf-8", errors="replace") as log:
        worker_log = log.read()
    assert "Traceback" not in worker_log
