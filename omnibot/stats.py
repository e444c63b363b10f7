"""Metrics of one omnibot process: statsd with omnibot's names, and Prometheus.

:class:`Stats` sends every measurement to both sinks. statsd is a UDP send
per metric and does nothing when ``STATSD_HOST`` is unset. Prometheus
metrics live in memory and are read by ``GET /metrics``
(:mod:`omnibot.routes.metrics`).

When ``PROMETHEUS_MULTIPROC_DIR`` is set before the process starts,
prometheus_client keeps every value in memory-mapped files in that folder
and ``/metrics`` adds up the files of every process that writes there.
gunicorn with several workers needs it, because each worker would
otherwise report only its own requests. ``omnibot worker`` and ``omnibot
watcher`` on the same machine can share the folder, so that their handler,
callback and Slack API metrics appear in the web process's ``/metrics``.

Queue depth, dead letters and the watcher's last full listings are read
from the shared backends at scrape time, so they are the same whichever
process serves the scrape.
"""

import contextlib
import logging
import os
import re
import time
import typing

import prometheus_client
import statsd
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess, values
from prometheus_client.core import GaugeMetricFamily

from omnibot.errors import BackendUnavailable
from omnibot.slack import directory
from omnibot.slack.data import SlackData

logger = logging.getLogger(__name__)

MULTIPROCESS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

# statsd name parts of each queued message kind: the prefix of its
# ``.process.attempt.<name>`` and ``.process.failed.<name>`` counters, and its timer.
PROCESS_METRICS = {
    "event": ("event", "process_event"),
    "slash_command": ("slash_command", "process_slash_command"),
    "interactive_component": ("interactive_component", "process_interactive_component"),
}

# The statsd timer of each watcher kind; omnibot named the conversations timer in the singular.
WATCH_TIMERS = {
    directory.USERS: "watch.users",
    directory.CONVERSATIONS: "watch.conversation",
    directory.EMOJI: "watch.emoji",
}

# omnibot's parser timers, here measured around each name lookup of a parse
# (``extract_*``) or of an ``omnibot_parse`` un-parse (``unextract_*``).
LOOKUP_TIMERS = {
    "user_name": "parser.extract_users",
    "channel_name": "parser.extract_channels",
    "user_id_by_name": "parser.unextract_users",
    "channel_id_by_name": "parser.unextract_channels",
}

MAX_NAME_PART = 100
_UNSAFE_NAME_CHARACTERS = re.compile(r"[^A-Za-z0-9_-]+")

# Seconds. Slack waits 3 s for an HTTP response, and a callback may run up to CALLBACK_TIMEOUT.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Seconds from an event's event_ts. The last buckets cover Slack's retries, which
# come up to about 5 minutes after the first delivery.
DELAY_BUCKETS = (0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)


def metric_name_part(value: typing.Any) -> str:
    """Return ``value`` as one safe part of a dotted statsd name.

    A leading ``/`` is dropped, so ``/echo`` gives ``echo`` as in omnibot's
    names. Every run of characters other than ASCII letters, digits, ``_``
    and ``-`` becomes one ``_``, so a dot or a space cannot add a level to
    the name. The result is cut to :data:`MAX_NAME_PART` characters, and an
    empty result gives ``unknown``.
    """
    text = "" if value is None else str(value).lstrip("/")
    text = _UNSAFE_NAME_CHARACTERS.sub("_", text).strip("_")
    return text[:MAX_NAME_PART] or "unknown"


def seconds_since(timestamp: typing.Any, now: typing.Optional[float] = None) -> typing.Optional[float]:
    """Return the seconds from a Slack timestamp (``"1712345678.000100"``) to ``now``; None when it is not a number."""
    try:
        start = float(timestamp)
    except (TypeError, ValueError):
        return None
    return (time.time() if now is None else now) - start


class Stats:
    """The metrics of one process, built from :class:`omnibot.settings.Settings`.

    Every method is safe to call from several threads. A statsd packet that
    cannot be sent (socket error) is dropped without an error.

    Args:
        settings: Reads ``statsd_host``, ``statsd_port`` and ``statsd_prefix``.
    """

    def __init__(self, settings):
        self.statsd = _statsd_client(settings)
        self.multiprocess_dir = _multiprocess_dir()
        # In multi-process mode the values live in files, so the metrics
        # are not registered anywhere and each scrape reads the files.
        # NOTE: two Stats in one process then write the same file slots and
        # overwrite each other's counts; omnibot builds one Runtime per process.
        self.registry = None if self.multiprocess_dir else CollectorRegistry(auto_describe=True)
        self.metrics = _PrometheusMetrics(self.registry)
        # Label children of the per-request metrics, so that the request path
        # skips prometheus_client's label validation after the first use.
        self._children: typing.Dict[tuple, typing.Any] = {}

    # -- generic statsd ----------------------------------------------------

    def incr(self, name: str, count: int = 1) -> None:
        """Add ``count`` to the statsd counter ``name``."""
        if self.statsd is not None:
            self.statsd.incr(name, count)

    def timing(self, name: str, milliseconds: float) -> None:
        """Send one statsd timer value in milliseconds."""
        if self.statsd is not None:
            self.statsd.timing(name, milliseconds)

    # -- web: queueing and acknowledgement ---------------------------------

    def message_queued(self, kind: str, bot_name: str) -> None:
        """Count a message put on the queue: ``sqs.sent`` and ``sqs.<bot>.sent``."""
        self.incr("sqs.sent")
        self.incr(f"sqs.{metric_name_part(bot_name)}.sent")
        self._child(self.metrics.queued, kind, bot_name).inc()

    def event_acknowledged(self, event_ts: typing.Any, retried: bool) -> typing.Optional[float]:
        """Record the delay from an event's ``event_ts`` to its acknowledgement.

        Sends ``pre_sqs_delivery_retry_latency`` for a Slack retry and
        ``pre_sqs_delivery_latency`` otherwise, in milliseconds.

        Returns:
            The delay in seconds, or None when ``event_ts`` is not a number.
        """
        delay = seconds_since(event_ts)
        if delay is None:
            return None
        name = "pre_sqs_delivery_retry_latency" if retried else "pre_sqs_delivery_latency"
        self.timing(name, int(delay * 1000))
        self._child(self.metrics.ack_delay, "true" if retried else "false").observe(max(0.0, delay))
        return delay

    # -- worker: messages --------------------------------------------------

    def message_received(self, kind: typing.Optional[str]) -> None:
        """Count a message taken from the queue: ``sqs.received``."""
        self.incr("sqs.received")
        self.metrics.received.labels(str(kind)).inc()

    @contextlib.contextmanager
    def handling_message(self, kind: typing.Optional[str]) -> typing.Iterator[None]:
        """Time the handling of one leased message as ``handle_message`` and count it as in progress."""
        self.metrics.in_progress.inc()
        started = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - started
            self.metrics.in_progress.dec()
            self.timing("handle_message", elapsed * 1000)
            self.metrics.message_duration.labels(str(kind)).observe(elapsed)

    def message_finished(self, kind: typing.Optional[str], outcome: str) -> None:
        """Count how a leased message ended: ``acked``, ``retried``, ``dead_lettered`` or ``stalled``.

        ``stalled`` means a backend was unavailable, so the message stays
        leased until its visibility timeout.
        """
        self.metrics.finished.labels(str(kind), outcome).inc()

    def event_delivered(self, event_ts: typing.Any) -> typing.Optional[float]:
        """Record the delay from an event's ``event_ts`` to its processing as ``delivery_latency`` (ms).

        Returns:
            The delay in seconds, or None when ``event_ts`` is not a number.
        """
        delay = seconds_since(event_ts)
        if delay is None:
            return None
        self.timing("delivery_latency", int(delay * 1000))
        self.metrics.delivery_delay.observe(max(0.0, delay))
        return delay

    @contextlib.contextmanager
    def processing(self, kind: str, subject: typing.Any) -> typing.Iterator[None]:
        """Count and time the processing of one message with omnibot's names.

        For an event of type ``message`` that is ``event.process.attempt.message``,
        the ``process_event`` timer, and ``event.process.failed.message`` when
        the block raises. ``subject`` is the event type, the slash command or
        the interactive component's callback_id. The exception is re-raised.
        """
        prefix, timer = PROCESS_METRICS.get(kind, (metric_name_part(kind), f"process_{metric_name_part(kind)}"))
        part = metric_name_part(subject)
        self.incr(f"{prefix}.process.attempt.{part}")
        started = time.perf_counter()
        try:
            yield
        except BaseException:
            self.incr(f"{prefix}.process.failed.{part}")
            raise
        finally:
            self.timing(timer, (time.perf_counter() - started) * 1000)

    def event_outcome(self, outcome: str) -> None:
        """Count a processed event as ``event.<outcome>``: ``handled``, ``ignored``, ``defaulted`` or ``unsupported``."""
        self.incr(f"event.{outcome}")
        self.metrics.events.labels(outcome).inc()

    def handler_finished(self, handler: str, seconds: float, succeeded: bool) -> None:
        """Record one run of a handler's callbacks, results included."""
        self.metrics.handler_runs.labels(handler, "ok" if succeeded else "failed").inc()
        self.metrics.handler_duration.labels(handler).observe(seconds)

    def callback_finished(self, callback: str, seconds: float, succeeded: bool) -> None:
        """Record one call of a callback module."""
        self.metrics.callback_calls.labels(callback, "ok" if succeeded else "failed").inc()
        self.metrics.callback_duration.labels(callback).observe(seconds)

    # -- Slack and the watcher ---------------------------------------------

    def slack_call(self, method: str, result: str, seconds: float) -> None:
        """Record one Slack Web API call; ``result`` is ``ok`` or Slack's ``error`` code."""
        self.metrics.slack_calls.labels(method, result[:MAX_NAME_PART]).inc()
        self.metrics.slack_duration.labels(method).observe(seconds)

    def watch_finished(self, team: str, kind: str, seconds: float, succeeded: bool) -> None:
        """Record one watcher refresh of a directory kind; a success is timed as ``watch.<kind>``."""
        if succeeded:
            self.timing(WATCH_TIMERS.get(kind, f"watch.{metric_name_part(kind)}"), seconds * 1000)
        self.metrics.watch_refreshes.labels(team, kind, "ok" if succeeded else "failed").inc()
        self.metrics.watch_duration.labels(kind).observe(seconds)

    def lookup_timer(self, lookup: str):
        """Return a context manager timing a name lookup under omnibot's parser timer name."""
        name = LOOKUP_TIMERS[lookup]
        if self.statsd is None:
            return contextlib.nullcontext()
        return self.statsd.timer(name)

    # -- web: requests and scrapes -----------------------------------------

    def http_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Record one HTTP request and the status of its response; ``route`` is the URL rule, not the path."""
        self._child(self.metrics.requests, method, route, status).inc()
        self._child(self.metrics.request_duration, method, route, status).observe(seconds)

    def _child(self, metric, *labels):
        """Return ``metric.labels(*labels)`` (labels turned to str), kept after the first call."""
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = metric.labels(*(str(label) for label in labels))
            self._children[key] = child
        return child

    def render(self, runtime=None) -> typing.Tuple[bytes, str]:
        """Return the Prometheus text exposition and its content type.

        Args:
            runtime: When given, the queue counts and the watcher's last full
                listings are read from its backends and added.
        """
        if self.multiprocess_dir:
            collectors = [multiprocess.MultiProcessCollector(None, path=self.multiprocess_dir)]
        else:
            collectors = [self.registry]
        if runtime is not None:
            collectors.append(_BackendStateCollector(runtime))
        return prometheus_client.generate_latest(_Scrape(collectors)), prometheus_client.CONTENT_TYPE_LATEST

    def close(self) -> None:
        """Remove this process's live gauges (messages in progress) from the multi-process folder.

        gunicorn's ``child_exit`` hook does the same for its workers, which
        never call this. The statsd socket stays open, because a thread that
        is still finishing a message may send one more metric.
        """
        if self.multiprocess_dir:
            multiprocess.mark_process_dead(os.getpid(), self.multiprocess_dir)


class _PrometheusMetrics:
    """The Prometheus metrics a process writes; names are documented in docs/observability.rst."""

    def __init__(self, registry):
        def counter(name, documentation, labels):
            return Counter(name, documentation, labels, registry=registry)

        def histogram(name, documentation, labels, buckets=DURATION_BUCKETS):
            return Histogram(name, documentation, labels, registry=registry, buckets=buckets)

        self.requests = counter("omnibot_http_requests", "HTTP requests answered.", ["method", "route", "status"])
        self.request_duration = histogram(
            "omnibot_http_request_duration_seconds", "Time to answer an HTTP request.", ["method", "route", "status"]
        )
        self.queued = counter(
            "omnibot_messages_queued", "Messages put on the queue by the web process.", ["kind", "bot"]
        )
        self.ack_delay = histogram(
            "omnibot_event_ack_delay_seconds",
            "Time from an event's event_ts to its acknowledgement.",
            ["retry"],
            DELAY_BUCKETS,
        )
        self.received = counter("omnibot_messages_received", "Messages taken from the queue.", ["kind"])
        self.finished = counter(
            "omnibot_messages_finished", "Leased messages by how their handling ended.", ["kind", "outcome"]
        )
        self.message_duration = histogram(
            "omnibot_message_duration_seconds", "Time to handle one leased message, ack included.", ["kind"]
        )
        self.in_progress = Gauge(
            "omnibot_messages_in_progress",
            "Messages being handled by worker threads now.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.delivery_delay = Histogram(
            "omnibot_event_delivery_delay_seconds",
            "Time from an event's event_ts to the start of its processing.",
            registry=registry,
            buckets=DELAY_BUCKETS,
        )
        self.events = counter("omnibot_events", "Processed events by outcome.", ["outcome"])
        self.handler_runs = counter("omnibot_handler_runs", "Runs of a handler's callbacks.", ["handler", "result"])
        self.handler_duration = histogram(
            "omnibot_handler_duration_seconds",
            "Time to run a handler's callbacks and apply their results.",
            ["handler"],
        )
        self.callback_calls = counter("omnibot_callback_calls", "Calls of callback modules.", ["callback", "result"])
        self.callback_duration = histogram(
            "omnibot_callback_duration_seconds", "Time of one callback call.", ["callback"]
        )
        self.slack_calls = counter("omnibot_slack_api_calls", "Slack Web API calls by result.", ["method", "result"])
        self.slack_duration = histogram(
            "omnibot_slack_api_duration_seconds", "Time of a Slack Web API call, retries included.", ["method"]
        )
        self.watch_refreshes = counter(
            "omnibot_watcher_refreshes", "Watcher refreshes of a directory kind.", ["team", "kind", "result"]
        )
        self.watch_duration = histogram(
            "omnibot_watcher_refresh_duration_seconds", "Time of one watcher refresh.", ["kind"]
        )


class _BackendStateCollector:
    """Read the queue counts and the watcher's last full listings from the backends at scrape time."""

    def __init__(self, runtime):
        self.runtime = runtime

    def collect(self):
        up = GaugeMetricFamily(
            "omnibot_backend_up", "1 when the last read of the backend at scrape time worked.", labels=["backend"]
        )

        queue_messages = GaugeMetricFamily(
            "omnibot_queue_messages", "Messages in the queue by state (dead: dead letters).", labels=["state"]
        )
        try:
            counts = self.runtime.queue.stats()
        except BackendUnavailable as error:
            logger.warning("could not read the queue counts for /metrics: %s", error)
            up.add_metric(["queue"], 0)
        else:
            for state, count in sorted(counts.items()):
                queue_messages.add_metric([state], count)
            up.add_metric(["queue"], 1)
        yield queue_messages

        refreshed = GaugeMetricFamily(
            "omnibot_watcher_last_success_timestamp_seconds",
            "Unix time of the last full listing of a directory kind in the cache.",
            labels=["team", "kind"],
        )
        try:
            for team, kind, timestamp in self._last_listings():
                refreshed.add_metric([team, kind], timestamp)
        except BackendUnavailable as error:
            logger.warning("could not read the watcher's last listings for /metrics: %s", error)
            up.add_metric(["cache"], 0)
        else:
            up.add_metric(["cache"], 1)
        yield refreshed
        yield up

    def _last_listings(self):
        config = self.runtime.config
        data = self.runtime.slack_data
        for team in config.teams.values():
            bot = config.primary_bot(team)
            if bot is None:
                continue
            for kind in directory.KINDS:
                timestamp = data.refreshed_at(bot, kind)
                if timestamp is not None:
                    yield team.name, kind, timestamp


class _Scrape:
    """Several collectors read as one, for one call of ``generate_latest``."""

    def __init__(self, collectors):
        self.collectors = collectors

    def collect(self):
        for collector in self.collectors:
            yield from collector.collect()


class TimedSlackData(SlackData):
    """A :class:`SlackData` whose resolvers time each name lookup with omnibot's parser timers.

    Args:
        cache: The cache backend.
        clients: The :class:`omnibot.slack.client.SlackClients`.
        stats: The process's :class:`Stats`.
        recent: See :class:`SlackData`.
    """

    def __init__(self, cache, clients, stats: Stats, recent=None):
        super().__init__(cache, clients, recent)
        self.stats = stats

    def resolver(self, bot):
        resolver = super().resolver(bot)
        if self.stats.statsd is None:
            return resolver
        return _TimedResolver(resolver, self.stats)


class _TimedResolver:
    """Forward each lookup to a resolver inside the matching timer of :data:`LOOKUP_TIMERS`."""

    def __init__(self, resolver, stats: Stats):
        self._resolver = resolver
        self._stats = stats

    def user_name(self, user_id):
        with self._stats.lookup_timer("user_name"):
            return self._resolver.user_name(user_id)

    def channel_name(self, channel_id):
        with self._stats.lookup_timer("channel_name"):
            return self._resolver.channel_name(channel_id)

    def user_id_by_name(self, name):
        with self._stats.lookup_timer("user_id_by_name"):
            return self._resolver.user_id_by_name(name)

    def channel_id_by_name(self, name):
        with self._stats.lookup_timer("channel_id_by_name"):
            return self._resolver.channel_id_by_name(name)


def _statsd_client(settings) -> typing.Optional[statsd.StatsClient]:
    """Return a statsd client for the settings, or None when ``STATSD_HOST`` is unset or cannot be resolved."""
    if not settings.statsd_host:
        return None
    try:
        client = statsd.StatsClient(settings.statsd_host, settings.statsd_port, prefix=settings.statsd_prefix or None)
    except OSError as error:
        # A name that does not resolve now would fail every send, so metrics
        # are off until the process restarts rather than failing each request.
        logger.error(
            "statsd disabled: cannot resolve STATSD_HOST %s port %s: %s",
            settings.statsd_host,
            settings.statsd_port,
            error,
        )
        return None
    logger.info(
        "sending statsd metrics to %s:%s with prefix %r",
        settings.statsd_host,
        settings.statsd_port,
        settings.statsd_prefix,
    )
    return client


def _multiprocess_dir() -> typing.Optional[str]:
    """Return ``PROMETHEUS_MULTIPROC_DIR`` when prometheus_client runs in multi-process mode, else None.

    prometheus_client chooses its mode once, when it is first imported. A
    folder set after that is ignored with a warning, because the values of
    this process would not be written there.
    """
    folder = os.environ.get(MULTIPROCESS_DIR_VARIABLE)
    if not folder:
        return None
    if values.ValueClass is values.MutexValue:
        logger.warning(
            "%s is set but prometheus_client was imported before it was, so this process reports only its own metrics",
            MULTIPROCESS_DIR_VARIABLE,
        )
        return None
    return folder
