"""The live workers' heartbeats, read as the model layer's readiness and model listing."""

from __future__ import annotations

from typing import Any

from backend.model.model_listing import ModelHolder, list_models
from backend.model.registry import ModelCatalog
from backend.model.service import DeviceStatus, EngineStatus, ModelInfo, WorkerState


def _state(beat: dict[str, Any]) -> WorkerState:
    try:
        return WorkerState(beat.get("state", "loading"))
    except ValueError:
        return WorkerState.LOADING


def device_status(index: int, beat: dict[str, Any], default: str) -> DeviceStatus:
    """One worker's heartbeat as a device entry of /health."""
    errors = beat.get("model_errors") or {}
    return DeviceStatus(
        index=index,
        device=str(beat.get("device", "")),
        description=str(beat.get("description", "")),
        state=_state(beat),
        loaded_models=tuple(beat.get("models", ())),
        queue_depth=int(beat.get("queued", 0)),
        running=int(beat.get("running", 0)),
        served=int(beat.get("served", 0)),
        memory=beat.get("memory"),
        error=beat.get("error") or errors.get(default),
        last_step_at=beat.get("last_step_at"),
        worker=beat.get("worker"),
    )


def engine_status(
    default: str, workers: list[dict[str, Any]] | None, problem: str | None
) -> EngineStatus:
    """Readiness: Redis answers (`problem` is None) and a live worker serves `default`."""
    devices = tuple(device_status(i, beat, default) for i, beat in enumerate(workers or []))
    loaded = tuple(dict.fromkeys(name for d in devices for name in d.loaded_models))
    serving = [
        d
        for d in devices
        if d.state is WorkerState.READY and d.error is None and default in d.loaded_models
    ]
    if problem is not None:
        state, error = WorkerState.FAILED, problem
    elif serving:
        state, error = WorkerState.READY, None
    elif not devices:
        state = WorkerState.FAILED
        error = f"No live worker serves model '{default}': start one with `make worker`."
    elif any(d.state is WorkerState.LOADING for d in devices):
        state, error = WorkerState.LOADING, None
    else:
        state = WorkerState.FAILED
        error = next((d.error for d in devices if d.error), "No live worker can serve now.")
    return EngineStatus(
        state=state,
        model=default,
        device=devices[0].device if devices else "remote",
        model_loaded=default in loaded,
        error=error,
        loaded_models=loaded,
        devices=devices,
    )


def model_infos(catalog: ModelCatalog, workers: list[dict[str, Any]]) -> list[ModelInfo]:
    """The catalogue, with the workers each model is loaded on."""
    holders = (
        ModelHolder(
            f"{beat.get('worker')}/{beat.get('device')}",
            beat.get("models", ()),
            beat.get("model_errors") or {},
        )
        for beat in workers
    )
    return list_models(catalog, holders)
