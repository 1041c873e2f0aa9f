"""Schema of `GET /health`."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate

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

    status = fields.String(
        required=True, validate=validate.OneOf(["healthy", "loading", "error", "stopping"])
    )
    model_loaded = fields.Boolean(
        required=True, metadata={"description": "The default model is in memory."}
    )
    model = fields.String(required=True, metadata={"description": "The default model."})
    device = fields.String(required=True)
    loaded_models = fields.List(
        fields.String(), required=True, metadata={"description": "Models in memory."}
    )
    error = fields.String(metadata={"description": "Why the default model cannot serve."})


def dump_health(status: EngineStatus) -> dict[str, Any]:
    """The JSON body for `status` (`error` only when there is one)."""
    body = {
        "status": "error" if status.error else _STATUS_WORDS[status.state],
        "model_loaded": status.model_loaded,
        "model": status.model,
        "device": status.device,
        "loaded_models": list(status.loaded_models),
    }
    if status.error:
        body["error"] = status.error
    return HealthSchema().dump(body)
