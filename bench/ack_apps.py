"""The peer WSGI apps of the acknowledgement benchmark (:mod:`bench.ack`), as gunicorn app factories.

Each factory reads the signing secret from ``BENCH_SIGNING_SECRET`` and
serves ``POST /api/v1/slack/event`` and ``GET /healthcheck``. The module
imports only the standard library at the top, because the Bolt contestant
imports it from its own venv, where omnibot is not installed.

    gunicorn 'bench.ack_apps:bare_app()'
    gunicorn 'bench.ack_apps:verifier_app()'
    gunicorn 'bench.ack_apps:bolt_app()'      # in a venv with slack-bolt
"""

import os

EVENT_PATH = "/api/v1/slack/event"


def _signing_secret() -> str:
    secret = os.environ.get("BENCH_SIGNING_SECRET")
    if not secret:
        raise RuntimeError("BENCH_SIGNING_SECRET is not set; bench/ack.py sets it for every contestant")
    return secret


def _flask_with_healthcheck():
    from flask import Flask

    app = Flask(__name__)

    @app.get("/healthcheck")
    def healthcheck():
        return "OK"

    return app


def bare_app():
    """Return a Flask app whose event route returns 200 with an empty body and does nothing else."""
    app = _flask_with_healthcheck()

    @app.post(EVENT_PATH)
    def event():
        return ""

    return app


def verifier_app():
    """Return a Flask app that checks the Slack signature with slack_sdk's SignatureVerifier: 200, else 403."""
    from flask import request
    from slack_sdk.signature import SignatureVerifier

    verifier = SignatureVerifier(_signing_secret())
    app = _flask_with_healthcheck()

    @app.post(EVENT_PATH)
    def event():
        if not verifier.is_valid_request(request.get_data(), request.headers):
            return "invalid request", 403
        return ""

    return app


def bolt_app():
    """Return a Flask app serving a Bolt for Python app (Flask adapter) with a no-op ``message`` listener.

    Request verification stays on. ``authorize`` returns a fixed
    AuthorizeResult and no token is given, so Bolt never calls ``auth.test``
    or any other Slack API.
    """
    from flask import request
    from slack_bolt import App
    from slack_bolt.adapter.flask import SlackRequestHandler
    from slack_bolt.authorization import AuthorizeResult

    def authorize(enterprise_id, team_id, user_id, logger):
        return AuthorizeResult(
            enterprise_id=enterprise_id,
            team_id=team_id,
            bot_user_id="U0BOT0001",
            bot_id="B0BENCH01",
            bot_token="xoxb-bench-not-a-real-token",
        )

    bolt = App(signing_secret=_signing_secret(), authorize=authorize, request_verification_enabled=True)

    @bolt.event("message")
    def ignore_message():
        return None

    handler = SlackRequestHandler(bolt)
    app = _flask_with_healthcheck()

    @app.post(EVENT_PATH)
    def event():
        return handler.handle(request)

    return app
