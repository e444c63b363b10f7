"""WSGI entry point for gunicorn: ``gunicorn -c config/gunicorn.conf.py omnibot.wsgi:app``.

Importing this module builds the app from ``CONFIG_FILE`` and the other
environment variables; it is the one module meant to be imported only by
a WSGI server. It also configures logging (``LOG_CONFIG_FILE``, else
``LOG_FORMAT``, default ``json``), because gunicorn sets up only its own
loggers.
"""

from omnibot.bootstrap import build_app_from_env
from omnibot.logs import configure_logging

configure_logging("json")
app = build_app_from_env()
