"""Slack's three endpoints. The views only translate between Flask and :mod:`omnibot.inbound`."""

from flask import Blueprint, Response, current_app, json, request

from omnibot.inbound import Answer
from omnibot.inbound.events import accept_event
from omnibot.inbound.interactive import accept_interactive
from omnibot.inbound.slash_commands import accept_slash_command

blueprint = Blueprint("slack", __name__)


def to_response(answer: Answer) -> Response:
    """Turn an :class:`Answer` into a Flask response (an empty body when ``answer.body`` is None)."""
    if answer.body is None:
        response = Response(b"", status=answer.status)
    else:
        response = Response(json.dumps(answer.body), status=answer.status, mimetype="application/json")
    response.headers.update(answer.headers)
    return response


@blueprint.route("/api/v1/slack/event", methods=["POST"])
def slack_event():
    runtime = current_app.extensions["omnibot"]
    return to_response(accept_event(runtime, request.get_data(cache=False), request.headers))


@blueprint.route("/api/v1/slack/slash_command", methods=["POST"])
def slack_slash_command():
    runtime = current_app.extensions["omnibot"]
    return to_response(accept_slash_command(runtime, request.get_data(cache=False), request.headers))


@blueprint.route("/api/v1/slack/interactive", methods=["POST"])
def slack_interactive_component():
    runtime = current_app.extensions["omnibot"]
    return to_response(accept_interactive(runtime, request.get_data(cache=False), request.headers))
