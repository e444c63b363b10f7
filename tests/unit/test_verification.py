"""Request verification with signing secrets and legacy tokens."""

import time

import pytest

from omnibot.config import load_config_text
from omnibot.verification import RequestVerifier
from tests.support import BASE_CONFIG, SIGNING_SECRET, signed

BODY = b'{"type": "event_callback", "api_app_id": "A0TEST001"}'


def bot_with(env):
    config = load_config_text(BASE_CONFIG, "omnibot.yaml", dict(env, CREDENTIALS_SLACK_OAUTH_BOT_TOKEN_A0TEST001="xoxb"))
    return config.bot("test-team", "testbot")


@pytest.fixture
def signing_bot():
    return bot_with({"CREDENTIALS_SLACK_SIGNING_SECRET_A0TEST001": SIGNING_SECRET})


@pytest.fixture
def token_bot():
    return bot_with({"CREDENTIALS_SLACK_VERIFICATION_TOKEN_A0TEST001": "legacy-token"})


def test_valid_signature(signing_bot):
    _, headers = signed(BODY)

    assert RequestVerifier([signing_bot]).verify(signing_bot, BODY, headers, None)


@pytest.mark.parametrize(
    "offset",
    [
        -301,  # older than five minutes: a replay
        301,  # more than five minutes in the future
    ],
)
def test_timestamp_outside_window_is_rejected(signing_bot, offset):
    _, headers = signed(BODY, timestamp=int(time.time()) + offset)

    assert not RequestVerifier([signing_bot]).verify(signing_bot, BODY, headers, None)


def test_changed_body_is_rejected(signing_bot):
    _, headers = signed(BODY)

    assert not RequestVerifier([signing_bot]).verify(signing_bot, BODY + b" ", headers, None)


@pytest.mark.parametrize(
    "headers",
    [
        {},  # no signature at all
        {"X-Slack-Signature": "v0=00", "X-Slack-Request-Timestamp": "not-a-number"},
        {"X-Slack-Signature": "", "X-Slack-Request-Timestamp": str(int(time.time()))},
    ],
)
def test_malformed_signature_headers_are_rejected(signing_bot, headers):
    assert not RequestVerifier([signing_bot]).verify(signing_bot, BODY, headers, "legacy-token")


def test_signature_required_even_with_right_token(signing_bot):
    assert not RequestVerifier([signing_bot]).verify(signing_bot, BODY, {}, SIGNING_SECRET)


def test_legacy_token(token_bot):
    verifier = RequestVerifier([token_bot])

    assert verifier.verify(token_bot, BODY, {}, "legacy-token")
    assert not verifier.verify(token_bot, BODY, {}, "legacy-tokem")
    assert not verifier.verify(token_bot, BODY, {}, None)


def test_legacy_token_logs_deprecation_once(token_bot, caplog):
    verifier = RequestVerifier([token_bot])

    verifier.verify(token_bot, BODY, {}, "legacy-token")
    verifier.verify(token_bot, BODY, {}, "legacy-token")

    warnings = [r for r in caplog.records if "legacy verification token" in r.getMessage()]
    assert len(warnings) == 1
    assert "legacy-token" not in caplog.text


def test_find_bot(signing_bot):
    _, headers = signed(BODY)

    assert RequestVerifier([signing_bot]).find_bot(BODY, headers, None) is signing_bot
    assert RequestVerifier([signing_bot]).find_bot(BODY, {}, None) is None


@pytest.mark.parametrize(
    "change, reason",
    [
        (lambda headers: headers.pop("X-Slack-Signature"), "the X-Slack-Signature header is missing"),
        (lambda headers: headers.pop("X-Slack-Request-Timestamp"), "the X-Slack-Request-Timestamp header is missing"),
        (lambda headers: headers.update({"X-Slack-Request-Timestamp": "soon"}), "is not a number of seconds"),
        (lambda headers: headers.update({"X-Slack-Request-Timestamp": str(int(time.time()) - 900)}), "s old, more than 300 s from this server's clock"),
        (lambda headers: headers.update({"X-Slack-Request-Timestamp": str(int(time.time()) + 900)}), "s in the future, more than 300 s"),
        (lambda headers: headers.update({"X-Slack-Signature": "v0=" + "0" * 64}), "the signature does not match"),
    ],
    ids=["no signature", "no timestamp", "timestamp not a number", "stale", "future", "wrong signature"],
)
def test_failure_reason_names_the_problem(signing_bot, change, reason):
    _, headers = signed(BODY)
    change(headers)
    verifier = RequestVerifier([signing_bot])

    assert not verifier.verify(signing_bot, BODY, headers, None)
    assert reason in verifier.failure_reason(signing_bot, headers, None)


def test_failure_reason_of_legacy_token(token_bot):
    verifier = RequestVerifier([token_bot])

    assert verifier.failure_reason(token_bot, {}, "wrong") == "the token does not match the app's verification token"
    assert "no token" in verifier.failure_reason(token_bot, {}, None)
    assert "legacy-token" not in verifier.failure_reason(token_bot, {}, "wrong")
