"""The Flask application factory."""

import logging

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from omnibot import authnz
from omnibot.errors import BackendUnavailable
from omnibot.routes import health, slack
from omnibot.runtime import Runtime

logger = logging.getLogger(__name__)

# Routes that respond without authorization checks (load balancer probes).
OPEN_PATHS = frozenset({"/healthcheck"})

BACKEND_UNAVAILABLE_ERROR = "A queue or cache backend is unavailable; retry later."
INTERNAL_ERROR = "Internal error; see the omnibot logs."


def create_app(runtime: Runtime) -> Flask:
    """Build the web app around ``runtime``.

    Every route responds with JSON, errors included. Request bodies larger than
    ``settings.max_body_bytes`` get 413 before they are read. Slack events
    go through :class:`omnibot.event_fast_path.EventFastPath` first, which
    responds to them without Flask when Flask would give the same response.
    """
    app = Flask("omnibot")
    app.config["MAX_CONTENT_LENGTH"] = runtime.settings.max_body_bytes
    app.json.sort_keys = False
    app.extensions["omnibot"] = runtime

    app.register_blueprint(health.blueprint)
    app.register_blueprint(slack.blueprint)
    _register_optional_blueprints(app)

    app.before_request(_enforce_authorization)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(BackendUnavailable, _backend_unavailable)
    app.register_error_handler(Exception, _unexpected_error)

    from omnibot.event_fast_path import EventFastPath

    app.wsgi_app = EventFastPath(app.wsgi_app, runtime)
    return app


def _register_optional_blueprints(app):
    from omnibot.routes import api, metrics

    app.register_blueprint(api.blueprint)
    # Registered before the authorization hook, so denied requests are timed too.
    app.register_blueprint(metrics.blueprint)


def _enforce_authorization():
    if request.path in OPEN_PATHS:
        return None
    checks = request_runtime().config.checks
    reason = authnz.denial_reason(checks)
    if reason is None:
        return None

    # Only the caller identity header is logged, because other headers may carry credentials.
    logger.warning(
        "denied %s %s for caller %s from %s: %s",
        request.method,
        request.path,
        authnz.caller_identity(checks),
        request.remote_addr or "an unknown address",
        reason,
        extra={"path": request.path, "method": request.method},
    )
    body = {"status": "failure", "error": "Forbidden: the request did not pass the authorization checks."}
    return jsonify(body), 403


def request_runtime() -> Runtime:
    """Return the runtime of the app handling the current request."""
    from flask import current_app

    return current_app.extensions["omnibot"]


def _http_error(error: HTTPException):
    response = jsonify(status="failure", error=error.description or error.name)
    response.status_code = error.code or 500
    if error.code == 405 and getattr(error, "valid_methods", None):
        response.headers["Allow"] = ", ".join(error.valid_methods)
    return response


def _backend_unavailable(error: BackendUnavailable):
    # 503 rather than 500, because Slack retries an event after a 5xx and the
    # queue or cache is likely back by then. The error names the backend's
    # host and port but never its password.
    logger.error("backend unavailable on %s %s: %s", request.method, request.path, error)
    response = jsonify(status="failure", error=BACKEND_UNAVAILABLE_ERROR)
    response.status_code = 503
    return response


def _unexpected_error(error: Exception):
    logger.exception("unexpected error on %s %s", request.method, request.path)
    return jsonify(status="failure", error=INTERNAL_ERROR), 500
