"""Run everything in one process: the web app, a worker and the watcher.

For one machine and for development. Uses the embedded SQLite queue and
cache under --data-dir unless QUEUE_URL / CACHE_URL say otherwise.
"""

import logging
import os
import sys
import threading

from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.urls import uri_to_iri

from omnibot.app import create_app
from omnibot.backends.redis_connection import redact_url
from omnibot.cli import add_config_argument
from omnibot.cli.common import on_signals, runtime_or_exit, settings_from_args
from omnibot.logs import configure_logging
from omnibot.reload import install_sighup_reload
from omnibot.watcher import Watcher
from omnibot.worker import Worker

logger = logging.getLogger(__name__)


def add_arguments(parser):
    add_config_argument(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080)")
    parser.add_argument("--data-dir", help="folder of the SQLite queue and cache (default: $OMNIBOT_DATA_DIR or ./var)")
    parser.add_argument("--concurrency", type=int, help="worker threads (default: $WEBHOOK_WORKER_CONCURRENCY or 10)")


class PlainAccessLogHandler(WSGIRequestHandler):
    """Werkzeug's request handler, with access lines free of the ANSI colour codes it adds to them.

    The codes suit a terminal, but ``omnibot serve`` usually writes its log to a file.
    """

    def log_request(self, code="-", size="-") -> None:
        try:
            line = f"{self.command} {uri_to_iri(self.path)} {self.request_version}"
        except AttributeError:
            # A request line that could not be parsed has no path.
            line = self.requestline
        printable = "".join(char if char.isprintable() else repr(char)[1:-1] for char in line)
        self.log("info", '"%s" %s %s', printable, code, size)


def run(args):
    configure_logging("text")
    settings = settings_from_args(args, data_dir=args.data_dir)
    runtime = runtime_or_exit(settings)
    config = runtime.config

    worker = Worker(runtime, args.concurrency or settings.worker_concurrency)
    watcher = Watcher(runtime)
    server = make_server(args.host, args.port, create_app(runtime), threaded=True, request_handler=PlainAccessLogHandler)
    stopped = threading.Event()

    def stop(signum):
        if not stopped.is_set():
            stopped.set()
            logger.info("received signal %d; stopping", signum)
            threading.Thread(target=server.shutdown, daemon=True).start()

    on_signals(stop)
    install_sighup_reload(runtime)
    worker.start()
    watcher.start()
    logger.info(
        "omnibot %d listening on http://%s:%d (config %s: %d teams, %d bots, %d handlers; queue %s; Slack API %s)",
        os.getpid(),
        args.host,
        server.server_port,
        config.path,
        len(config.teams),
        len(config.bots),
        len(config.handlers),
        redact_url(settings.queue_url) if settings.queue_url else os.path.join(settings.data_dir, "queue.db"),
        settings.slack_api_url,
    )
    sys.stdout.flush()
    server.serve_forever()

    watcher.stop()
    worker.stop()
    runtime.close()
    logger.info("omnibot stopped")
    return 0
