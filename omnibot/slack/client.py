"""Slack Web API clients, one per bot and token kind, with retries.

Rate limits (HTTP 429) wait for ``Retry-After``; connection errors and 5xx
responses are retried with exponential backoff. All of it is done by
slack_sdk's retry handlers.
"""

import json
import logging
import threading
import time
import typing
import urllib.parse

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry import RetryHandler
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)

logger = logging.getLogger(__name__)

# Errors after which an action is tried again with the user token, because
# the bot token may lack the scope or channel membership the user has.
USER_TOKEN_FALLBACK_ERRORS = frozenset(
    {"missing_scope", "not_allowed_token_type", "channel_not_found", "not_in_channel"}
)


def _retry_handlers():
    return [
        _LoggedRetry(RateLimitErrorRetryHandler(max_retry_count=3)),
        _LoggedRetry(ConnectionErrorRetryHandler(max_retry_count=3)),
        _LoggedRetry(ServerErrorRetryHandler(max_retry_count=3)),
    ]


class _LoggedRetry(RetryHandler):
    """Log each retry that the wrapped slack_sdk handler decides on, then let it wait."""

    def __init__(self, inner: RetryHandler):
        super().__init__(max_retry_count=inner.max_retry_count, interval_calculator=inner.interval_calculator)
        self.inner = inner

    def can_retry(self, *, state, request, response=None, error=None) -> bool:
        return self.inner.can_retry(state=state, request=request, response=response, error=error)

    def prepare_for_next_attempt(self, *, state, request, response=None, error=None) -> None:
        # The URL ends in the method name; the token is in a header, never in the URL.
        method = urllib.parse.urlsplit(request.url).path.rsplit("/", 1)[-1]
        cause = f"HTTP {response.status_code}" if response is not None else type(error).__name__
        logger.warning(
            "retrying Slack API %s after %s (retry %d of %d)",
            method,
            cause,
            state.current_attempt + 1,
            self.inner.max_retry_count,
        )
        self.inner.prepare_for_next_attempt(state=state, request=request, response=response, error=error)


def form_fields(kwargs: typing.Mapping) -> typing.Dict[str, str]:
    """Encode call arguments as form fields, the encoding every Web API method accepts.

    Lists and mappings (``blocks``, ``attachments``) become JSON strings;
    booleans become ``true``/``false``; None values are left out.
    """
    fields = {}
    for key, value in kwargs.items():
        if value is None:
            continue
        if isinstance(value, bool):
            fields[key] = "true" if value else "false"
        elif isinstance(value, (dict, list, tuple)):
            fields[key] = json.dumps(value)
        else:
            fields[key] = str(value)
    return fields


class SlackClients:
    """Build and reuse ``WebClient`` objects per bot and token kind.

    A ``WebClient`` keeps no per-request state, so one instance per token is
    shared by every thread of the process.

    Args:
        base_url: Base URL of the Slack Web API (``SLACK_API_URL``).
        timeout: Seconds per HTTP request.
        stats: The process's :class:`omnibot.stats.Stats`; None records no metrics.
    """

    def __init__(self, base_url: str, timeout: float = 10.0, stats=None):
        if not base_url.endswith("/"):
            base_url += "/"
        self.base_url = base_url
        self.timeout = timeout
        self.stats = stats
        self._clients: typing.Dict[typing.Tuple[str, str], WebClient] = {}
        self._lock = threading.Lock()

    def client(self, bot, kind: str = "bot") -> typing.Optional[WebClient]:
        """Return the client of ``bot`` for ``kind`` ``bot`` or ``user``; None without such a token."""
        token = bot.credentials.bot_token if kind == "bot" else bot.credentials.user_token
        if not token:
            return None
        key = (bot.app_id, kind)
        client = self._clients.get(key)
        if client is None:
            with self._lock:
                client = self._clients.get(key)
                if client is None:
                    client = WebClient(
                        token=token,
                        base_url=self.base_url,
                        timeout=self.timeout,
                        retry_handlers=_retry_handlers(),
                    )
                    self._clients[key] = client
        return client

    def call(self, bot, method: str, kwargs: typing.Mapping, *, fallback: bool = True, trace=None) -> dict:
        """Call ``method`` as ``bot`` and return Slack's response as a dict.

        When the bot token fails with an error in
        :data:`USER_TOKEN_FALLBACK_ERRORS` and the bot has a user token, the
        call is repeated with the user token. Errors never raise: a failed
        call returns ``{"ok": False, "error": ...}``.
        """
        answer = self._call_once(self.client(bot, "bot"), method, kwargs, trace)
        if answer.get("ok") or not fallback or answer.get("error") not in USER_TOKEN_FALLBACK_ERRORS:
            return answer

        user_client = self.client(bot, "user")
        if user_client is None:
            return answer
        logger.info(
            "%s failed with %s as the bot; retrying with the user token",
            method,
            answer.get("error"),
            extra=trace or {},
        )
        return self._call_once(user_client, method, kwargs, trace)

    def _call_once(self, client, method, kwargs, trace) -> dict:
        """Make one call (slack_sdk may retry it), record its metrics and log Slack's ``error``."""
        started = time.perf_counter()
        answer = _api_call(client, method, kwargs, trace)
        error = None if answer.get("ok") else str(answer.get("error") or "unknown_error")
        if self.stats is not None:
            self.stats.slack_call(method, error or "ok", time.perf_counter() - started)

        # request_failed was logged with its cause by _api_call.
        if error is not None and error != "request_failed":
            logger.warning(
                "Slack API %s failed: %s",
                method,
                error,
                extra=dict(trace or {}, api_method=method, api_error=error),
            )
        return answer


def _api_call(client, method, kwargs, trace) -> dict:
    if client is None:
        return {"ok": False, "error": "no_token_configured"}
    try:
        response = client.api_call(method, data=form_fields(kwargs))
        return dict(response.data) if isinstance(response.data, dict) else {"ok": False, "error": "invalid_response"}
    except SlackApiError as error:
        data = error.response.data if error.response is not None else None
        if isinstance(data, dict):
            return dict(data)
        status = getattr(error.response, "status_code", None)
        return {"ok": False, "error": f"http_{status}" if status else "request_failed"}
    except (SlackClientError, OSError, ValueError) as error:
        logger.warning("Slack API call %s failed: %s", method, error, extra=trace or {})
        return {"ok": False, "error": "request_failed", "detail": str(error)}
