"""A WSGI layer that responds to ``POST /api/v1/slack/event`` without Flask's request machinery.

Slack's events are the busiest route by far, and Flask's request context,
URL matching, hooks and response object cost more per request than
verifying and queueing the event. :class:`EventFastPath` wraps the Flask
app's ``wsgi_app`` and handles an event itself when it can tell, from the
WSGI environ alone, that Flask would do the same:

* the method is POST and the path is exactly ``/api/v1/slack/event``;
* the body has a ``Content-Length`` within ``settings.max_body_bytes``;
* every authorization check reads the path alone
  (:func:`omnibot.authnz.decision_by_path`) and they allow the path.

Any other request goes to Flask unchanged, so the responses, status codes,
logs and metrics of the two paths are the same. :func:`omnibot.app.create_app`
installs this layer, so the tests run every event through it.
"""

import json
import logging
import time
import typing

from werkzeug.datastructures import EnvironHeaders
from werkzeug.http import HTTP_STATUS_CODES

from omnibot import app as flask_app, authnz
from omnibot.errors import BackendUnavailable
from omnibot.inbound import Answer
from omnibot.inbound.events import accept_event
from omnibot.routes import metrics

# The Flask app's logger, so that a 500 or 503 is logged under the same name on both paths.
logger = logging.getLogger("omnibot.app")

EVENT_PATH = "/api/v1/slack/event"


class EventFastPath:
    """WSGI middleware that handles events it can handle alone and passes everything else to ``flask_wsgi_app``.

    Args:
        flask_wsgi_app: The Flask app's ``wsgi_app``.
        runtime: The runtime the Flask app serves; its config is read on
            every request, so a reloaded config applies at once.
    """

    def __init__(self, flask_wsgi_app, runtime):
        self._flask = flask_wsgi_app
        self._runtime = runtime
        # (config, decision of its checks for EVENT_PATH), replaced as one value so threads never see a mix.
        self._decision = (None, None)

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") != EVENT_PATH or environ.get("REQUEST_METHOD") != "POST":
            return self._flask(environ, start_response)
        length = self._content_length(environ)
        if length is None or not self._allowed_by_path():
            return self._flask(environ, start_response)

        started = time.perf_counter()
        raw = environ["wsgi.input"].read(length) if length else b""
        answer = self._answer(raw, EnvironHeaders(environ))
        body = b"" if answer.body is None else json.dumps(answer.body).encode("utf-8")

        headers = [("Content-Type", "application/json" if answer.body is not None else "text/html; charset=utf-8")]
        headers.append(("Content-Length", str(len(body))))
        headers.extend(answer.headers.items())
        start_response(f"{answer.status} {HTTP_STATUS_CODES.get(answer.status, 'UNKNOWN').upper()}", headers)

        try:
            self._runtime.stats.http_request("POST", EVENT_PATH, answer.status, time.perf_counter() - started)
            if answer.status in metrics.REJECTED_STATUSES:
                reason = answer.body.get("error") if isinstance(answer.body, dict) else None
                metrics.log_rejection("POST", EVENT_PATH, answer.status, reason, raw, environ.get("CONTENT_TYPE", ""))
        except Exception:  # noqa: BLE001 - the response is decided; a metrics failure must not turn it into a 500
            logger.exception("failed to record the metrics of POST %s", EVENT_PATH)
        return [body]

    def _content_length(self, environ) -> typing.Optional[int]:
        """Return the body's length when Flask would read it as is; None for chunked, missing or too large."""
        if environ.get("HTTP_TRANSFER_ENCODING"):
            return None
        value = environ.get("CONTENT_LENGTH", "")
        # isdigit() alone accepts digits such as "²" that int() rejects.
        if not (value.isascii() and value.isdigit()):
            return None
        length = int(value)
        return length if length <= self._runtime.settings.max_body_bytes else None

    def _allowed_by_path(self) -> bool:
        config = self._runtime.config
        decided_for, allowed = self._decision
        if config is not decided_for:
            allowed = authnz.decision_by_path(config.checks, EVENT_PATH)
            self._decision = (config, allowed)
        return allowed is True

    def _answer(self, raw: bytes, headers) -> Answer:
        try:
            return accept_event(self._runtime, raw, headers)
        except BackendUnavailable as error:
            # The same response as the Flask error handler gives.
            logger.error("backend unavailable on POST %s: %s", EVENT_PATH, error)
            return Answer(503, {"status": "failure", "error": flask_app.BACKEND_UNAVAILABLE_ERROR})
        except Exception:  # noqa: BLE001 - one request's failure must not end the process
            logger.exception("unexpected error on POST %s", EVENT_PATH)
            return Answer(500, {"status": "failure", "error": flask_app.INTERNAL_ERROR})
