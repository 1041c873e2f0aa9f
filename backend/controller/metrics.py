"""Prometheus metrics: `GET /metrics`."""

from __future__ import annotations

from flask import Blueprint, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from backend.controller import get_engine

blueprint = Blueprint("metrics", __name__)


@blueprint.get("/metrics")
def metrics() -> Response:
    """Every metric of this process, in Prometheus' text format."""
    return Response(generate_latest(get_engine().metrics.registry), mimetype=CONTENT_TYPE_LATEST)
