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
from omnibot.logs import configure_logging

logger = logging.getLogger(__name__)

DEFAULT_NICE = 10


def add_arguments(parser):
    add_config_argument(parser)
    parser.add_argument(
        "--nice",
        type=int,
        default=DEFAULT_NICE,
        help=f"add this to the process's nice value; 0 keeps the priority of the web workers (default {DEFAULT_NICE})",
    )


def run(args):
    configure_logging("text" if sys.stderr.isatty() else "json")
    settings = settings_from_args(args)
    if not (settings.queue_url or "").startswith(("redis://", "rediss://")) or settings.queue_spool is not True:
        print(
            "omnibot spool-forwarder: nothing to forward; it serves a Redis queue with spool files "
            "(QUEUE_URL=redis://... and QUEUE_SPOOL=1), and the SQLite queue imports its spool files in the workers",
            file=sys.stderr,
        )
        return 2
    if args.nice:
        os.nice(args.nice)

    queue = backends.open_queue(settings.queue_url, settings.data_dir, spool=True)
    stopping = threading.Event()

    def stop(signum):
        logger.info("received signal %d; forwarding once more and stopping", signum)
        stopping.set()

    on_signals(stop)
    logger.info("omnibot spool-forwarder %d started (nice %d)", os.getpid(), os.nice(0))
    try:
        queue.forward_spool_for_host(stopping)
    finally:
        queue.close()
    logger.info("omnibot spool-forwarder %d stopped", os.getpid())
    return 0
