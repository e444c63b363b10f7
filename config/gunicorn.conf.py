"""gunicorn settings for omnibot's web process.

    gunicorn -c config/gunicorn.conf.py omnibot.wsgi:app

``GUNICORN_BIND``, ``GUNICORN_WORKERS``, ``GUNICORN_THREADS``,
``GUNICORN_TIMEOUT``, ``GUNICORN_GRACEFUL_TIMEOUT`` and ``GUNICORN_ACCESSLOG``
override the values below; gunicorn's command-line flags override both.
"""

import os

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


def when_ready(server):
    # On SIGHUP, check the config file first and keep the running workers
    # when it is invalid; without this a worker that cannot load the new
    # config stops gunicorn ("Worker failed to boot").
    from omnibot.reload import guard_gunicorn_reload

    guard_gunicorn_reload(server)
