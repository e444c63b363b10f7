"""Helpers shared by the sub-commands."""

import logging
import signal
import sys

from omnibot.bootstrap import build_runtime
from omnibot.errors import ConfigError
from omnibot.settings import Settings

logger = logging.getLogger(__name__)


def settings_from_args(args, **overrides) -> Settings:
    """Build settings from the environment, with ``--config`` and other flags winning.

    An environment variable with an invalid value prints one line naming it
    and exits with status 2.
    """
    try:
        return Settings.from_env(config_file=getattr(args, "config", None), **overrides)
    except ValueError as error:
        print(f"omnibot: {error}", file=sys.stderr)
        sys.exit(2)


def runtime_or_exit(settings):
    """Build the runtime, or print every config problem and exit with status 1."""
    try:
        return build_runtime(settings)
    except ConfigError as error:
        problems = sorted(error.problems + error.warnings, key=lambda problem: getattr(problem, "line", None) or 0)
        for problem in problems:
            print(problem, file=sys.stderr)
        print(f"omnibot: config has {len(error.problems)} error(s); not starting", file=sys.stderr)
        sys.exit(1)


def on_signals(handler, signals=(signal.SIGTERM, signal.SIGINT)) -> None:
    """Call ``handler(signum)`` on each of ``signals`` (main thread only)."""
    for signum in signals:
        signal.signal(signum, lambda number, frame: handler(number))
