"""What the in-process engine reports: readiness for /health, models, and gauges for /metrics."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from prometheus_client.core import GaugeMetricFamily

from backend.config import Settings
from backend.model.catalogue import ModelSpec
from backend.model.errors import ModelFolderError
from backend.model.model_listing import ModelHolder
from backend.model.registry import inspect_folder
from backend.model.service import DeviceStatus, EngineStatus, WorkerState

if TYPE_CHECKING:
    from backend.model.job_store import JobStore
    from backend.model.worker import DeviceWorker


def folder_problem(spec: ModelSpec, settings: Settings) -> str | None:
    """Why the default model's folder cannot be loaded, found without importing torch."""
    try:
        inspect_folder(spec, drop_t5=settings.memory.sd3_drop_t5)
    except ModelFolderError as error:
        return str(error)
    return None


def device_status(worker: DeviceWorker, default: str) -> DeviceStatus:
    """One device worker as a device entry of /health."""
    return DeviceStatus(
        index=worker.index,
        device=worker.device_name or worker.device_setting,
        description=worker.description,
        state=worker.state,
        loaded_models=worker.loaded_models,
        queue_depth=worker.queued,
        running=worker.running,
        served=worker.served,
        memory=worker.memory(),
        error=worker.error or worker.model_errors.get(default),
        last_step_at=worker.models.last_step_at,
    )


def engine_status(
    workers: Sequence[DeviceWorker], default: str, problem: str | None, device: str
) -> EngineStatus:
    """Whether `default` can serve, where, or why not (`problem`: its folder's, if any)."""
    devices = tuple(device_status(worker, default) for worker in workers)
    serving = [d for d in devices if d.state is WorkerState.READY and d.error is None]
    if serving:
        state, error = WorkerState.READY, None
    elif problem and not any(d.state is WorkerState.READY for d in devices):
        state, error = WorkerState.FAILED, problem
    elif not workers or any(d.state is WorkerState.LOADING for d in devices):
        state, error = WorkerState.LOADING, None
    elif all(d.state is WorkerState.STOPPED for d in devices):
        state, error = WorkerState.STOPPED, None
    else:
        state = WorkerState.FAILED
        error = next(d.error for d in devices if d.error)
    loaded = tuple(dict.fromkeys(name for d in devices for name in d.loaded_models))
    return EngineStatus(
        state=state,
        model=default,
        device=devices[0].device if devices else device,
        model_loaded=default in loaded,
        error=error,
        loaded_models=loaded,
        devices=devices,
    )


def model_holders(workers: Iterable[DeviceWorker]) -> list[ModelHolder]:
    """The device workers as the places models are loaded on, for `list_models`."""
    return [
        ModelHolder(w.device_name or w.device_setting, w.loaded_models, w.model_errors)
        for w in workers
    ]


def state_metrics(workers: Iterable[DeviceWorker], jobs: JobStore) -> list[GaugeMetricFamily]:
    """Queue depths, running generations and kept jobs, read at scrape time."""
    queued = GaugeMetricFamily(
        "t2i_queue_depth", "Generations waiting for each device.", labels=["device"]
    )
    running = GaugeMetricFamily("t2i_running", "Generations on each device now.", labels=["device"])
    for worker in workers:
        name = worker.device_name or worker.device_setting
        queued.add_metric([name], worker.queued)
        running.add_metric([name], worker.running)
    counts = GaugeMetricFamily("t2i_jobs", "Jobs kept, by status.", labels=["status"])
    for status, count in jobs.counts().items():
        counts.add_metric([status], count)
    return [queued, running, counts]
