"""Liveness (`/ping`) and readiness (`/health`)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from backend.controller import get_engine
from backend.view.health import dump_health

blueprint = Blueprint("health", __name__)


@blueprint.get("/ping")
def ping() -> Response:
    """Liveness: answers at once, whatever the model is doing."""
    return Response("pong", mimetype="text/plain")


@blueprint.get("/health")
def health() -> tuple[Response, int]:
    """Readiness: 200 once the model can serve, 503 while it loads or if it failed."""
    status = get_engine().status()
    return jsonify(dump_health(status)), 200 if status.ready else 503
