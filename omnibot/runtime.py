"""The shared state of one omnibot process: config, backends and Slack clients.

The web app and the worker each hold one :class:`Runtime`. Backends are
opened on first use, so a gunicorn master that forks workers never shares a
SQLite connection or a Redis socket with them.
"""

import logging
import threading
import typing

from omnibot import backends
from omnibot.authnz import envoy_checks
from omnibot.slack.client import SlackClients
from omnibot.slack.data import SlackData
from omnibot.slack.recent import RecentEntries
from omnibot.stats import Stats, TimedSlackData
from omnibot.verification import RequestVerifier

logger = logging.getLogger(__name__)


class Runtime:
    """Config, settings and collaborators of one process.

    Args:
        settings: A :class:`omnibot.settings.Settings`.
        config: The loaded :class:`omnibot.config.Config`.
        queue: A queue backend; opened from ``settings`` when None.
        cache: A cache backend; opened from ``settings`` when None.
        fail_fast: Open Redis backends with short timeouts (web processes).
    """

    def __init__(self, settings, config, queue=None, cache=None, *, fail_fast=False):
        self.settings = settings
        self.fail_fast = fail_fast
        self._queue = queue
        self._cache = cache
        self._lock = threading.Lock()
        self.stats = Stats(settings)
        self.clients = SlackClients(settings.slack_api_url, stats=self.stats)
        self.recent_lookups = RecentEntries()
        self._install(config)

    def _install(self, config):
        # Access rules are compiled here, so a bad regex fails now and not
        # on a request. One assignment of a tuple, so a thread never sees a
        # config with the verifier or rules of another.
        rules = envoy_checks.compile_rules(config.authorization or {})
        self._state = (config, RequestVerifier(config.bots.values()), rules)

    @property
    def config(self):
        return self._state[0]

    @property
    def verifier(self) -> RequestVerifier:
        return self._state[1]

    @property
    def access_rules(self):
        """Return the compiled ``authorization`` permissions and bindings of the config in force."""
        return self._state[2]

    def replace_config(self, config) -> None:
        """Put a newly loaded config in force for every later request and message."""
        self._install(config)
        logger.info("config %s is now in force (%d bots)", config.path, len(config.bots))

    @property
    def queue(self):
        if self._queue is None:
            with self._lock:
                if self._queue is None:
                    self._queue = backends.open_queue(
                        self.settings.queue_url,
                        self.settings.data_dir,
                        visibility_timeout=self.settings.visibility_timeout,
                        max_attempts=self.settings.max_attempts,
                        backoff_base=self.settings.retry_backoff_base,
                        fail_fast=self.fail_fast,
                        spool=self.settings.queue_spool,
                    )
        return self._queue

    @property
    def cache(self):
        if self._cache is None:
            with self._lock:
                if self._cache is None:
                    self._cache = backends.open_cache(
                        self.settings.cache_url, self.settings.data_dir, fail_fast=self.fail_fast
                    )
        return self._cache

    @property
    def slack_data(self) -> SlackData:
        return TimedSlackData(self.cache, self.clients, self.stats, self.recent_lookups)

    def close(self) -> None:
        """Close the backends this runtime opened and its Slack connections, and retire this process's live metrics."""
        for backend in (self._queue, self._cache):
            if backend is not None:
                backend.close()
        self.clients.close()
        self.stats.close()
