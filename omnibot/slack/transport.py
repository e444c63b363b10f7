"""HTTP transport of Slack Web API calls: one urllib3 connection pool per process, with retries.

Why not slack_sdk's ``WebClient``: the sync ``WebClient`` (slack_sdk 3.48)
sends each call with ``urllib.request.urlopen``, which opens a new TCP
connection, and against slack.com a new TLS handshake, for every call. It
has no public way to plug in another transport.

Why not a ``requests.Session``: it reuses connections too, but it does more
work for each call (merging session settings, reading proxy settings from
``os.environ``, cookies, hooks). A call through it cost the calling process
0.70 ms of CPU, against 0.43 ms through slack_sdk's urllib and 0.28 ms
through urllib3's pool alone (``python -m bench.slack_transport`` on a
2-core Intel Xeon). A worker process's CPU limits how many calls it makes
per second.

urllib3, the library under requests and installed with it, keeps
connections alive in a thread-safe ``PoolManager`` and does the waiting and
counting of retries in its ``Retry``. :class:`SlackRetry` sets that policy
to slack_sdk's former rules, which omnibot's docs promise:

- at most :data:`MAX_RETRIES` retries per call, counted together over all
  causes, as slack_sdk's handlers counted them;
- HTTP 429 waits for ``Retry-After`` seconds (1 when the header is missing or
  invalid, at most :data:`MAX_RETRY_AFTER`, 6 hours) plus up to 1
  second of jitter;
- HTTP 500 and 503, a refused or timed-out connect, and a connection that
  was reset or closed without a response wait ``0.5 * 2 ** n`` seconds plus
  up to 1 second of jitter before retry ``n`` (counted from 0);
- a read timeout is not retried, because Slack may have acted on the POST.

A reset connection is retried although Slack may have received the POST, as
slack_sdk's ``ConnectionErrorRetryHandler`` did. That includes a kept-alive
connection that the server closed just as the call was sent. urllib3 checks
that a pooled connection is still open before it reuses it, so a connection
that the server closed while idle is replaced without a retry.

The watcher's paged listings (:mod:`omnibot.slack.listing`) still use
slack_sdk's ``WebClient``, whose retry handlers there wait on a stop event
and allow more retries after a 429; a refresh makes few calls.
"""

import logging
import random
import time
import urllib.parse
import urllib.request

import urllib3
import urllib3.exceptions
from urllib3.util import Retry

import omnibot
from omnibot.per_process import PerProcess

logger = logging.getLogger(__name__)

MAX_RETRIES = 3
"""Retries of one call after its first attempt."""

RETRY_STATUSES = frozenset({429, 500, 503})
"""HTTP statuses that are retried, the same that slack_sdk's built-in handlers retry."""

BACKOFF_FACTOR = 0.5
"""Seconds before the first retry of a server or connection error. Each later retry waits twice as long."""

DEFAULT_RETRY_AFTER = 1.0
"""Seconds waited after a 429 whose ``Retry-After`` header is missing or invalid."""

MAX_RETRY_AFTER = 6 * 3600.0
"""Longest ``Retry-After`` obeyed, in seconds; the same bound as urllib3 2.8's ``retry_after_max``, kept here for older urllib3."""

JITTER = 1.0
"""Upper bound of the random seconds added to each wait, so that callers limited together do not retry together."""

POOL_MAXSIZE = 64
"""Idle connections that a process keeps to one host.

A thread that finds no idle connection opens a new one, so this is not a
limit on concurrent calls. When more than this many connections are open at
once, urllib3 closes the extra ones after use and logs a warning.
"""

USER_AGENT = f"omnibot/{omnibot.__version__} urllib3/{urllib3.__version__}"


class SlackRetry(Retry):
    """urllib3's ``Retry`` with slack_sdk's waits, no retry of read timeouts, and a log line per retry.

    Use :func:`slack_retry` to build one with omnibot's settings.
    """

    # urllib3 also retries 413 and 503 responses that carry Retry-After.
    # An empty set limits retries to status_forcelist.
    RETRY_AFTER_STATUS_CODES = frozenset()

    def increment(self, method=None, url=None, response=None, error=None, _pool=None, _stacktrace=None):
        """Return the Retry for the next attempt, or raise a read timeout instead of retrying it."""
        if isinstance(error, urllib3.exceptions.ReadTimeoutError):
            raise error
        return super().increment(
            method=method, url=url, response=response, error=error, _pool=_pool, _stacktrace=_stacktrace
        )

    def sleep(self, response=None) -> None:
        """Log the retry that :meth:`increment` granted, then wait before it."""
        attempt = self.history[-1] if self.history else None
        wait = self._wait_seconds(response)
        logger.warning(
            "retrying %s after %s (retry %d of %d)",
            self._call_name(attempt),
            _cause(attempt),
            len(self.history),
            MAX_RETRIES,
        )
        time.sleep(wait)

    def _call_name(self, attempt) -> str:
        """Name the call in the log line: ``Slack API chat.postMessage``."""
        # The URL path ends in the method name. The token is in a header, never in the URL.
        method = urllib.parse.urlsplit((attempt.url if attempt else None) or "").path.rsplit("/", 1)[-1]
        return f"Slack API {method or '(unknown method)'}"

    def _wait_seconds(self, response) -> float:
        if response is not None and response.status == 429:
            try:
                retry_after = self.get_retry_after(response)
            except urllib3.exceptions.InvalidHeader:
                retry_after = None
            seconds = DEFAULT_RETRY_AFTER if retry_after is None else min(retry_after, MAX_RETRY_AFTER)
        else:
            seconds = BACKOFF_FACTOR * 2 ** max(len(self.history) - 1, 0)
        return seconds + random.random() * JITTER


def _cause(attempt) -> str:
    """Describe why an attempt failed: ``HTTP 503``, ``ConnectionRefusedError``, ``RemoteDisconnected``..."""
    if attempt is None:
        return "an unknown error"
    if attempt.status is not None:
        return f"HTTP {attempt.status}"
    error = attempt.error
    # urllib3 wraps the socket error: ProtocolError("Connection aborted.", error)
    # or NewConnectionError raised from the OSError.
    wrapped = error.args[1] if isinstance(error, urllib3.exceptions.ProtocolError) and len(error.args) > 1 else None
    if isinstance(wrapped, Exception):
        error = wrapped
    elif isinstance(error, urllib3.exceptions.NewConnectionError) and error.__cause__ is not None:
        error = error.__cause__
    return type(error).__name__


class ResponseUrlRetry(SlackRetry):
    """The retry rules of :class:`SlackRetry` for a POST to a ``response_url``, logged without the URL.

    A ``response_url`` contains a secret in its path, so the log line reads
    ``retrying the POST to response_url after HTTP 503 (retry 1 of 3)``.
    """

    def _call_name(self, attempt) -> str:
        return "the POST to response_url"


class _DropUrllib3RetryLines(logging.Filter):
    """A log filter that drops urllib3's own line about a retry that a :class:`SlackRetry` grants.

    urllib3 logs ``Retrying (...) after connection broken by ...: <path>``
    before each retry of a broken connection. :meth:`SlackRetry.sleep`
    already logs one line per retry, and a ``response_url`` path contains a
    secret that must not reach the log.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        return not (args and isinstance(args[0], SlackRetry))


_URLLIB3_RETRY_FILTER = _DropUrllib3RetryLines()


def slack_retry(policy: type = SlackRetry) -> SlackRetry:
    """Return the retry policy of every Web API call, whose rules the module docstring lists.

    Also stops urllib3 from logging its own line for those retries
    (:class:`_DropUrllib3RetryLines`).

    Args:
        policy: :class:`SlackRetry`, or :class:`ResponseUrlRetry` for posts to a ``response_url``.
    """
    urllib3_logger = logging.getLogger("urllib3.connectionpool")
    if _URLLIB3_RETRY_FILTER not in urllib3_logger.filters:
        urllib3_logger.addFilter(_URLLIB3_RETRY_FILTER)
    return policy(
        total=MAX_RETRIES,
        connect=None,
        read=None,
        status=None,
        other=None,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=frozenset({"POST"}),
        raise_on_status=False,
    )


def build_pool_manager(base_url: str) -> urllib3.PoolManager:
    """Return a new pool manager for calls under ``base_url``, with kept-alive connections.

    The proxy comes from the environment (``HTTPS_PROXY``, ``HTTP_PROXY``,
    ``NO_PROXY``), read once, here, with the functions that slack_sdk's
    urllib calls used. A proxy without a scheme is an HTTP proxy, as in
    urllib. A user and password in the proxy URL are sent as
    ``Proxy-Authorization``, as urllib sent them. TLS certificates are checked
    against the system's CA store, as urllib checked them. urllib3 keeps no
    cookies.
    """
    parts = urllib.parse.urlsplit(base_url)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if not proxy or urllib.request.proxy_bypass(parts.hostname or ""):
        return urllib3.PoolManager(maxsize=POOL_MAXSIZE)
    if "://" not in proxy:
        # urllib took a proxy without a scheme, such as proxy.example:3128, as an HTTP proxy.
        proxy = "http://" + proxy

    proxy_parts = urllib.parse.urlsplit(proxy)
    headers = None
    if proxy_parts.username is not None:
        credentials = urllib.parse.unquote(proxy_parts.username) + ":" + urllib.parse.unquote(proxy_parts.password or "")
        headers = urllib3.make_headers(proxy_basic_auth=credentials)
    return urllib3.ProxyManager(proxy, proxy_headers=headers, maxsize=POOL_MAXSIZE)


class ProcessPool:
    """The pool manager of the current process, created on first use and again after fork().

    A child process forked after its parent made calls must not send on the
    parent's pooled sockets, so each process gets its own pool manager (see
    :class:`omnibot.per_process.PerProcess`).

    Args:
        base_url: Base URL of the Slack Web API, to choose its proxy.
    """

    def __init__(self, base_url: str):
        self.base_url = base_url
        self._managers: PerProcess[urllib3.PoolManager] = PerProcess(lambda: build_pool_manager(base_url))

    def get(self) -> urllib3.PoolManager:
        """Return this process's pool manager."""
        return self._managers.get()

    def close(self) -> None:
        """Close this process's pooled connections. A later :meth:`get` creates a new pool manager."""
        manager = self._managers.pop()
        if manager is not None:
            manager.clear()
