"""The live workers' heartbeats, read as readiness, the model listing and gauges."""

from __future__ import annotations

from typing import Any

from prometheus_client.core import GaugeMetricFamily

from backend.model.model_catalog import ModelCatalog
from backend.model.model_listing import ModelHolder, list_models
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


def worker_metrics(
    catalog: ModelCatalog, counts: dict[str, int], workers: list[dict[str, Any]]
) -> list[GaugeMetricFamily]:
    """Gauges of outstanding jobs per model (`counts`) and of the live workers' queues."""
    outstanding = GaugeMetricFamily(
        "t2i_outstanding_jobs",
        "Jobs admitted and not finished (queued or running), by model.",
        labels=["model"],
    )
    live = GaugeMetricFamily("t2i_workers", "Live worker processes (fresh heartbeats).")
    queued = GaugeMetricFamily(
        "t2i_queue_depth", "Generations waiting in each worker.", labels=["device"]
    )
    running = GaugeMetricFamily(
        "t2i_running", "Generations on each worker's device now.", labels=["device"]
    )
    for spec in catalog.listing():
        outstanding.add_metric([spec.name], counts.get(spec.name, 0))
    for model, count in counts.items():
        if model not in {spec.name for spec in catalog.listing()}:
            outstanding.add_metric([model], count)
    live.add_metric([], len(workers))
    for worker in workers:
        name = f"{worker.get('worker')}/{worker.get('device')}"
        queued.add_metric([name], worker.get("queued", 0))
        running.add_metric([name], worker.get("running", 0))
    return [outstanding, live, queued, running]
