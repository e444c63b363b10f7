"""Reload the config file on SIGHUP, keeping the old config when the new one is invalid.

``omnibot serve`` and ``omnibot worker`` call :func:`install_sighup_reload`.
On SIGHUP a background thread loads the file named by ``CONFIG_FILE`` (or
``--config``) with the same validation as at start-up, callback imports
included. A valid config is put in force with ``Runtime.replace_config``,
so every later request and every message dequeued afterwards uses it. An
invalid one is rejected: each error is logged and the old config stays.

Only the YAML file is read again. Environment variables (credentials
included) keep the values the process started with, and Python modules
that were already imported are not imported again, so a changed callback
module needs a restart. A module that the new config names for the first
time is imported.

Under gunicorn, the master handles SIGHUP by starting new workers, which
build the app from the file. :func:`guard_gunicorn_reload`, installed by
``config/gunicorn.conf.py``, first runs ``omnibot check-config`` on the file
and skips the reload when it fails, because a worker that cannot load the
config stops gunicorn altogether.
"""

import logging
import os
import signal
import subprocess
import sys
import threading

from omnibot.config import load_config
from omnibot.errors import ConfigError

logger = logging.getLogger(__name__)

CHECK_TIMEOUT = 60.0
"""Seconds the gunicorn master waits for ``omnibot check-config`` before it keeps the old workers."""

_reload_lock = threading.Lock()


def reload_config(runtime) -> bool:
    """Load the config file again and put it in force when it is valid.

    Reloads are serialised, so two quick SIGHUPs never install an older
    file after a newer one.

    Args:
        runtime: The :class:`omnibot.runtime.Runtime` whose config is replaced.

    Returns:
        True when the new config is in force, False when it was rejected
        (the errors are logged and the old config stays).
    """
    path = runtime.settings.config_file
    with _reload_lock:
        logger.info("reloading config %s", path)
        try:
            config = load_config(path, runtime.settings.environ)
        except ConfigError as error:
            for problem in error.problems:
                logger.error("config reload: %s", problem)
            logger.error(
                "config reload rejected: %s has %d error(s); the previous config stays in force",
                path,
                len(error.problems),
            )
            return False
        runtime.replace_config(config)
        logger.info(
            "config reloaded from %s: %d teams, %d bots, %d handlers, %d warning(s)",
            path,
            len(config.teams),
            len(config.bots),
            len(config.handlers),
            len(config.warnings),
        )
        return True


def install_sighup_reload(runtime) -> None:
    """Reload the config of ``runtime`` on each SIGHUP; call from the main thread.

    The signal handler only starts a thread that reloads, so the thread that
    the signal interrupted goes on at once.
    """

    def on_sighup(signum, frame):
        threading.Thread(target=reload_config, args=(runtime,), name="omnibot-config-reload", daemon=True).start()

    signal.signal(signal.SIGHUP, on_sighup)
    logger.debug("SIGHUP reloads %s", runtime.settings.config_file)


# -- gunicorn ----------------------------------------------------------------------


def config_check_passes(path, log=logger) -> bool:
    """Run ``omnibot check-config PATH`` in a new interpreter and log its problems.

    A separate process imports the callback modules fresh, so the gunicorn
    master never imports user code that its workers would then inherit.

    Returns:
        True when the check exits 0.
    """
    command = [sys.executable, "-m", "omnibot", "check-config", path]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=CHECK_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        log.error("config check of %s failed to run: %s", path, error)
        return False
    for line in (result.stdout + result.stderr).splitlines():
        if line.strip():
            (log.info if result.returncode == 0 else log.error)("check-config: %s", line)
    return result.returncode == 0


def guard_gunicorn_reload(server) -> None:
    """Make the gunicorn master check the config file before it reloads on SIGHUP.

    Use as gunicorn's ``when_ready`` hook. When ``omnibot check-config``
    fails, the master logs the errors and keeps its current workers with
    the old config. Otherwise gunicorn reloads as usual.

    NOTE: gunicorn has no hook that can cancel a reload, so this replaces
    the arbiter's ``handle_hup`` method, which gunicorn's main loop looks up
    by name for each signal (checked with gunicorn 27.0).
    """
    original = server.handle_hup

    def handle_hup():
        path = os.environ.get("CONFIG_FILE")
        if not path:
            server.log.error("SIGHUP: CONFIG_FILE is not set; gunicorn's reload goes on unchecked")
        elif not config_check_passes(path, server.log):
            server.log.error("SIGHUP: %s is invalid; keeping the running workers and their config", path)
            return
        original()

    server.handle_hup = handle_hup
