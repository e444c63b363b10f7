"""The event fast path gives the same responses as Flask, and steps aside when it cannot decide alone."""

import json
import logging

import pytest

from omnibot import authnz
from omnibot.app import create_app
from omnibot.config import load_config_text
from omnibot.config.model import CallbackSpec
from omnibot.runtime import Runtime
from omnibot.settings import Settings
from tests.support import BASE_CONFIG, credentials_env, message_event, signed

EVENT_PATH = "/api/v1/slack/event"

# The same config with a check that reads more than the path, so every event goes through Flask.
FLASK_PATH_CONFIG = BASE_CONFIG.replace(
    '    - module: "omnibot.authnz:allowed_paths"\n      kwargs:\n        paths: ["^/api/"]',
    '    - module: "tests.unit.test_event_fast_path:allow_every_request"',
)

calls_of_allow_every_request = []


def allow_every_request():
    """An authorization check that reads the request, so the fast path cannot take it."""
    from flask import request

    calls_of_allow_every_request.append(request.path)
    return True


def make_client(tmp_path, config_text, name):
    environ = credentials_env()
    settings = Settings(data_dir=str(tmp_path / name), environ=environ)
    runtime = Runtime(settings, load_config_text(config_text, environ=environ))
    return create_app(runtime).test_client(), runtime


@pytest.fixture
def clients(tmp_path):
    fast, fast_runtime = make_client(tmp_path, BASE_CONFIG, "fast")
    slow, slow_runtime = make_client(tmp_path, FLASK_PATH_CONFIG, "slow")
    yield fast, slow
    fast_runtime.close()
    slow_runtime.close()


def requests_to_compare():
    """Yield (name, raw body, headers) for each kind of response the event route gives."""
    event = message_event("hello")
    raw, headers = signed(event)
    yield "queued", raw, headers
    yield "bad json", b"{not json", signed(b"{not json")[1]
    yield "array body", b"[]", signed(b"[]")[1]
    yield "unsigned", json.dumps(dict(event, token=None)).encode(), {"Content-Type": "application/json"}
    yield "unknown team", *signed(dict(message_event("hi"), team_id="T0OTHER01"))
    yield "unknown app", *signed(dict(message_event("hi"), api_app_id="A0OTHER01"))
    yield "bad signature", raw, dict(headers, **{"X-Slack-Signature": "v0=" + "0" * 64})
    yield "no event", *signed({k: v for k, v in message_event("hi").items() if k != "event"})
    yield "url verification", *signed({"type": "url_verification", "challenge": "c-123", "token": "x"})


@pytest.mark.parametrize("name", [name for name, _, _ in requests_to_compare()])
def test_fast_path_responds_like_flask(clients, name):
    fast, slow = clients
    raw, headers = next((raw, headers) for each, raw, headers in requests_to_compare() if each == name)

    calls_of_allow_every_request.clear()
    fast_response = fast.post(EVENT_PATH, data=raw, headers=headers)
    slow_response = slow.post(EVENT_PATH, data=raw, headers=headers)

    assert calls_of_allow_every_request == [EVENT_PATH]
    assert fast_response.status_code == slow_response.status_code
    assert fast_response.get_json(silent=True) == slow_response.get_json(silent=True)
    assert fast_response.headers.get("Content-Type") == slow_response.headers.get("Content-Type")
    assert fast_response.headers.get("X-Slack-No-Retry") == slow_response.headers.get("X-Slack-No-Retry")


def test_duplicate_event_is_answered_without_queueing(clients):
    fast, _ = clients
    raw, headers = signed(message_event("hello"))

    first = fast.post(EVENT_PATH, data=raw, headers=headers)
    repeat = fast.post(EVENT_PATH, data=raw, headers=dict(headers, **{"X-Slack-Retry-Num": "1"}))

    assert first.get_json() == {"status": "success"}
    assert repeat.status_code == 200
    assert repeat.get_json() == {"status": "success", "duplicate": True}


def test_fast_path_counts_requests_and_logs_rejections(tmp_path, caplog):
    fast, runtime = make_client(tmp_path, BASE_CONFIG, "metrics")
    body = message_event("hello")

    with caplog.at_level(logging.WARNING, logger="omnibot.routes.metrics"):
        response = fast.post(EVENT_PATH, data=json.dumps(body), headers={"Content-Type": "application/json"})

    assert response.status_code == 403
    assert "rejected POST /api/v1/slack/event with 403" in caplog.text
    assert "(app A0TEST001, team T0TEST001)" in caplog.text
    metrics = runtime.stats.render()[0].decode()
    assert 'method="POST",route="/api/v1/slack/event",status="403"' in metrics
    runtime.close()


def test_denied_path_goes_to_flask_and_gets_403(tmp_path):
    config = BASE_CONFIG.replace('paths: ["^/api/v1/slack/get_"]', "").replace('paths: ["^/api/"]', 'paths: ["^/api/v1/slack/get_"]')
    client, runtime = make_client(tmp_path, config, "denied")

    response = client.post(EVENT_PATH, data=signed(message_event("hello"))[0], headers=signed(message_event("hello"))[1])

    assert response.status_code == 403
    assert response.get_json()["error"] == "Forbidden: the request did not pass the authorization checks."
    assert runtime.queue.depth() == 0
    runtime.close()


def test_oversized_and_chunked_bodies_go_to_flask(clients):
    fast, _ = clients

    oversized = fast.post(EVENT_PATH, data=b"{" + b" " * (2 * 1024 * 1024) + b"}", headers={"Content-Type": "application/json"})
    chunked = fast.post(EVENT_PATH, data=b"{}", headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"})

    assert oversized.status_code == 413
    assert oversized.get_json()["status"] == "failure"
    assert chunked.status_code in (400, 403)
    assert chunked.get_json()["status"] == "failure"


def test_other_methods_and_paths_go_to_flask(clients):
    fast, _ = clients

    assert fast.get(EVENT_PATH).status_code == 405
    assert fast.post(EVENT_PATH + "/", data=b"{}").status_code == 404


def spec(module, function, **kwargs):
    return CallbackSpec(module=module, function=function, kwargs=kwargs)


@pytest.mark.parametrize(
    "checks, expected",
    [
        ([spec("omnibot.authnz:allowed_paths", authnz.allowed_paths, paths=["^/api/"])], True),
        ([spec("omnibot.authnz:allowed_paths", authnz.allowed_paths, paths="^/api/v1/slack/event$")], True),
        ([spec("omnibot.authnz:allowed_paths", authnz.allowed_paths, paths=["^/other"])], False),
        ([spec("omnibot.authnz:allowed_paths", authnz.allowed_paths, paths=["("])], None),
        ([spec("omnibot.authnz:allowed_paths", authnz.allowed_paths, paths=[1])], None),
        ([spec("tests.unit.test_event_fast_path:allow_every_request", allow_every_request)], None),
        ([], None),
    ],
    ids=["list", "string", "denied", "bad regex", "bad type", "other check", "no checks"],
)
def test_decision_by_path(checks, expected):
    assert authnz.decision_by_path(checks, EVENT_PATH) is expected


def test_undecodable_body_is_logged_with_its_reason(clients, caplog):
    fast, _ = clients

    with caplog.at_level(logging.WARNING, logger="omnibot.routes.metrics"):
        response = fast.post(EVENT_PATH, data=b"{not json", headers={"Content-Type": "application/json"})

    assert response.status_code == 400
    assert "rejected POST /api/v1/slack/event with 400: request body is not valid JSON" in caplog.text


def test_content_length_non_ascii_digit_goes_to_flask(clients):
    fast, _ = clients

    # str.isdigit() accepts "²", which int() rejects.
    response = fast.post(EVENT_PATH, data=b"{}", headers={"Content-Type": "application/json", "Content-Length": "\u00b2"})

    assert response.status_code < 500
    assert response.get_json()["status"] == "failure"
