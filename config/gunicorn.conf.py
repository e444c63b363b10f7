"""gunicorn settings for omnibot's web process.

    gunicorn -c config/gunicorn.conf.py omnibot.wsgi:app

``GUNICORN_BIND``, ``GUNICORN_WORKERS``, ``GUNICORN_THREADS``,
``GUNICORN_TIMEOUT``, ``GUNICORN_GRACEFUL_TIMEOUT`` and ``GUNICORN_ACCESSLOG``
override the values below; gunicorn's command-line flags override both.

With a Redis queue and ``QUEUE_SPOOL=1``, the master also starts one
``omnibot spool-forwarder`` process, which forwards the web workers' spool
files to Redis at a lower CPU priority, and stops it when gunicorn exits.

``PROMETHEUS_MULTIPROC_DIR`` is the folder where the workers write their
Prometheus metrics, so that ``/metrics`` adds up all workers. When it is
unset, a new temporary folder is used and removed when gunicorn exits.
"""

import glob
import logging
import os
import shutil
import subprocess
import sys
import tempfile

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8080")
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
# Slack gives up after 3 seconds; a request still running after 30 is stuck.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "20"))
keepalive = 5
# Several workers accept on the same port; without it, kept-alive
# connections tend to pile onto one worker.
reuse_port = True
accesslog = os.environ.get("GUNICORN_ACCESSLOG") or None
errorlog = "-"

# prometheus_client picks its multi-process mode when it is first imported,
# which may be in this master process (preload_app), so the folder is set
# as gunicorn reads this file.
_PROMETHEUS_DIR_PREFIX = "omnibot-prometheus-"
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix=_PROMETHEUS_DIR_PREFIX)


def on_starting(server):
    # Values left by an earlier run would be added to this run's counters.
    for path in glob.glob(os.path.join(os.environ["PROMETHEUS_MULTIPROC_DIR"], "*.db")):
        os.remove(path)


def post_worker_init(worker):
    logger = logging.getLogger("omnibot.web")
    logger.info("web worker %d started", worker.pid)

    # Opened now and not at the first request, so the log names the queue
    # backend at boot, and a Redis spool forwarder takes over the lines of
    # a stopped web worker even when no request comes.
    runtime = getattr(worker.wsgi, "extensions", {}).get("omnibot")
    if runtime is None:
        return
    try:
        runtime.queue.start()
    except Exception:
        logger.exception("could not open the queue in web worker %d; its first request tries again", worker.pid)


def worker_exit(server, worker):
    logging.getLogger("omnibot.web").info("web worker %d stopped", worker.pid)


def child_exit(server, worker):
    # Drops the exited worker's live gauges (messages in progress); its
    # counters stay, so totals do not go down when a worker is replaced.
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    _stop_spool_forwarder(server)

    # Only a folder that this file created is removed.
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
    in_temp = os.path.dirname(folder) == tempfile.gettempdir()
    if in_temp and os.path.basename(folder).startswith(_PROMETHEUS_DIR_PREFIX):
        shutil.rmtree(folder, ignore_errors=True)


def when_ready(server):
    # With reuse_port each worker opens its own socket, and gunicorn's own
    # "Listening at:" line shows no address, so log the bind addresses here.
    # The master has not configured omnibot's logging, so this goes through
    # gunicorn's logger to its error log.
    server.log.info(
        "gunicorn %d serving omnibot on %s with %d workers of %d threads",
        server.pid,
        ", ".join(server.cfg.bind),
        server.cfg.workers,
        server.cfg.threads,
    )

    # On SIGHUP, check the config file first and keep the running workers
    # when it is invalid; without this a worker that cannot load the new
    # config stops gunicorn ("Worker failed to boot").
    from omnibot.reload import guard_gunicorn_reload

    guard_gunicorn_reload(server)
    _start_spool_forwarder(server)


# Seconds the forwarder gets to forward what is left after SIGTERM.
_SPOOL_FORWARDER_STOP_TIMEOUT = 15


def _start_spool_forwarder(server):
    from omnibot.backends import redis_spool_in_use
    from omnibot.settings import Settings

    try:
        settings = Settings.from_env()
    except ValueError:
        # The workers report the invalid setting.
        return
    if not redis_spool_in_use(settings.queue_url, settings.queue_spool):
        return
    # Started by the master, so that its lifetime is gunicorn's and not a
    # worker's, and kept on the arbiter, because a SIGHUP reads this file
    # again into a new module whose globals start empty.
    process = subprocess.Popen([sys.executable, "-m", "omnibot", "spool-forwarder", "--parent-pid", str(os.getpid())])
    server.omnibot_spool_forwarder = process
    server.log.info("started omnibot spool-forwarder %d", process.pid)


def _stop_spool_forwarder(server):
    process = getattr(server, "omnibot_spool_forwarder", None)
    if process is None:
        return
    process.terminate()
    try:
        process.wait(_SPOOL_FORWARDER_STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        server.log.warning("omnibot spool-forwarder %d did not stop within %d s; killing it", process.pid, _SPOOL_FORWARDER_STOP_TIMEOUT)
        process.kill()
        process.wait()


# gunicorn 27 opens a control socket at one fixed path per user, which
# several omnibot instances on one host would share; omnibot does not use it.
control_socket_disable = True
