"""Posts to a response_url are retried by the rules of Web API calls, and their URL stays out of the log."""

import logging
import types

import pytest

from omnibot.fake_slack import FakeSlack
from omnibot.processing.results import ResultApplier
from omnibot.slack import transport
from tests.support import free_port

SECRET_PATH = "actions/T0TEST001/1234/s3cr3tH00kT0k3n"


@pytest.fixture
def slack():
    with FakeSlack() as fake:
        yield fake


@pytest.fixture(autouse=True)
def no_waits(monkeypatch):
    monkeypatch.setattr(transport, "BACKOFF_FACTOR", 0.0)
    monkeypatch.setattr(transport, "JITTER", 0.0)


def container(response_url):
    return types.SimpleNamespace(response_url=response_url, event_trace={})


def retry_lines(caplog):
    return [record.getMessage() for record in caplog.records if record.getMessage().startswith("retrying ")]


def test_response_url_post_retried_after_503(slack, caplog):
    caplog.set_level(logging.INFO)
    slack.add_fault("response_url", status=503)

    accepted = ResultApplier(None).post_response(container(slack.hook_url(SECRET_PATH)), {"text": "done"})

    assert accepted is True
    assert [call["args"]["text"] for call in slack.calls("response_url")] == ["done", "done"]
    assert retry_lines(caplog) == ["retrying the POST to response_url after HTTP 503 (retry 1 of 3)"]
    assert "s3cr3t" not in caplog.text


def test_response_url_post_waits_after_429(slack, caplog):
    caplog.set_level(logging.INFO)
    slack.add_fault("response_url", status=429, retry_after=0)

    accepted = ResultApplier(None).post_response(container(slack.hook_url(SECRET_PATH)), {"text": "done"})

    assert accepted is True
    assert len(slack.calls("response_url")) == 2
    assert retry_lines(caplog) == ["retrying the POST to response_url after HTTP 429 (retry 1 of 3)"]


def test_response_url_post_not_retried_after_404(slack, caplog):
    caplog.set_level(logging.INFO)
    slack.add_fault("response_url", status=404, error="expired_url")

    accepted = ResultApplier(None).post_response(container(slack.hook_url(SECRET_PATH)), {"text": "done"})

    assert accepted is False
    assert len(slack.calls("response_url")) == 1
    assert retry_lines(caplog) == []
    assert "response_url returned HTTP 404" in caplog.text


def test_response_url_refused_three_times(caplog):
    caplog.set_level(logging.INFO)
    url = f"http://127.0.0.1:{free_port()}/hooks/{SECRET_PATH}"

    accepted = ResultApplier(None).post_response(container(url), {"text": "done"})

    assert accepted is False
    assert retry_lines(caplog) == [
        f"retrying the POST to response_url after ConnectionRefusedError (retry {number} of 3)" for number in (1, 2, 3)
    ]
    assert "posting to response_url failed" in caplog.text
    assert "s3cr3t" not in caplog.text
