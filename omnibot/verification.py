"""Verify that a request comes from Slack.

A bot with a signing secret (``CREDENTIALS_SLACK_SIGNING_SECRET_<APP_ID>``)
requires a valid ``X-Slack-Signature`` over the raw body, with an
``X-Slack-Request-Timestamp`` no more than 5 minutes away from now. A bot
without one falls back to the legacy ``token`` field, compared in constant
time.
"""

import hmac
import logging
import threading
import time
import typing

from slack_sdk.signature import SignatureVerifier

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Slack-Signature"
TIMESTAMP_HEADER = "X-Slack-Request-Timestamp"

# How far a request's timestamp may be from this server's clock, as slack_sdk's SignatureVerifier allows.
MAX_TIMESTAMP_SKEW = 300


class RequestVerifier:
    """Check signatures and legacy tokens against the configured bots.

    Args:
        bots: The bots of the config in force.
        clock: Optional ``slack_sdk.signature.Clock`` replacement for tests.
    """

    def __init__(self, bots: typing.Iterable, clock=None):
        self._verifiers = {}
        for bot in bots:
            if bot.credentials.signing_secret:
                kwargs = {"clock": clock} if clock is not None else {}
                self._verifiers[bot.app_id] = SignatureVerifier(bot.credentials.signing_secret, **kwargs)
        self._bots = list(bots)
        self._clock = clock
        self._warned_legacy: typing.Set[str] = set()
        self._lock = threading.Lock()

    @staticmethod
    def has_signature(headers) -> bool:
        """Return whether the request carries a signature and its timestamp."""
        return bool(headers.get(SIGNATURE_HEADER)) and bool(headers.get(TIMESTAMP_HEADER))

    def verify(self, bot, body: bytes, headers, token: typing.Optional[str]) -> bool:
        """Return whether the request is from Slack for ``bot``.

        Args:
            bot: The bot the request names.
            body: The raw request body, exactly as received.
            headers: The request headers.
            token: The legacy ``token`` field of the payload, if any.
        """
        verifier = self._verifiers.get(bot.app_id)
        if verifier is not None:
            timestamp = headers.get(TIMESTAMP_HEADER, "")
            signature = headers.get(SIGNATURE_HEADER, "")
            # The verifier parses the timestamp with int(); anything else is a forgery.
            if not signature or not timestamp.isascii() or not timestamp.isdigit():
                return False
            return verifier.is_valid(body=body, timestamp=timestamp, signature=signature)

        expected = bot.credentials.verification_token
        if not expected or not isinstance(token, str) or not token:
            return False
        self._warn_legacy_once(bot)
        return hmac.compare_digest(token.encode("utf-8"), expected.encode("utf-8"))

    def failure_reason(self, bot, headers, token: typing.Optional[str]) -> str:
        """Return why :meth:`verify` rejected a request for ``bot``, for logs; it names no secret.

        Call it only after :meth:`verify` returned False: a request whose
        headers look right is reported as a signature that does not match.
        """
        if bot.app_id not in self._verifiers:
            if not bot.credentials.verification_token:
                return "the app has neither a signing secret nor a verification token configured"
            if not isinstance(token, str) or not token:
                return "the body has no token and the app has no signing secret configured"
            return "the token does not match the app's verification token"

        signature = headers.get(SIGNATURE_HEADER, "")
        timestamp = headers.get(TIMESTAMP_HEADER, "")
        if not signature:
            return f"the {SIGNATURE_HEADER} header is missing"
        if not timestamp:
            return f"the {TIMESTAMP_HEADER} header is missing"
        if not timestamp.isascii() or not timestamp.isdigit():
            return f"the {TIMESTAMP_HEADER} header is not a number of seconds"
        now = self._clock.now() if self._clock is not None else time.time()
        skew = now - int(timestamp)
        if abs(skew) > MAX_TIMESTAMP_SKEW:
            side = "old" if skew > 0 else "in the future"
            return f"the timestamp is {abs(skew):.0f} s {side}, more than {MAX_TIMESTAMP_SKEW} s from this server's clock"
        return "the signature does not match the body and the app's signing secret"

    def find_bot(self, body: bytes, headers, token, candidates=None):
        """Return the first bot of ``candidates`` (default all) that verifies the request, or None."""
        for bot in self._bots if candidates is None else candidates:
            if self.verify(bot, body, headers, token):
                return bot
        return None

    def _warn_legacy_once(self, bot):
        with self._lock:
            if bot.app_id in self._warned_legacy:
                return
            self._warned_legacy.add(bot.app_id)
        logger.warning(
            "bot %s/%s is verified with a legacy verification token, which Slack deprecated; "
            "set CREDENTIALS_SLACK_SIGNING_SECRET_%s to verify request signatures instead",
            bot.team.name,
            bot.name,
            bot.app_id,
        )
