"""``GET /healthcheck`` for load balancers."""

from flask import Blueprint, jsonify

blueprint = Blueprint("health", __name__)


@blueprint.route("/healthcheck", methods=["GET"])
def healthcheck():
    return jsonify(status="ok")
