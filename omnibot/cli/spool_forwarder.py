"""Forward this host's spool files to the Redis queue, for QUEUE_URL=redis://... with QUEUE_SPOOL=1.

One process per web host; config/gunicorn.conf.py starts it beside the web
workers. It lowers its CPU priority, so that under a burst the web workers
acknowledge first while the lines wait on disk. While it runs, the web
workers leave the forwarding to it; when it stops or dies, they forward
again within a second. Stops on SIGTERM or SIGINT after one last forward.
"""

import logging
import os
import sys
import threading

from omnibot import backends
from omnibot.cli import add_config_argument
from omnibot.cli.common import on_signals, settings_from_args
from omnibot.errors import BackendUnavailable
from omnibot.logs import configure_logging

logger = logging.getLogger(__name__)

DEFAULT_NICE = 10

# Seconds between two checks that the parent process still runs, with --parent-pid.
_PARENT_CHECK_INTERVAL = 1.0


def add_arguments(parser):
    add_config_argument(parser)
    parser.add_argument(
        "--nice",
        type=int,
        default=DEFAULT_NICE,
        help=f"add this to the process's nice value; 0 keeps the priority of the web workers (default {DEFAULT_NICE})",
    )
    parser.add_argument(
        "--parent-pid",
        type=int,
        metavar="PID",
        help="stop once process PID is no longer the parent of this one; config/gunicorn.conf.py passes the gunicorn master's",
    )


def run(args):
    configure_logging("text" if sys.stderr.isatty() else "json")
    settings = settings_from_args(args)
    if not backends.redis_spool_in_use(settings.queue_url, settings.queue_spool):
        print(
            "omnibot spool-forwarder: nothing to forward; it serves a Redis queue with spool files "
            "(QUEUE_URL=redis://... and QUEUE_SPOOL=1), and the SQLite queue imports its spool files in the workers",
            file=sys.stderr,
        )
        return 2
    if args.nice:
        try:
            os.nice(args.nice)
        except OSError as error:
            # Only root may lower the nice value.
            print(f"omnibot spool-forwarder: cannot add {args.nice} to the nice value: {error}", file=sys.stderr)
            return 2

    try:
        queue = backends.open_queue(settings.queue_url, settings.data_dir, spool=True)
    except ValueError as error:
        print(f"omnibot spool-forwarder: invalid queue setting: {error}", file=sys.stderr)
        return 2
    except BackendUnavailable as error:
        # A Redis Cluster URL connects when the queue is opened. The web workers forward meanwhile.
        print(f"omnibot spool-forwarder: the queue backend is unavailable ({error}); check QUEUE_URL and start it again", file=sys.stderr)
        return 1
    stopping = threading.Event()

    def stop(signum):
        logger.info("received signal %d; stopping", signum)
        stopping.set()

    on_signals(stop)
    if args.parent_pid is not None:
        # A parent that exited while this process started is seen at the first check.
        threading.Thread(target=_stop_when_orphaned, args=(args.parent_pid, stopping), name="omnibot-parent-check", daemon=True).start()
    logger.info("omnibot spool-forwarder %d started (nice %d)", os.getpid(), os.nice(0))
    try:
        queue.forward_spool_for_host(stopping)
    except OSError as error:
        logger.error("spool forwarder failed on %s: %s", backends.redis_spool_directory(settings.data_dir), error)
        return 1
    finally:
        queue.close()
    logger.info("omnibot spool-forwarder %d stopped", os.getpid())
    return 0


def _stop_when_orphaned(parent: int, stopping: threading.Event) -> None:
    """Set ``stopping`` once this process's parent is no longer ``parent``: it exited and the process was adopted."""
    while True:
        if os.getppid() != parent:
            logger.warning("the parent process %d exited; stopping", parent)
            stopping.set()
            return
        if stopping.wait(_PARENT_CHECK_INTERVAL):
            return
