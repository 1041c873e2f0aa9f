"""Schema of `GET /health`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from marshmallow import Schema, fields, validate

from backend.model.service import EngineStatus, WorkerState

_STATUS_WORDS = {
    WorkerState.READY: "healthy",
    WorkerState.LOADING: "loading",
    WorkerState.FAILED: "error",
    WorkerState.STOPPED: "stopping",
}


class MemorySchema(Schema):
    """Device memory, in bytes (CUDA devices only)."""

    used = fields.Integer(required=True)
    total = fields.Integer(required=True)
    allocated = fields.Integer(required=True, metadata={"description": "Held by torch."})


class DeviceSchema(Schema):
    """One device and its worker."""

    index = fields.Integer(required=True)
    device = fields.String(required=True, metadata={"description": "cpu, cuda:0, ..."})
    description = fields.String(required=True, metadata={"description": "e.g. the GPU model"})
    status = fields.String(
        required=True, validate=validate.OneOf(["healthy", "loading", "error", "stopping"])
    )
    loaded_models = fields.List(fields.String(), required=True)
    queue_depth = fields.Integer(
        required=True, metadata={"description": "Generations waiting for this device."}
    )
    running = fields.Integer(
        required=True, metadata={"description": "Generations in the batch it runs now."}
    )
    served = fields.Integer(required=True, metadata={"description": "Jobs finished so far."})
    memory = fields.Nested(MemorySchema, required=True, allow_none=True)
    error = fields.String(required=True, allow_none=True)
    last_step_at = fields.String(
        required=True,
        allow_none=True,
        metadata={"description": "When its latest denoising step ended (ISO 8601, UTC)."},
    )
    worker = fields.String(
        required=True,
        allow_none=True,
        metadata={"description": "The worker process serving it (QUEUE_BACKEND=celery)."},
    )


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
    devices = fields.List(fields.Nested(DeviceSchema), required=True)


def dump_health(status: EngineStatus) -> dict[str, Any]:
    """The JSON body for `status` (`error` only when there is one)."""
    body = {
        "status": "error" if status.error else _STATUS_WORDS[status.state],
        "model_loaded": status.model_loaded,
        "model": status.model,
        "device": status.device,
        "loaded_models": list(status.loaded_models),
        "devices": [
            {
                "index": device.index,
                "device": device.device,
                "description": device.description,
                "status": "error" if device.error else _STATUS_WORDS[device.state],
                "loaded_models": list(device.loaded_models),
                "queue_depth": device.queue_depth,
                "running": device.running,
                "served": device.served,
                "memory": device.memory,
                "error": device.error,
                "last_step_at": _iso(device.last_step_at),
                "worker": device.worker,
            }
            for device in status.devices
        ],
    }
    if status.error:
        body["error"] = status.error
    return HealthSchema().dump(body)


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")
