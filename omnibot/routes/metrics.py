"""``GET /metrics`` for Prometheus, and the request hooks that feed it.

The route sits behind the config's authorization checks like every route
but ``/healthcheck``, so the checks must allow it (for example
``paths: ["^/api/", "^/metrics$"]`` with ``omnibot.authnz:allowed_paths``).

The hooks time every request of the app. They also log each Slack request
that omnibot rejected with 400, 401 or 403 (a body that cannot be decoded,
failed verification, an unknown app or team, or a failed authorization
check) at warning. The line names the
path, the reason sent to Slack, and the app and team ids found in the body.
"""

import json
import logging
import re
import time
import urllib.parse

from flask import Blueprint, Response, current_app, g, request

logger = logging.getLogger(__name__)

blueprint = Blueprint("metrics", __name__)

SLACK_PATHS = frozenset({"/api/v1/slack/event", "/api/v1/slack/slash_command", "/api/v1/slack/interactive"})

# The route label of a request that matched no route, so that probes of
# random paths do not create one time series each.
UNMATCHED_ROUTE = "unmatched"

# 413 is left out: its body was never read, and reading it here would defeat the limit.
REJECTED_STATUSES = (400, 401, 403)

# Ids taken from a rejected body are logged only when they look like Slack ids.
_SLACK_ID = re.compile(r"[A-Z0-9]{1,40}")

# The maximum number of form fields read from a rejected body; Slack sends about 15.
_MAX_FORM_FIELDS = 200


@blueprint.record_once
def _install_hooks(state):
    state.app.before_request(_start_request)
    state.app.after_request(_finish_request)


@blueprint.route("/metrics", methods=["GET"])
def metrics():
    runtime = current_app.extensions["omnibot"]
    body, content_type = runtime.stats.render(runtime)
    return Response(body, content_type=content_type)


def _start_request():
    g.omnibot_started = time.perf_counter()
    if request.path in SLACK_PATHS:
        # Keeps the body readable after the view read it, so that a rejection
        # can be logged with the app id. The view reads these same bytes.
        request.get_data(cache=True)


def _finish_request(response):
    started = g.pop("omnibot_started", None)
    elapsed = time.perf_counter() - started if started is not None else 0.0
    route = request.url_rule.rule if request.url_rule is not None else UNMATCHED_ROUTE
    current_app.extensions["omnibot"].stats.http_request(request.method, route, response.status_code, elapsed)

    if response.status_code in REJECTED_STATUSES and request.path in SLACK_PATHS:
        _log_rejection(response)
    return response


def _log_rejection(response):
    body = response.get_json(silent=True)
    reason = body.get("error") if isinstance(body, dict) else None
    log_rejection(request.method, request.path, response.status_code, reason, request.get_data(cache=True), request.content_type or "")


def log_rejection(method: str, path: str, status: int, reason, raw: bytes, content_type: str) -> None:
    """Log one Slack request that omnibot rejected, with the app and team ids found in ``raw``.

    Only ids that look like Slack ids are logged; nothing else of the body
    is. A body rejected with 400 could not be decoded, so it is not read again.
    """
    app_id, team_id = (None, None) if status == 400 else _slack_ids(raw, content_type)
    logger.warning(
        "rejected %s %s with %d: %s (app %s, team %s)",
        method,
        path,
        status,
        reason or "no reason given",
        app_id or "unknown",
        team_id or "unknown",
        extra={
            "path": path,
            "method": method,
            "status": status,
            "reason": reason,
            "app_id": app_id,
            "team_id": team_id,
        },
    )


def _slack_ids(raw: bytes, content_type: str):
    """Return the ``api_app_id`` and team id of a Slack request body; None for each one missing or malformed."""
    try:
        if content_type.startswith("application/json"):
            body = json.loads(raw)
        else:
            fields = urllib.parse.parse_qs(raw.decode("utf-8"), max_num_fields=_MAX_FORM_FIELDS)
            body = {name: values[0] for name, values in fields.items()}
            if "payload" in body:
                body = json.loads(body["payload"])
    except (ValueError, RecursionError):
        return None, None
    if not isinstance(body, dict):
        return None, None

    team = body.get("team")
    team_id = body.get("team_id") or (team.get("id") if isinstance(team, dict) else None)
    return _slack_id(body.get("api_app_id")), _slack_id(team_id)


def _slack_id(value):
    return value if isinstance(value, str) and _SLACK_ID.fullmatch(value) else None
