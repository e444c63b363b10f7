"""``http_callback``: POST the payload to a backend service and return the service's JSON response as the result.

Example handler config::

    callbacks:
      - module: "omnibot.callbacks.network_callbacks:http_callback"
        kwargs:
          request_kwargs:
            url: "http://eventbot.internal/api/v1/eventbot"
            headers: {"X-Team": "test-team"}
          client_kwargs:
            service: "eventbot"
            timeout: 5
            retries: 2
"""

import copy
import http.cookiejar
import logging
import threading
import typing
import urllib.parse

import requests
import requests.adapters
import urllib3.exceptions
from urllib3.util import Retry

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 10.0
"""Seconds that each attempt may wait to connect and, separately, for the response."""

DEFAULT_RETRIES = 3
"""Retries after the first attempt, for failed connections and :data:`RETRY_STATUSES` responses."""

DEFAULT_BACKOFF_FACTOR = 0.5
"""urllib3 backoff factor. urllib3 2.x waits 0 s before the first retry, then 2 × factor, 4 × factor... seconds."""

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
"""HTTP statuses that are retried."""

MAX_RETRY_AFTER = 10.0
"""Longest ``Retry-After``, in seconds, that a retry waits for.

A service that requests a longer wait is not retried, so one call does not
hold a worker thread, and the messages waiting for one, for longer.
"""

# The request body and the response come from this module, so callers cannot
# set these keys of request_kwargs.
_RESERVED_REQUEST_KEYS = frozenset({"url", "json", "data", "files", "timeout"})

# One session per (retries, backoff_factor), shared by every thread of the
# process. A Retry policy belongs to the adapter mounted on a session, so each
# policy needs its own session. Sharing a session keeps connections to a
# backend pooled across calls, and urllib3's connection pools are thread-safe.
# The only other state that a request changes in a session is its cookie jar,
# and _build_session makes that jar reject every cookie. The lock only guards
# creation.
_sessions: typing.Dict[typing.Tuple[int, float], requests.Session] = {}
_sessions_lock = threading.Lock()


def http_callback(container, request_kwargs=None, client_kwargs=None) -> dict:
    """POST ``container.payload`` as JSON to a service and return the service's JSON response.

    Connection failures and responses with a status in :data:`RETRY_STATUSES`
    are retried with exponential backoff, and a ``Retry-After`` header of up to
    :data:`MAX_RETRY_AFTER` seconds is waited for. A timeout while waiting for
    the response is not retried, because the service may already have acted on
    the POST. Neither argument is modified.

    This module never logs the request body, headers or URL path. urllib3
    logs a warning with the URL's path and query for each retry of a failed
    connection, so keep secrets out of the URL.

    Args:
        container: Any container. Its ``payload`` is the request body.
        request_kwargs: ``url`` (required) and further keyword arguments of
            :meth:`requests.Session.post`, such as ``headers``, ``auth`` (a
            two-item list is taken as user and password), ``params`` or
            ``verify``. ``json``, ``data`` and ``files`` are ignored with a
            warning. A ``timeout`` is used when ``client_kwargs`` has none.
        client_kwargs: Optional settings. ``timeout`` is in seconds per
            attempt, or a ``[connect, read]`` pair, and defaults to
            :data:`DEFAULT_TIMEOUT`. ``retries`` defaults to
            :data:`DEFAULT_RETRIES` and ``backoff_factor`` to
            :data:`DEFAULT_BACKOFF_FACTOR`. ``service`` is the name used in log
            lines and defaults to the URL's host.

    Returns:
        The decoded JSON object of a 2xx response, which becomes the
        callback's result (``actions``, ``responses``). ``{}`` for a 2xx
        response with an empty body. ``{}`` with an error log when the kwargs
        are invalid, the request fails after its retries, or the response is
        not 2xx or its body is not a JSON object.
    """
    trace = container.event_trace
    client_kwargs = client_kwargs or {}
    if not isinstance(request_kwargs, typing.Mapping) or not isinstance(request_kwargs.get("url"), str):
        logger.error("http_callback: request_kwargs must be a mapping with a url string", extra=trace)
        return {}
    if not isinstance(client_kwargs, typing.Mapping):
        logger.error("http_callback: client_kwargs must be a mapping", extra=trace)
        return {}

    url = request_kwargs["url"]
    host = _host(url)
    service = str(client_kwargs.get("service") or host)
    try:
        settings = _ClientSettings.from_kwargs(client_kwargs, request_kwargs)
    except ValueError as error:
        logger.error("http_callback for service %s: invalid kwargs: %s", service, error, extra=trace)
        return {}
    post_kwargs = _post_kwargs(request_kwargs, service, trace)

    session = _session(settings.retries, settings.backoff_factor)
    logger.debug("http_callback: POST to service %s at host %s", service, host, extra=trace)
    try:
        response = session.post(url, json=container.payload, timeout=settings.timeout, **post_kwargs)
    except requests.RequestException as error:
        logger.error(
            "http_callback: request to service %s at host %s failed: %s (retries allowed: %d)",
            service,
            host,
            _describe_failure(error),
            settings.retries,
            extra=trace,
        )
        return {}
    return _read_result(response, service, host, trace)


class _ClientSettings(typing.NamedTuple):
    timeout: typing.Union[float, typing.Tuple[float, float]]
    retries: int
    backoff_factor: float

    @classmethod
    def from_kwargs(cls, client_kwargs, request_kwargs) -> "_ClientSettings":
        """Return the validated settings, or raise ValueError naming the invalid one."""
        timeout = client_kwargs.get("timeout", request_kwargs.get("timeout", DEFAULT_TIMEOUT))
        retries = client_kwargs.get("retries", DEFAULT_RETRIES)
        backoff_factor = client_kwargs.get("backoff_factor", DEFAULT_BACKOFF_FACTOR)

        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be an integer >= 0, got {retries!r}")
        if isinstance(backoff_factor, bool) or not isinstance(backoff_factor, (int, float)) or backoff_factor < 0:
            raise ValueError(f"backoff_factor must be a number >= 0, got {backoff_factor!r}")
        return cls(_timeout(timeout), retries, float(backoff_factor))


def _timeout(value):
    """Return a timeout for requests: positive seconds, or a (connect, read) tuple of them."""
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise ValueError(f"timeout must be seconds or a [connect, read] pair, got {value!r}")
        return (_positive_seconds(value[0]), _positive_seconds(value[1]))
    return _positive_seconds(value)


def _positive_seconds(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(f"timeout must be a number of seconds > 0, got {value!r}")
    return float(value)


def _post_kwargs(request_kwargs, service, trace) -> dict:
    """Return a deep copy of ``request_kwargs`` without the keys this module sets."""
    ignored = sorted(key for key in request_kwargs if key in {"json", "data", "files"})
    if ignored:
        logger.warning(
            "http_callback for service %s: ignored request_kwargs %s because the body is always the payload",
            service,
            ", ".join(ignored),
            extra=trace,
        )
    post_kwargs = {
        key: copy.deepcopy(value) for key, value in request_kwargs.items() if key not in _RESERVED_REQUEST_KEYS
    }
    # YAML has no tuples, and requests takes only a tuple as user and password.
    if isinstance(post_kwargs.get("auth"), list) and len(post_kwargs["auth"]) == 2:
        post_kwargs["auth"] = tuple(post_kwargs["auth"])
    return post_kwargs


def _read_result(response: requests.Response, service: str, host: str, trace) -> dict:
    """Return the JSON object of a 2xx response, else ``{}`` with an error log."""
    status = response.status_code
    if not 200 <= status < 300:
        logger.error(
            "http_callback: service %s at host %s responded with HTTP %s; the response is ignored",
            service,
            host,
            status,
            extra=trace,
        )
        return {}
    if not response.content.strip():
        logger.debug("http_callback: service %s responded with HTTP %s and no body", service, status, extra=trace)
        return {}
    try:
        result = response.json()
    except ValueError:
        logger.error(
            "http_callback: service %s at host %s responded with HTTP %s and a body that is not JSON (Content-Type %s)",
            service,
            host,
            status,
            response.headers.get("Content-Type", "missing"),
            extra=trace,
        )
        return {}
    if not isinstance(result, dict):
        logger.error(
            "http_callback: service %s at host %s returned a JSON %s instead of an object; the response is ignored",
            service,
            host,
            type(result).__name__,
            extra=trace,
        )
        return {}
    return result


def _describe_failure(error: requests.RequestException) -> str:
    """Describe a failed request without its URL, whose path or query may contain a secret.

    requests and urllib3 put the URL into the message of their outer
    exceptions, but not into the message of the underlying urllib3 error
    (refused connection, timeout, reset connection).
    """
    cause = error.args[0] if error.args else None
    if isinstance(cause, urllib3.exceptions.MaxRetryError) and cause.reason is not None:
        cause = cause.reason
    if isinstance(cause, urllib3.exceptions.HTTPError):
        return f"{type(error).__name__} ({cause})"
    return type(error).__name__


def _host(url: str) -> str:
    """Return ``host`` or ``host:port`` of ``url``, without user info, or "unknown host"."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        return "unknown host"
    if not parts.hostname:
        return "unknown host"
    return f"{parts.hostname}:{port}" if port else parts.hostname


class _BoundedRetry(Retry):
    """A urllib3 Retry that gives up when ``Retry-After`` requests more than :data:`MAX_RETRY_AFTER` seconds."""

    # urllib3 also retries 413, 429 and 503 responses that carry Retry-After even
    # when they are not in status_forcelist. Emptying this set limits retries
    # to RETRY_STATUSES.
    RETRY_AFTER_STATUS_CODES = frozenset()

    def increment(self, method=None, url=None, response=None, error=None, _pool=None, _stacktrace=None):
        if response is not None and self.respect_retry_after_header:
            wait = self.get_retry_after(response)
            if wait is not None and wait > MAX_RETRY_AFTER:
                # With raise_on_status=False, urllib3 returns this response to requests.
                reason = urllib3.exceptions.ResponseError(
                    f"Retry-After of {wait:.0f} s exceeds the maximum of {MAX_RETRY_AFTER:.0f} s"
                )
                raise urllib3.exceptions.MaxRetryError(_pool, url, reason)
        return super().increment(
            method=method, url=url, response=response, error=error, _pool=_pool, _stacktrace=_stacktrace
        )


def _session(retries: int, backoff_factor: float) -> requests.Session:
    """Return this process's session for the retry policy, creating it on first use."""
    key = (retries, backoff_factor)
    session = _sessions.get(key)
    if session is not None:
        return session
    with _sessions_lock:
        session = _sessions.get(key)
        if session is None:
            session = _build_session(retries, backoff_factor)
            _sessions[key] = session
    return session


def _build_session(retries: int, backoff_factor: float) -> requests.Session:
    retry = _BoundedRetry(
        total=retries,
        # A read error (timeout, reset) means the service may have received the
        # POST already, so it is raised instead of retried.
        read=False,
        other=0,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=Retry.DEFAULT_ALLOWED_METHODS | {"POST"},
        backoff_factor=backoff_factor,
        respect_retry_after_header=True,
        raise_on_status=False,
    )
    adapter = requests.adapters.HTTPAdapter(max_retries=retry)
    session = requests.Session()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    # A cookie set by one backend must not reach the calls of other handlers.
    session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    return session


def close_sessions() -> None:
    """Close every cached session and its pooled connections; later calls create new ones."""
    with _sessions_lock:
        sessions = list(_sessions.values())
        _sessions.clear()
    for session in sessions:
        session.close()
