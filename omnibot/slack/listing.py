"""Page through Slack's list methods with retries that a stop event can cut short.

Each page is one call of slack_sdk's ``WebClient``. Its retry handlers repeat
a page after HTTP 429 (waiting the seconds of ``Retry-After``), after a
connection error and after HTTP 500 or 503 (waiting 1, 2, 4 ... seconds plus
jitter). Every wait is a ``threading.Event.wait``, so setting the event ends
the wait, and the listing stops before its next page.
"""

import logging
import threading
import time
import typing

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)
from slack_sdk.http_retry.builtin_interval_calculators import BackoffRetryIntervalCalculator

from omnibot.slack.client import form_fields
from omnibot.slack.directory import CONVERSATIONS, EMOJI, USERS

logger = logging.getLogger(__name__)


class Listing(typing.NamedTuple):
    """The Web API call that lists one directory kind."""

    method: str
    arguments: typing.Mapping[str, typing.Any]
    field: str


LISTINGS = {
    USERS: Listing("users.list", {}, "members"),
    CONVERSATIONS: Listing(
        "conversations.list",
        {"types": "public_channel,private_channel,im,mpim", "exclude_archived": True},
        "channels",
    ),
    EMOJI: Listing("emoji.list", {}, "emoji"),
}
"""The list call of each directory kind, and the response field that contains its page."""

# Retries of one page. Slack's list methods are rate-limit Tier 2 (about 20
# calls a minute), so a long listing may meet several 429s in a row.
RATE_LIMIT_RETRIES = 5
ERROR_RETRIES = 3

# Seconds waited after a 429 whose Retry-After header is missing or unreadable.
DEFAULT_RETRY_AFTER = 1.0


class ListingFailed(Exception):
    """A page could not be fetched, after every retry.

    Attributes:
        method: The Web API method, such as ``users.list``.
        error: Slack's error code (``ratelimited``, ``missing_scope``...) or
            ``request_failed`` for a network error.
        detail: More about the error: the missing scope, the HTTP status.
    """

    def __init__(self, method: str, error: str, detail: str = ""):
        self.method = method
        self.error = error
        self.detail = detail
        suffix = f" ({detail})" if detail else ""
        super().__init__(f"{method} failed: {error}{suffix}")


class ListingStopped(Exception):
    """The stop event was set before the listing reached its last page."""


class _WaitOnEvent:
    """Mixin for slack_sdk retry handlers: wait on an event instead of ``time.sleep``.

    When the event is set during the wait, no retry is requested, so the
    client returns or raises the failure at once.
    """

    def __init__(self, stop: threading.Event, trace: typing.Mapping, **kwargs):
        super().__init__(**kwargs)
        self._stop = stop
        self._trace = dict(trace)

    def prepare_for_next_attempt(self, *, state, request, response=None, error=None) -> None:
        delay, reason = self._delay(state, response, error)
        logger.warning(
            "%s: %s; retry %d of %d in %.1f s",
            request.url.rsplit("/", 1)[-1],
            reason,
            state.current_attempt + 1,
            self.max_retry_count,
            delay,
            extra=self._trace,
        )
        if self._stop.wait(delay):
            return
        state.next_attempt_requested = True
        state.increment_current_attempt()

    def _delay(self, state, response, error) -> typing.Tuple[float, str]:
        status = f"HTTP {response.status_code}" if response is not None else f"{type(error).__name__}: {error}"
        return self.interval_calculator.calculate_sleep_duration(state.current_attempt), status


class StoppableRateLimitRetry(_WaitOnEvent, RateLimitErrorRetryHandler):
    """Retry after HTTP 429, waiting the seconds that ``Retry-After`` gives."""

    def _delay(self, state, response, error) -> typing.Tuple[float, str]:
        retry_after = retry_after_seconds(response.headers if response is not None else {})
        return retry_after, f"HTTP 429, Retry-After {retry_after:g} s"


class StoppableServerErrorRetry(_WaitOnEvent, ServerErrorRetryHandler):
    """Retry after HTTP 500 or 503 with exponential backoff."""


class StoppableConnectionErrorRetry(_WaitOnEvent, ConnectionErrorRetryHandler):
    """Retry after a reset or refused connection with exponential backoff."""


def retry_after_seconds(headers: typing.Mapping) -> float:
    """Return the seconds of a ``Retry-After`` header (any case, value or list of values), else the default."""
    for name, value in headers.items():
        if name.lower() != "retry-after":
            continue
        if isinstance(value, (list, tuple)):
            value = value[0] if value else None
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            break
        if seconds >= 0:
            return seconds
        break
    return DEFAULT_RETRY_AFTER


def build_client(
    token: str,
    base_url: str,
    stop: threading.Event,
    trace: typing.Mapping,
    *,
    timeout: float = 30.0,
    backoff_factor: float = 1.0,
) -> WebClient:
    """Return a ``WebClient`` whose retries wait on ``stop``.

    Args:
        token: The bot token; never logged.
        base_url: Base URL of the Web API (``SLACK_API_URL``).
        stop: Setting it ends any wait between retries.
        trace: Logging context of the retry messages.
        timeout: Seconds per HTTP request.
        backoff_factor: Seconds before the first retry of a server or
            connection error; each later retry waits twice as long.
    """
    if not base_url.endswith("/"):
        base_url += "/"
    backoff = BackoffRetryIntervalCalculator(backoff_factor=backoff_factor)
    handlers = [
        StoppableRateLimitRetry(stop, trace, max_retry_count=RATE_LIMIT_RETRIES),
        StoppableServerErrorRetry(stop, trace, max_retry_count=ERROR_RETRIES, interval_calculator=backoff),
        StoppableConnectionErrorRetry(stop, trace, max_retry_count=ERROR_RETRIES, interval_calculator=backoff),
    ]
    return WebClient(token=token, base_url=base_url, timeout=timeout, retry_handlers=handlers)


def iterate_pages(
    client: WebClient,
    listing: Listing,
    *,
    page_size: int,
    stop: threading.Event,
    deadline: typing.Optional[float] = None,
) -> typing.Iterator[typing.Any]:
    """Yield the ``listing.field`` value of each page, following ``response_metadata.next_cursor``.

    Args:
        client: A client from :func:`build_client`.
        listing: The call to page through.
        page_size: The ``limit`` argument of each call; Slack may return fewer.
        stop: Checked before each page.
        deadline: A ``time.monotonic()`` value after which no page is requested.

    Raises:
        ListingFailed: A page failed after its retries, or the deadline passed.
        ListingStopped: ``stop`` was set.
    """
    cursor = None
    while True:
        if stop.is_set():
            raise ListingStopped()
        if deadline is not None and time.monotonic() > deadline:
            raise ListingFailed(
                listing.method,
                "timed_out",
                "the listing would outlast its lock; raise list_provider_update_frequency",
            )

        arguments = dict(listing.arguments, limit=page_size)
        if cursor:
            arguments["cursor"] = cursor
        answer = _call(client, listing.method, arguments, stop)
        yield answer.get(listing.field)

        cursor = (answer.get("response_metadata") or {}).get("next_cursor")
        if not cursor:
            return


def _call(client: WebClient, method: str, arguments: dict, stop: threading.Event) -> dict:
    try:
        response = client.api_call(method, data=form_fields(arguments))
    except SlackApiError as error:
        if stop.is_set():
            raise ListingStopped() from error
        raise _failure(method, error) from error
    except (SlackClientError, OSError, ValueError) as error:
        if stop.is_set():
            raise ListingStopped() from error
        raise ListingFailed(method, "request_failed", f"{type(error).__name__}: {error}") from error

    data = response.data
    if not isinstance(data, dict):
        raise ListingFailed(method, "invalid_response", "the body is not a JSON object")
    return data


def _failure(method: str, error: SlackApiError) -> ListingFailed:
    response = error.response
    data = response.data if response is not None and isinstance(response.data, dict) else {}
    status = getattr(response, "status_code", None)
    details = []
    if status and status != 200:
        details.append(f"HTTP {status}")
    if data.get("needed"):
        details.append(f"needs scope {data['needed']}")
    return ListingFailed(method, data.get("error") or "request_failed", ", ".join(details))
