"""Prometheus metrics: `GET /metrics`."""

from __future__ import annotations

from flask import Blueprint, Response, current_app
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

blueprint = Blueprint("metrics", __name__)


@blueprint.get("/metrics")
def metrics() -> Response:
    """Every metric of this process, in Prometheus' text format."""
    return Response(
        generate_latest(current_app.extensions["metrics_registry"]), mimetype=CONTENT_TYPE_LATEST
    )
