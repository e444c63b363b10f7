"""The watcher: keeps the cached Slack directory of every team fresh.

For each team's ``primary_bot`` it lists users (``users.list``),
conversations (``conversations.list``) and custom emoji (``emoji.list``),
and stores them page by page (see :mod:`omnibot.slack.directory`). Each
kind of each team is refreshed at most once per
``list_provider_update_frequency`` seconds across every watcher that shares
the cache: a watcher takes the kind's lock in the cache backend, then
records the start of the run as the kind's last-run mark, which expires
after one period. A watcher that finds the lock taken, or the mark present,
skips the kind.

A refresh that fails after its retries is logged, and the next one starts
when the period is over. The entries already in the cache stay.
"""

import enum
import logging
import threading
import time
import typing

from omnibot.errors import BackendUnavailable
from omnibot.slack import directory, listing

logger = logging.getLogger(__name__)

# The limit of each list call. Large pages mean fewer calls of Slack's
# rate-limited list methods; Slack documents 1000 as the maximum limit of
# conversations.list, and any page may hold fewer items than asked for.
PAGE_SIZE = 1000

# Seconds the lock of a kind lasts at least, and at least LOCK_PERIODS
# refresh periods. A refresh still running when its lock would expire stops,
# so two refreshes of one kind never overlap. A watcher that dies holding a
# lock delays that kind until the lock expires.
MIN_LOCK_TIMEOUT = 300.0
LOCK_PERIODS = 3

# Bounds of the pause between two passes over the teams, in seconds.
MIN_PAUSE = 1.0
PAUSE_AFTER_ERROR = 30.0


class Outcome(str, enum.Enum):
    """The result of :meth:`Watcher.run_once` for one kind of one team."""

    REFRESHED = "refreshed"
    RECENT = "recent"  # another run started less than one period ago
    BUSY = "busy"  # another watcher holds the lock
    FAILED = "failed"
    STOPPED = "stopped"
    SKIPPED = "skipped"  # no primary bot or no bot token


class Watcher:
    """Refresh the Slack directory of every team, once or in a background thread.

    Args:
        runtime: The :class:`omnibot.runtime.Runtime`; its config in force is
            read at every pass, so a reloaded config applies at the next one.
        page_size: The ``limit`` of each list call.
        stop_event: The event that stops the thread and interrupts waits; a
            new one when None.
    """

    def __init__(self, runtime, *, page_size: int = PAGE_SIZE, stop_event: typing.Optional[threading.Event] = None):
        self.runtime = runtime
        self.page_size = page_size
        self._stop = stop_event if stop_event is not None else threading.Event()
        self._thread: typing.Optional[threading.Thread] = None
        self._warned: typing.Set[typing.Tuple[str, str]] = set()

    # -- one pass ----------------------------------------------------------

    def run_once(self) -> typing.Dict[typing.Tuple[str, str], Outcome]:
        """Refresh every kind of every team that is due, in this thread.

        Returns:
            The outcome per ``(team name, kind)``.
        """
        config = self.runtime.config
        bots = self._primary_bots(config)
        outcomes = {}
        for team in config.teams.values():
            bot = bots.get(team.name)
            for kind in directory.KINDS:
                if self._stop.is_set():
                    return outcomes
                if bot is None:
                    outcomes[(team.name, kind)] = Outcome.SKIPPED
                else:
                    outcomes[(team.name, kind)] = self._refresh_if_due(bot, kind, config.list_provider_update_frequency)
        return outcomes

    def _primary_bots(self, config) -> typing.Dict[str, typing.Any]:
        """Return the primary bot of each team that has one with a bot token, by team name."""
        bots = {}
        for team in config.teams.values():
            bot = config.primary_bot(team)
            if bot is None:
                self._warn_once(team.name, "team %s has no primary_bot, so its Slack directory is not refreshed", team.name)
            elif not bot.credentials.bot_token:
                self._warn_once(
                    team.name,
                    "primary bot %s of team %s has no bot token (CREDENTIALS_SLACK_OAUTH_BOT_TOKEN_%s), "
                    "so its Slack directory is not refreshed",
                    bot.name,
                    team.name,
                    bot.app_id,
                )
            else:
                bots[team.name] = bot
        return bots

    def _warn_once(self, team_name: str, message: str, *args) -> None:
        if (team_name, message) not in self._warned:
            self._warned.add((team_name, message))
            logger.warning(message, *args)

    def _refresh_if_due(self, bot, kind: str, frequency: float) -> Outcome:
        team_id = bot.team.team_id
        lock_timeout = max(MIN_LOCK_TIMEOUT, LOCK_PERIODS * frequency)
        mark_key = directory.cache_key(team_id, "watcher_run", kind)
        cache = self.runtime.cache
        trace = dict(bot.trace, kind=kind)

        try:
            with cache.lock(f"watcher:{team_id}:{kind}", lock_timeout) as held:
                if not held:
                    logger.debug("another watcher is refreshing %s", kind, extra=trace)
                    return Outcome.BUSY
                if not cache.add(mark_key, repr(time.time()), ttl=frequency):
                    return Outcome.RECENT

                # Stop a few seconds before the lock expires, so that the
                # next holder never overlaps this run.
                deadline = time.monotonic() + lock_timeout - min(10.0, lock_timeout / 10)
                outcome = self._refresh(bot, kind, frequency, deadline, trace)
                if outcome is Outcome.STOPPED:
                    # The kind was not refreshed, so the next watcher may do it at once.
                    cache.delete(mark_key)
                return outcome
        except BackendUnavailable as error:
            logger.error("cache backend unavailable while refreshing %s: %s", kind, error, extra=trace)
            return Outcome.FAILED

    def _refresh(self, bot, kind: str, frequency: float, deadline: float, trace: dict) -> Outcome:
        started = time.monotonic()
        spec = listing.LISTINGS[kind]
        client = listing.build_client(
            bot.credentials.bot_token, self.runtime.settings.slack_api_url, self._stop, trace
        )
        writer = directory.DirectoryWriter(
            self.runtime.cache, bot.team.team_id, kind, directory.entry_ttl(frequency)
        )
        pages = 0

        try:
            for page in listing.iterate_pages(client, spec, page_size=self.page_size, stop=self._stop, deadline=deadline):
                writer.write_page(page)
                pages += 1
            writer.finish()
        except listing.ListingStopped:
            logger.info("stopped refreshing %s after %d pages", kind, pages, extra=trace)
            return Outcome.STOPPED
        except listing.ListingFailed as error:
            self.runtime.stats.watch_finished(bot.team.name, kind, time.monotonic() - started, False)
            logger.error(
                "refreshing %s failed after %d pages: %s; the cached entries stay, next try in %.0f s",
                kind,
                pages,
                error,
                frequency,
                extra=trace,
            )
            return Outcome.FAILED

        self.runtime.stats.watch_finished(bot.team.name, kind, time.monotonic() - started, True)
        logger.info(
            "refreshed %s: %d entries in %d pages, %.1f s",
            kind,
            writer.count,
            pages,
            time.monotonic() - started,
            extra=trace,
        )
        return Outcome.REFRESHED

    # -- the thread ----------------------------------------------------------

    def start(self) -> "Watcher":
        """Start the refresh loop in a daemon thread and return at once."""
        self._thread = threading.Thread(target=self._loop, name="omnibot-watcher", daemon=True)
        self._thread.start()
        return self

    def request_stop(self) -> None:
        """Ask the loop to stop; waits between retries and passes end at once. Safe in signal handlers."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def wait(self) -> None:
        """Block until :meth:`request_stop` is called from another thread or a signal handler."""
        while not self._stop.wait(0.5):
            pass

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop the loop and wait up to ``timeout`` seconds for the thread.

        A page request in flight is not interrupted, so the thread may take up
        to the HTTP timeout to end.

        Returns:
            True when the thread ended (or never started).
        """
        self._stop.set()
        if self._thread is None:
            return True
        self._thread.join(timeout)
        finished = not self._thread.is_alive()
        if finished:
            logger.info("watcher stopped")
        else:
            logger.warning("watcher thread still running %.0f s after the stop request", timeout)
        return finished

    def _loop(self) -> None:
        logger.info("watcher started")
        while not self._stop.is_set():
            try:
                self.run_once()
                pause = self._pause()
            except Exception:  # noqa: BLE001 - one failed pass must not end the thread
                logger.exception("watcher pass failed; next pass in %.0f s", PAUSE_AFTER_ERROR)
                pause = PAUSE_AFTER_ERROR
            self._stop.wait(pause)

    def _pause(self) -> float:
        """Return the seconds until the earliest last-run mark expires, between MIN_PAUSE and one period."""
        config = self.runtime.config
        frequency = config.list_provider_update_frequency
        keys = [
            directory.cache_key(bot.team.team_id, "watcher_run", kind)
            for bot in self._primary_bots(config).values()
            for kind in directory.KINDS
        ]
        if not keys:
            return frequency

        now = time.time()
        pause = frequency
        for value in self.runtime.cache.get_many(keys):
            started = _as_float(value)
            due = (started + frequency - now) if started is not None else 0.0
            pause = min(pause, due)
        return max(MIN_PAUSE, pause)


def _as_float(value) -> typing.Optional[float]:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
