"""Slack Web API calls as a bot, with the user-token fallback, metrics and error logs.

The HTTP requests, their pooled connections and their retries are in
:mod:`omnibot.slack.transport`.
"""

import json
import logging
import re
import time
import typing
import urllib.parse

import urllib3
import urllib3.exceptions

from omnibot.slack.transport import USER_AGENT, ProcessPool, slack_retry

logger = logging.getLogger(__name__)

# No Slack token contains these characters, and in a header they fail or change the request.
_HEADER_UNSAFE = re.compile(r"[\x00-\x20\x7f]")

# Errors after which an action is tried again with the user token, because
# the bot token may lack the scope or channel membership the user has.
USER_TOKEN_FALLBACK_ERRORS = frozenset(
    {"missing_scope", "not_allowed_token_type", "channel_not_found", "not_in_channel"}
)


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
    """Call the Web API as the configured bots, over this process's pooled connections.

    One instance is shared by every thread of a process. Each call sends the
    bot's token in the ``Authorization`` header, so one connection pool
    serves every bot and token kind.

    Args:
        base_url: Base URL of the Slack Web API (``SLACK_API_URL``).
        timeout: Seconds that each attempt may wait to connect and, separately,
            between bytes of the response.
        stats: The process's :class:`omnibot.stats.Stats`; None records no metrics.
    """

    def __init__(self, base_url: str, timeout: float = 10.0, stats=None):
        if not base_url.endswith("/"):
            base_url += "/"
        self.base_url = base_url
        self.timeout = timeout
        self.stats = stats
        self._pool = ProcessPool(base_url)

    def call(self, bot, method: str, kwargs: typing.Mapping, *, fallback: bool = True, trace=None) -> dict:
        """Call ``method`` as ``bot`` and return Slack's response as a dict.

        When the bot token fails with an error in
        :data:`USER_TOKEN_FALLBACK_ERRORS` and the bot has a user token, the
        call is repeated with the user token. Errors never raise: a failed
        call returns ``{"ok": False, "error": ...}``. Besides Slack's own
        errors, ``error`` may be ``no_token_configured``, ``request_failed``
        (Slack was not reached, with a ``detail``), ``http_<status>`` (a
        response whose body is not a JSON object) or ``invalid_response`` (the
        same with HTTP 200).
        """
        answer = self._call_once(_token(bot, "bot"), method, kwargs, trace)
        if answer.get("ok") or not fallback or answer.get("error") not in USER_TOKEN_FALLBACK_ERRORS:
            return answer

        user_token = _token(bot, "user")
        if not user_token:
            return answer
        logger.info(
            "%s failed with %s as the bot; retrying with the user token",
            method,
            answer.get("error"),
            extra=trace or {},
        )
        return self._call_once(user_token, method, kwargs, trace)

    def close(self) -> None:
        """Close this process's pooled connections. Later calls open new ones."""
        self._pool.close()

    def _call_once(self, token, method, kwargs, trace) -> dict:
        """Make one call (the transport may retry it), record its metrics and log Slack's ``error``."""
        started = time.perf_counter()
        answer = self._post(token, method, kwargs, trace)
        error = None if answer.get("ok") else str(answer.get("error") or "unknown_error")
        if self.stats is not None:
            self.stats.slack_call(method, error or "ok", time.perf_counter() - started)

        # request_failed was logged with its cause by _post.
        if error is not None and error != "request_failed":
            logger.warning(
                "Slack API %s failed: %s",
                method,
                error,
                extra=dict(trace or {}, api_method=method, api_error=error),
            )
        return answer

    def _post(self, token, method, kwargs, trace) -> dict:
        if not token:
            return {"ok": False, "error": "no_token_configured"}
        if _HEADER_UNSAFE.search(token):
            # http.client would reject the header with a ValueError that quotes the token.
            detail = "the token contains whitespace or a control character"
            logger.warning("Slack API call %s failed: %s", method, detail, extra=trace or {})
            return {"ok": False, "error": "request_failed", "detail": detail}
        # Quoting keeps a method name with "/" or ":" from leaving base_url,
        # which would send the token elsewhere.
        url = self.base_url + urllib.parse.quote(method, safe="")
        headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/x-www-form-urlencoded",
            "User-Agent": USER_AGENT,
        }
        try:
            body = urllib.parse.urlencode(form_fields(kwargs)).encode()
            response = self._pool.get().request(
                "POST",
                url,
                body=body,
                headers=headers,
                timeout=self.timeout,
                retries=slack_retry(),
                redirect=False,
            )
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as error:
            detail = _describe_failure(error)
            logger.warning("Slack API call %s failed: %s", method, detail, extra=trace or {})
            return {"ok": False, "error": "request_failed", "detail": detail}
        return _read_answer(response)


def _token(bot, kind: str) -> typing.Optional[str]:
    """Return the ``bot`` or ``user`` token of ``bot``, which is None or empty when the bot has none.

    Whitespace around the token, such as the newline at the end of a token
    read from a file, is removed, as slack_sdk's ``WebClient`` (3.x) removes it.
    """
    token = bot.credentials.bot_token if kind == "bot" else bot.credentials.user_token
    return token.strip() if token else token


def _read_answer(response: urllib3.BaseHTTPResponse) -> dict:
    """Return Slack's JSON object, or an ``error`` for a body that is not one."""
    try:
        data = json.loads(response.data)
    except ValueError:
        data = None
    if isinstance(data, dict):
        return data
    if response.status != 200:
        return {"ok": False, "error": f"http_{response.status}"}
    return {"ok": False, "error": "invalid_response"}


def _describe_failure(error: Exception) -> str:
    """Describe a failed request by its underlying error, such as ``NewConnectionError: ... Connection refused``.

    urllib3's ``MaxRetryError`` repeats the URL and the retry count before
    the error of the last attempt. The URL contains no token, which is sent
    in a header.
    """
    if isinstance(error, urllib3.exceptions.MaxRetryError) and error.reason is not None:
        error = error.reason
    return f"{type(error).__name__}: {error}"
