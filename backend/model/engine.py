"""The model layer's entry point: resolve the model, run generations, report readiness.

Flask-free and process-agnostic on purpose: the controllers call `generate` here, and a later
scale-out mode can make the same call inside a queue worker.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, replace
from typing import Any

from backend.config import ModelDefaults, ModelSpec, Settings
from backend.model.images import PNG_MEDIA_TYPE, encode_png
from backend.model.registry import resolve_model
from backend.model.types import EncodedImage, GenerationRequest, GenerationResult
from backend.model.worker import DeviceWorker, WorkerState

MAX_SEED = 2**32 - 1


@dataclass(frozen=True)
class EngineStatus:
    """A snapshot of readiness, for /health."""

    state: WorkerState
    model: str
    device: str
    error: str | None

    @property
    def ready(self) -> bool:
        """True once a generation can be served."""
        return self.state is WorkerState.READY


class Engine:
    """Serves generations with the configured model; one per app, so one per server process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.spec: ModelSpec = resolve_model(settings.default_model, settings.models_dir)
        self._worker = DeviceWorker(self.spec, settings.device, settings.torch_dtype)

    @property
    def defaults(self) -> ModelDefaults:
        """What requests get for the fields they leave out."""
        return self.spec.defaults

    @property
    def size_multiple(self) -> int:
        """Image sides must be multiples of this for the configured model."""
        return self.spec.family.size_multiple

    @property
    def pipeline(self) -> Any:
        """The loaded pipeline or None (a seam for tests; see `DeviceWorker.pipeline`)."""
        return self._worker.pipeline

    def start(self) -> None:
        """Begin loading the model in the background."""
        self._worker.start()

    def stop(self, timeout: float | None = None) -> None:
        """Finish queued work and release the worker thread."""
        self._worker.stop(timeout)

    def wait_until_loaded(self, timeout: float) -> bool:
        """Block until loading succeeded or failed; False on timeout."""
        return self._worker.wait_until_loaded(timeout)

    def status(self) -> EngineStatus:
        """Whether the model is loaded, on which device, or why it is not."""
        worker = self._worker
        return EngineStatus(
            state=worker.state,
            model=self.spec.name,
            device=worker.device_name or worker.device_setting,
            error=worker.error,
        )

    def generate(self, request: GenerationRequest) -> GenerationResult:
        """Run one generation and return the encoded image with the parameters used."""
        seed = secrets.randbelow(MAX_SEED + 1) if request.seed is None else request.seed
        request = replace(request, seed=seed)
        job = self._worker.submit(request)
        images = job.future.result()
        # Encoding happens here, on the request's thread, so the device never waits for zlib.
        encoded = [
            EncodedImage(encode_png(image), PNG_MEDIA_TYPE, seed + index)
            for index, image in enumerate(images)
        ]
        return GenerationResult(
            images=encoded,
            model=self.spec.name,
            request=request,
            generation_seconds=job.finished_at - job.started_at,
            queue_seconds=job.started_at - job.submitted_at,
        )
