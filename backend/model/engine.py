"""The model layer's entry point: resolve the model, pick a device, run, report readiness.

Flask-free and process-agnostic on purpose: the controllers call `generate` here, and a later
scale-out mode can make the same call inside a queue worker.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, replace
from typing import Any

from backend.config import ModelSpec, Settings
from backend.model.errors import ModelNotReadyError, ModelUnavailableError
from backend.model.images import encode, infotext
from backend.model.registry import ModelCatalog, display_path
from backend.model.types import MAX_SEED, GenerationRequest, GenerationResult, OutputOptions
from backend.model.worker import DeviceWorker, WorkerState


@dataclass(frozen=True)
class DeviceStatus:
    """One device, for /health."""

    index: int
    device: str
    description: str
    state: WorkerState
    loaded_models: tuple[str, ...]
    queue_depth: int
    served: int
    memory: dict[str, int] | None
    error: str | None


@dataclass(frozen=True)
class EngineStatus:
    """A snapshot of readiness, for /health."""

    state: WorkerState
    model: str
    device: str
    model_loaded: bool  # the default model is in memory right now, on some device
    error: str | None  # why the server cannot serve its default model, if it cannot
    loaded_models: tuple[str, ...]
    devices: tuple[DeviceStatus, ...]

    @property
    def ready(self) -> bool:
        """True when a request for the default model can be served."""
        return self.state is WorkerState.READY and self.error is None


@dataclass(frozen=True)
class ModelInfo:
    """One entry of the model listing."""

    spec: ModelSpec
    folder: str
    exists: bool
    loaded_on: tuple[str, ...]  # devices holding it in memory now
    default: bool
    error: str | None

    @property
    def loaded(self) -> bool:
        """In memory on some device."""
        return bool(self.loaded_on)


class Engine:
    """Serves generations on one worker per device; one engine per app, so per process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.catalog = ModelCatalog(settings.default_model, settings.models_dir)
        self._workers: tuple[DeviceWorker, ...] = ()
        self._started = threading.Event()
        self._dispatch = threading.Lock()  # choosing a device and queueing on it, atomically

    def pipeline(self, name: str | None = None, device: int = 0) -> Any:
        """A loaded pipeline or None (a seam for tests; see `DeviceWorker.pipeline`)."""
        return self._workers[device].pipeline(name or self.catalog.default.name)

    @property
    def workers(self) -> tuple[DeviceWorker, ...]:
        """The device workers (empty until start-up has found the devices)."""
        return self._workers

    def start(self) -> None:
        """Find the devices and begin loading the default model on each, in the background."""
        threading.Thread(target=self._start_workers, name="engine-start", daemon=True).start()

    def _start_workers(self) -> None:
        from backend.model import device as devices  # imports torch: never on the caller

        names = devices.expand_devices(self.settings.devices, self.settings.device)
        workers = tuple(
            DeviceWorker(index, name, self.settings, self.catalog.default)
            for index, name in enumerate(names)
        )
        for worker in workers:
            worker.start()
        self._workers = workers
        self._started.set()

    def stop(self, timeout: float | None = None) -> None:
        """Finish queued work and release the worker threads."""
        self._started.wait(timeout)
        for worker in self._workers:
            worker.stop(timeout)

    def wait_until_loaded(self, timeout: float) -> bool:
        """Block until every device finished starting (either way); False on timeout."""
        deadline = time.monotonic() + timeout
        if not self._started.wait(timeout):
            return False
        return all(
            worker.wait_until_loaded(max(0.0, deadline - time.monotonic()))
            for worker in self._workers
        )

    def status(self) -> EngineStatus:
        """Whether the default model can serve, where, or why it cannot."""
        default = self.catalog.default.name
        workers = self._workers
        devices = tuple(
            DeviceStatus(
                index=worker.index,
                device=worker.device_name or worker.device_setting,
                description=worker.description,
                state=worker.state,
                loaded_models=worker.loaded_models,
                queue_depth=worker.pending,
                served=worker.served,
                memory=worker.memory(),
                error=worker.error or worker.model_errors.get(default),
            )
            for worker in workers
        )
        serving = [d for d in devices if d.state is WorkerState.READY and d.error is None]
        if serving:
            state, error = WorkerState.READY, None
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
            device=devices[0].device if devices else self.settings.device,
            model_loaded=default in loaded,
            error=error,
            loaded_models=loaded,
            devices=devices,
        )

    def models(self) -> list[ModelInfo]:
        """Every model worth listing, with whether it is present, loaded, and the default."""
        workers = self._workers
        return [
            ModelInfo(
                spec=spec,
                folder=display_path(spec.folder),
                exists=(spec.folder / "model_index.json").is_file(),
                loaded_on=tuple(
                    w.device_name or w.device_setting
                    for w in workers
                    if spec.name in w.loaded_models
                ),
                default=spec.name == self.catalog.default.name,
                error=next(
                    (w.model_errors[spec.name] for w in workers if spec.name in w.model_errors),
                    None,
                ),
            )
            for spec in self.catalog.listing()
        ]

    def generate(
        self, request: GenerationRequest, output: OutputOptions | None = None
    ) -> GenerationResult:
        """Run one generation (one or more images) and return them encoded."""
        output = output or OutputOptions()
        spec = self.catalog.resolve(request.model)
        seed = secrets.randbelow(MAX_SEED + 1) if request.seed is None else request.seed
        request = replace(request, seed=seed, model=spec.name)
        with self._dispatch:
            job = self._choose(spec).submit(spec, request)
        raw = job.future.result()
        # Encoding happens here, on the request's thread, so the device goes on to the next job.
        embed = self.settings.embed_metadata and output.format == "png"
        images = [
            encode(
                image,
                seed,
                output,
                infotext(request, seed, raw.scheduler.label, spec.name) if embed else None,
            )
            for image, seed in zip(raw.images, request.seeds(), strict=True)
        ]
        return GenerationResult(
            images=images,
            model=spec.name,
            request=request,
            scheduler=raw.scheduler.name,
            sampler=raw.scheduler.label,
            generation_seconds=job.finished_at - job.started_at,
            queue_seconds=job.started_at - job.submitted_at,
        )

    def _choose(self, spec: ModelSpec) -> DeviceWorker:
        """The least-loaded device holding `spec`, else the least-loaded that can load it."""
        workers = self._workers
        ready = [w for w in workers if w.state is WorkerState.READY and not w.broken(spec.name)]
        if not ready:
            if not workers or any(w.state is WorkerState.LOADING for w in workers):
                raise ModelNotReadyError(f"Model '{spec.name}' is still loading; retry shortly.")
            reasons = [w.model_errors.get(spec.name) or w.error for w in workers]
            raise ModelUnavailableError(
                next((r for r in reasons if r), "The server is shutting down.")
            )
        holding = [w for w in ready if spec.name in w.loaded_models]
        return min(holding or ready, key=lambda worker: worker.pending)
