"""Process queued Slack messages: match handlers, call callbacks, apply results.

Stops on SIGTERM or SIGINT after finishing the messages in hand.
"""

import logging
import os
import sys

from omnibot.backends.redis_connection import redact_url
from omnibot.cli import add_config_argument
from omnibot.cli.common import on_signals, runtime_or_exit, settings_from_args
from omnibot.logs import configure_logging
from omnibot.reload import install_sighup_reload
from omnibot.worker import Worker

logger = logging.getLogger(__name__)


def add_arguments(parser):
    add_config_argument(parser)
    parser.add_argument(
        "--concurrency",
        type=int,
        help="processing threads (default: $WEBHOOK_WORKER_CONCURRENCY or 10)",
    )
    parser.add_argument("--grace-period", type=float, default=30.0, help="seconds to finish messages in hand on SIGTERM (default 30)")


def run(args):
    configure_logging("text" if sys.stderr.isatty() else "json")
    settings = settings_from_args(args)
    runtime = runtime_or_exit(settings)
    concurrency = args.concurrency or settings.worker_concurrency

    worker = Worker(runtime, concurrency)
    on_signals(lambda signum: worker.request_stop())
    install_sighup_reload(runtime)
    logger.info("omnibot worker %d started (queue %s)", os.getpid(), redact_url(settings.queue_url) if settings.queue_url else f"sqlite in {settings.data_dir}")
    worker.start()
    worker.wait()
    finished = worker.stop(args.grace_period)
    runtime.close()
    return 0 if finished else 1
