"""Fixtures shared by unit and integration tests."""

import os

import pytest

from omnibot.fake_slack import FakeSlack


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch):
    """Keep credentials and backend URLs of the developer's shell out of every test."""
    for key in list(os.environ):
        if key.startswith("CREDENTIALS_SLACK_") or key in ("QUEUE_URL", "CACHE_URL", "CONFIG_FILE", "SLACK_API_URL"):
            monkeypatch.delenv(key, raising=False)


@pytest.fixture
def fake_slack():
    """A fake Slack Web API on loopback with the sample workspace."""
    slack = FakeSlack().start()
    yield slack
    slack.stop()
