"""Schema of `GET /health`."""

from __future__ import annotations

from marshmallow import Schema, fields

from backend.model.engine import EngineStatus
from backend.model.worker import WorkerState

_STATUS_WORDS = {
    WorkerState.READY: "healthy",
    WorkerState.LOADING: "loading",
    WorkerState.FAILED: "error",
    WorkerState.STOPPED: "stopping",
}


class HealthSchema(Schema):
    """Readiness: 'healthy' only when a generation can be served right now."""

    status = fields.Function(lambda status: _STATUS_WORDS[status.state])
    model_loaded = fields.Boolean(attribute="ready")
    model = fields.String()
    device = fields.String()
    error = fields.String(metadata={"description": "Why the model cannot serve, when it cannot."})


def dump_health(status: EngineStatus) -> dict:
    """The JSON body for `status` (without `error` when there is none)."""
    body = HealthSchema().dump(status)
    if body.get("error") is None:
        body.pop("error", None)
    return body
