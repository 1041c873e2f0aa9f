"""One thread per device: it loads pipelines, and runs every generation for that device.

Pipelines are only ever called, loaded and unloaded on their device's thread: diffusers
schedulers keep per-call state and are not thread-safe, loading must never race a running
generation, and a single consumer gives a natural queue for admission control and batching.
torch and diffusers are imported inside the thread, so creating a worker (and the Flask app
around it) is instant and `/ping` answers while they load.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import queue
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from backend.config import Family, ModelSpec
from backend.model import schedulers
from backend.model.errors import (
    ModelFolderError,
    ModelLayerError,
    ModelNotReadyError,
    ModelUnavailableError,
)
from backend.model.registry import display_path, inspect_folder
from backend.model.types import GenerationRequest

log = logging.getLogger(__name__)


class WorkerState(StrEnum):
    """Where a device worker is in its life."""

    LOADING = "loading"  # importing torch and loading the default model
    READY = "ready"
    FAILED = "failed"  # the device itself cannot be used
    STOPPED = "stopped"


@dataclass
class Job:
    """A generation waiting for, or being served by, a device worker."""

    spec: ModelSpec
    request: GenerationRequest  # seed already drawn
    future: Future = field(default_factory=Future)
    submitted_at: float = field(default_factory=time.perf_counter)
    started_at: float = 0.0
    finished_at: float = 0.0


@dataclass(frozen=True)
class RawOutput:
    """What one pipeline call produced: PIL images, and the scheduler that made them."""

    images: list[Any]
    scheduler: schedulers.SchedulerChoice


@dataclass
class _Loaded:
    pipeline: Any
    family: Family
    base_scheduler: Any  # the model's own scheduler, kept pristine as the template for each run


class DeviceWorker:
    """Owns one device's pipelines and the thread that alone may touch them."""

    def __init__(self, device: str, dtype: str, max_loaded: int, preload: ModelSpec) -> None:
        self.device_setting = device
        self.dtype_setting = dtype
        self.max_loaded = max_loaded
        self.preload = preload
        self.device_name: str | None = None  # known once torch has resolved `auto`
        self.state = WorkerState.LOADING
        self.error: str | None = None  # why the device cannot be used
        self.model_errors: dict[str, str] = {}  # latest failure per model, cleared on success
        self.loaded_models: tuple[str, ...] = ()  # a snapshot other threads may read
        self._broken: set[str] = set()  # models whose weights failed to load: not retried
        self._loaded: OrderedDict[str, _Loaded] = OrderedDict()  # least recently used first
        self._device: Any = None
        self._dtype: Any = None
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._load_ended = threading.Event()
        # Held while checking the state and queueing, so no job can land behind stop()'s sentinel.
        self._intake = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"device-{device}", daemon=True)

    def pipeline(self, name: str) -> Any:
        """A loaded pipeline, or None. A seam for tests and benchmarks: only this worker's
        thread may call it while the server runs."""
        loaded = self._loaded.get(name)
        return loaded.pipeline if loaded else None

    def start(self) -> None:
        """Start loading in the background; returns at once."""
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Refuse new jobs, finish the queued ones, then end the thread."""
        with self._intake:
            self.state = WorkerState.STOPPED
            self._jobs.put(None)
        if self._thread.is_alive():
            self._thread.join(timeout)

    def wait_until_loaded(self, timeout: float) -> bool:
        """Block until start-up ended (either way); False if still loading after `timeout`."""
        return self._load_ended.wait(timeout)

    def submit(self, spec: ModelSpec, request: GenerationRequest) -> Job:
        """Queue a generation; its future resolves to a RawOutput."""
        with self._intake:
            if self.state is WorkerState.LOADING:
                raise ModelNotReadyError(
                    f"Model '{self.preload.name}' is still loading; retry shortly."
                )
            if self.state is not WorkerState.READY:
                raise ModelUnavailableError(self.error or "The server is shutting down.")
            if spec.name in self._broken:
                raise ModelUnavailableError(self.model_errors[spec.name])
            job = Job(spec, request)
            self._jobs.put(job)
        return job

    def _run(self) -> None:
        try:
            self._start()
        finally:
            self._load_ended.set()
        while (job := self._jobs.get()) is not None:
            self._serve(job)

    def _start(self) -> None:
        try:
            from backend.model import device as devices

            self._device = devices.resolve_device(self.device_setting)
            self.device_name = str(self._device)
            self._dtype = devices.resolve_dtype(self.dtype_setting, self._device)
        except ModelLayerError as error:
            log.error("device %s cannot be used: %s", self.device_setting, error)
            self.error = str(error)
            self._set_state(WorkerState.FAILED)
            return
        # A failure is recorded in model_errors; the server still serves the other models.
        with contextlib.suppress(ModelLayerError):
            self._model(self.preload)
        self._set_state(WorkerState.READY)

    def _set_state(self, state: WorkerState) -> None:
        with self._intake:
            if self.state is not WorkerState.STOPPED:  # stop() during start-up wins
                self.state = state

    def _serve(self, job: Job) -> None:
        if not job.future.set_running_or_notify_cancel():
            return
        job.started_at = time.perf_counter()
        try:
            output = self._generate(self._model(job.spec), job.request)
        except BaseException as error:  # the thread must outlive any one request
            job.finished_at = time.perf_counter()
            job.future.set_exception(error)
            return
        job.finished_at = time.perf_counter()
        job.future.set_result(output)

    def _model(self, spec: ModelSpec) -> _Loaded:
        """The loaded model for `spec`, loading it (and evicting the least recently used)."""
        if spec.name in self._loaded:
            self._loaded.move_to_end(spec.name)
            return self._loaded[spec.name]
        try:
            folder = inspect_folder(spec)  # cheap and torch-free: fails before anything is evicted
        except ModelFolderError as error:
            self._record_failure(spec, str(error))
            raise
        while len(self._loaded) >= self.max_loaded:
            self._evict_oldest()
        from backend.model import loader

        started = time.perf_counter()
        log.info("loading model %s from %s", spec.name, display_path(folder.path))
        try:
            pipeline = loader.load_pipeline(folder, self._device, self._dtype)
        except Exception as error:  # a corrupt file, a diffusers incompatibility, ...
            log.exception("loading model %s failed", spec.name)
            self._broken.add(spec.name)  # reloading gigabytes per request would not help
            # The exception text may hold internals; the client gets its type and where to look.
            message = (
                f"Model '{spec.name}' in '{display_path(spec.folder)}' failed to load "
                f"({type(error).__name__}); the server log has the details."
            )
            self._record_failure(spec, message)
            raise ModelUnavailableError(message) from None
        self._loaded[spec.name] = _Loaded(pipeline, folder.family, pipeline.scheduler)
        self.loaded_models = tuple(self._loaded)
        self.model_errors.pop(spec.name, None)
        log.info(
            "model %s ready on %s in %.2fs",
            spec.name,
            self.device_name,
            time.perf_counter() - started,
        )
        return self._loaded[spec.name]

    def _record_failure(self, spec: ModelSpec, message: str) -> None:
        log.error("model %s cannot serve: %s", spec.name, message)
        self.model_errors[spec.name] = message

    def _evict_oldest(self) -> None:
        name, _ = self._loaded.popitem(last=False)
        self.loaded_models = tuple(self._loaded)
        gc.collect()  # drop the weights now, not at some later collection
        if self._device is not None and self._device.type == "cuda":
            import torch

            torch.cuda.empty_cache()
        log.info("unloaded model %s to make room (MAX_LOADED_MODELS=%d)", name, self.max_loaded)

    def _generate(self, model: _Loaded, request: GenerationRequest) -> RawOutput:
        import torch

        choice = None
        if request.scheduler is not None:
            choice = schedulers.find(request.scheduler, model.family)
            if choice is None:  # the schemas check this first; reaching here is a bug
                raise ValueError(f"scheduler {request.scheduler!r} does not fit a {model.family}")
        pipeline = model.pipeline
        pipeline.scheduler = schedulers.build(choice, model.base_scheduler)
        # One CPU generator per image: image k of a batch starts from the same noise as a
        # request for seed+k alone, on any device.
        generators = [torch.Generator("cpu").manual_seed(seed) for seed in request.seeds()]
        with torch.inference_mode():
            output = pipeline(
                prompt=request.prompt,
                # None, not "", so each family uses its own unconditional embedding
                # (SDXL zeroes it for an empty negative prompt).
                negative_prompt=request.negative_prompt or None,
                width=request.width,
                height=request.height,
                num_inference_steps=request.steps,
                guidance_scale=request.guidance_scale,
                num_images_per_prompt=request.num_images,
                generator=generators,
                output_type="pil",
            )
        if choice is None:
            base = model.base_scheduler
            choice = schedulers.describe(type(base).__name__, base.config, model.family)
        return RawOutput(list(output.images), choice)
