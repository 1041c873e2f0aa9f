"""Schema of `GET /health`."""

from __future__ import annotations

from typing import Any

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
    """Readiness: 'healthy' only when the default model can be served right now."""

    status = fields.Function(
        lambda status: "error" if status.error else _STATUS_WORDS[status.state],
        metadata={"description": "healthy, loading, error or stopping"},
    )
    model_loaded = fields.Boolean(metadata={"description": "The default model is in memory."})
    model = fields.String(metadata={"description": "The default model."})
    device = fields.String()
    loaded_models = fields.List(fields.String(), metadata={"description": "Models in memory."})
    error = fields.String(metadata={"description": "Why the default model cannot serve."})


def dump_health(status: EngineStatus) -> dict[str, Any]:
    """The JSON body for `status` (without `error` when there is none)."""
    body = HealthSchema().dump(status)
    if body.get("error") is None:
        body.pop("error", None)
    return body
