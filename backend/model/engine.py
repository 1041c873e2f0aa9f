"""The model layer's entry point: resolve the model, run generations, report readiness.

Flask-free and process-agnostic on purpose: the controllers call `generate` here, and a later
scale-out mode can make the same call inside a queue worker.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, replace
from typing import Any

from backend.config import ModelSpec, Settings
from backend.model.images import encode, infotext
from backend.model.registry import ModelCatalog, display_path
from backend.model.types import MAX_SEED, GenerationRequest, GenerationResult, OutputOptions
from backend.model.worker import DeviceWorker, WorkerState


@dataclass(frozen=True)
class EngineStatus:
    """A snapshot of readiness, for /health."""

    state: WorkerState
    model: str
    device: str
    model_loaded: bool  # the default model is in memory right now
    error: str | None  # why the server cannot serve its default model, if it cannot
    loaded_models: tuple[str, ...]

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
    loaded: bool
    default: bool
    error: str | None


class Engine:
    """Serves generations; one per app, so one per server process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.catalog = ModelCatalog(settings.default_model, settings.models_dir)
        self._worker = DeviceWorker(
            settings.device,
            settings.torch_dtype,
            settings.max_loaded_models,
            preload=self.catalog.default,
        )

    def pipeline(self, name: str | None = None) -> Any:
        """A loaded pipeline or None (a seam for tests; see `DeviceWorker.pipeline`)."""
        return self._worker.pipeline(name or self.catalog.default.name)

    def start(self) -> None:
        """Begin loading the default model in the background."""
        self._worker.start()

    def stop(self, timeout: float | None = None) -> None:
        """Finish queued work and release the worker thread."""
        self._worker.stop(timeout)

    def wait_until_loaded(self, timeout: float) -> bool:
        """Block until start-up succeeded or failed; False on timeout."""
        return self._worker.wait_until_loaded(timeout)

    def status(self) -> EngineStatus:
        """Whether the default model can serve, on which device, or why it cannot."""
        worker, default = self._worker, self.catalog.default.name
        return EngineStatus(
            state=worker.state,
            model=default,
            device=worker.device_name or worker.device_setting,
            model_loaded=default in worker.loaded_models,
            error=worker.error or worker.model_errors.get(default),
            loaded_models=worker.loaded_models,
        )

    def models(self) -> list[ModelInfo]:
        """Every model worth listing, with whether it is present, loaded, and the default."""
        worker, default = self._worker, self.catalog.default.name
        return [
            ModelInfo(
                spec=spec,
                folder=display_path(spec.folder),
                exists=(spec.folder / "model_index.json").is_file(),
                loaded=spec.name in worker.loaded_models,
                default=spec.name == default,
                error=worker.model_errors.get(spec.name),
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
        job = self._worker.submit(spec, request)
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
