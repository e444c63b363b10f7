"""Keep the cached Slack directory fresh: users, conversations and custom emoji.

Lists them for each team's primary_bot every list_provider_update_frequency
seconds (120 by default). Several watchers may share one cache; each kind is
refreshed by one of them per period. Stops on SIGTERM or SIGINT and reloads
the config file on SIGHUP.
"""

import logging
import os
import sys

from omnibot.backends.redis_connection import redact_url
from omnibot.cli import add_config_argument
from omnibot.cli.common import on_signals, runtime_or_exit, settings_from_args
from omnibot.logs import configure_logging
from omnibot.reload import install_sighup_reload
from omnibot.watcher import Outcome, Watcher

logger = logging.getLogger(__name__)


def add_arguments(parser):
    add_config_argument(parser)
    parser.add_argument(
        "--once",
        action="store_true",
        help="refresh every kind that is due once, then exit (status 1 when a refresh failed)",
    )
    parser.add_argument(
        "--grace-period",
        type=float,
        default=10.0,
        help="seconds to wait for a page request in flight on SIGTERM (default 10)",
    )


def run(args):
    configure_logging("text" if sys.stderr.isatty() else "json")
    settings = settings_from_args(args)
    runtime = runtime_or_exit(settings)
    watcher = Watcher(runtime)
    on_signals(lambda signum: watcher.request_stop())
    install_sighup_reload(runtime)

    cache = redact_url(settings.cache_url) if settings.cache_url else os.path.join(settings.data_dir, "cache.db")
    logger.info(
        "omnibot watcher %d started (cache %s, refresh every %g s)",
        os.getpid(),
        cache,
        runtime.config.list_provider_update_frequency,
    )

    if args.once:
        outcomes = watcher.run_once()
        runtime.close()
        failed = any(outcome is Outcome.FAILED for outcome in outcomes.values())
        logger.info("omnibot watcher %d finished one pass: %s", os.getpid(), _summary(outcomes))
        return 1 if failed else 0

    watcher.start()
    watcher.wait()
    finished = watcher.stop(args.grace_period)
    runtime.close()
    logger.info("omnibot watcher %d stopped", os.getpid())
    return 0 if finished else 1


def _summary(outcomes) -> str:
    return ", ".join(f"{team}/{kind} {outcome.value}" for (team, kind), outcome in outcomes.items()) or "no teams"
