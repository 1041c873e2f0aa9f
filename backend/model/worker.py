"""One thread per device: it loads and unloads pipelines, and runs every generation there.

Pipelines are only ever called, loaded and unloaded on their device's thread: diffusers
schedulers keep per-call state and are not thread-safe, loading or unloading must never race a
running generation, and a single consumer gives a natural queue for admission control and
batching. torch and diffusers are imported inside the thread, so creating a worker (and the
Flask app around it) is instant and `/ping` answers while they load.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from backend.config import Family, ModelSpec, Settings
from backend.model import schedulers
from backend.model.errors import (
    DeviceOutOfMemoryError,
    ModelFolderError,
    ModelLayerError,
    ModelNotReadyError,
    ModelUnavailableError,
)
from backend.model.registry import display_path, inspect_folder
from backend.model.types import GenerationRequest

log = logging.getLogger(__name__)

StepHook = Callable[[int, int], None]  # (step just finished, total steps)


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
    last_used: float = field(default_factory=time.monotonic)


class DeviceWorker:
    """Owns one device's pipelines and the thread that alone may touch them."""

    def __init__(self, index: int, device: str, settings: Settings, preload: ModelSpec) -> None:
        self.index = index
        self.device_setting = device
        self.settings = settings
        self.preload = preload
        self.device_name: str | None = None  # known once torch has resolved `auto`
        self.description = ""  # e.g. the GPU's model
        self.state = WorkerState.LOADING
        self.error: str | None = None  # why the device cannot be used
        self.model_errors: dict[str, str] = {}  # latest failure per model, cleared on success
        self.loaded_models: tuple[str, ...] = ()  # a snapshot other threads may read
        self.pending = 0  # jobs queued or running here
        self.served = 0
        # Fault-injection seam for tests: called on this thread after every denoising step.
        self.step_hook: StepHook | None = None
        self._broken: set[str] = set()  # models whose weights failed to load: not retried
        self._loaded: OrderedDict[str, _Loaded] = OrderedDict()  # least recently used first
        self._device: Any = None
        self._dtype: Any = None
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._load_ended = threading.Event()
        # Held while checking the state and queueing, so no job can land behind stop()'s
        # sentinel, and while counting pending jobs.
        self._intake = threading.Lock()
        self._thread = threading.Thread(
            target=self._run, name=f"device-{index}-{device}", daemon=True
        )

    def pipeline(self, name: str) -> Any:
        """A loaded pipeline, or None. A seam for tests and benchmarks: only this worker's
        thread may call it while the server runs."""
        loaded = self._loaded.get(name)
        return loaded.pipeline if loaded else None

    def broken(self, name: str) -> bool:
        """Whether `name` failed to load here (and will not be retried)."""
        return name in self._broken

    def memory(self) -> dict[str, int] | None:
        """Device memory in bytes (CUDA only)."""
        if self._device is None:
            return None
        from backend.model import device as devices

        return devices.memory(self._device)

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

    def wait_until_loaded(self, timeout: float | None) -> bool:
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
            self.pending += 1
            self._jobs.put(job)
        return job

    def _run(self) -> None:
        try:
            self._start()
        finally:
            self._load_ended.set()
        while True:
            try:
                job = self._jobs.get(timeout=self._idle_wait())
            except queue.Empty:
                self._unload_idle()
                continue
            if job is None:
                return
            self._serve(job)

    def _start(self) -> None:
        try:
            from backend.model import device as devices

            self._device = devices.resolve_device(self.device_setting)
            self.device_name = str(self._device)
            self.description = devices.describe(self._device)
            self._dtype = devices.resolve_dtype(self.settings.torch_dtype, self._device)
        except ModelLayerError as error:
            log.error("device %s cannot be used: %s", self.device_setting, error)
            self.error = str(error)
            self._set_state(WorkerState.FAILED)
            return
        # A failure is recorded in model_errors; the device still serves the other models.
        with contextlib.suppress(ModelLayerError):
            self._model(self.preload)
        self._set_state(WorkerState.READY)

    def _set_state(self, state: WorkerState) -> None:
        with self._intake:
            if self.state is not WorkerState.STOPPED:  # stop() during start-up wins
                self.state = state

    def _serve(self, job: Job) -> None:
        import torch

        if not job.future.set_running_or_notify_cancel():
            self._finished()
            return
        job.started_at = time.perf_counter()
        output = failure = None
        out_of_memory = False
        try:
            output = self._generate(self._model(job.spec), job.request)
        except torch.cuda.OutOfMemoryError:
            out_of_memory = True  # no reference kept: its traceback pins the tensors
        except BaseException as error:  # the thread must outlive any one request
            failure = error
        job.finished_at = time.perf_counter()
        if out_of_memory:
            # Outside the except block, where nothing holds the failed run's tensors any more.
            self._release_memory()
            failure = DeviceOutOfMemoryError(
                f"{self.device_name} ran out of memory for this request. Try a smaller size or "
                "fewer images, or set CPU_OFFLOAD=model, VAE_TILING=true or ATTENTION_SLICING=true."
            )
            log.warning("out of memory on %s; memory released", self.device_name)
        self._finished()
        if failure is None:
            job.future.set_result(output)
        else:
            job.future.set_exception(failure)

    def _finished(self) -> None:
        with self._intake:
            self.pending -= 1
            self.served += 1

    def _model(self, spec: ModelSpec) -> _Loaded:
        """The loaded model for `spec`, loading it (and unloading the least recently used)."""
        if spec.name in self._loaded:
            self._loaded.move_to_end(spec.name)
            loaded = self._loaded[spec.name]
            loaded.last_used = time.monotonic()
            return loaded
        try:
            # Cheap and torch-free: fails before anything is unloaded.
            folder = inspect_folder(spec, drop_t5=self.settings.memory.sd3_drop_t5)
        except ModelFolderError as error:
            self._record_failure(spec, str(error))
            raise
        while len(self._loaded) >= self.settings.max_loaded_models:
            self._unload(next(iter(self._loaded)), "to make room (MAX_LOADED_MODELS)")
        import torch

        from backend.model import loader

        started = time.perf_counter()
        log.info("loading model %s from %s", spec.name, display_path(folder.path))
        try:
            pipeline = loader.load_pipeline(folder, self._device, self._dtype, self.settings.memory)
        except torch.cuda.OutOfMemoryError:
            pipeline = None  # handled below, outside the except block
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
        if pipeline is None:
            self._release_memory()
            message = (
                f"Model '{spec.name}' does not fit in {self.device_name}'s free memory; try "
                "CPU_OFFLOAD=model, a smaller TORCH_DTYPE or fewer MAX_LOADED_MODELS."
            )
            self._record_failure(spec, message)
            raise DeviceOutOfMemoryError(message)
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
        log.error("model %s cannot serve on %s: %s", spec.name, self.device_name, message)
        self.model_errors[spec.name] = message

    def _unload(self, name: str, reason: str) -> None:
        del self._loaded[name]
        self.loaded_models = tuple(self._loaded)
        self._release_memory()  # now, not at some later garbage collection
        log.info("unloaded model %s from %s %s", name, self.device_name, reason)

    def _release_memory(self) -> None:
        from backend.model import device as devices

        devices.release_memory(self._device)

    def _idle_wait(self) -> float | None:
        """How long the queue may stay empty before the next idle model is due to unload."""
        idle = self.settings.memory.idle_unload_seconds
        if not idle or not self._loaded:
            return None
        oldest = min(loaded.last_used for loaded in self._loaded.values())
        return max(0.0, oldest + idle - time.monotonic())

    def _unload_idle(self) -> None:
        idle = self.settings.memory.idle_unload_seconds
        now = time.monotonic()
        for name, loaded in list(self._loaded.items()):
            if now - loaded.last_used >= idle:
                self._unload(name, f"after {idle:g}s without requests (IDLE_UNLOAD_SECONDS)")

    def _generate(self, model: _Loaded, request: GenerationRequest) -> RawOutput:
        import torch

        choice = None
        if request.scheduler is not None:
            choice = schedulers.find(request.scheduler, model.family)
            if choice is None:  # the schemas check this first; reaching here is a bug
                raise ValueError(f"scheduler {request.scheduler!r} does not fit a {model.family}")
        pipeline = model.pipeline
        pipeline.scheduler = schedulers.build(choice, model.base_scheduler)
        memory = self.settings.memory
        tile = memory.vae_tiling == "true" or (
            memory.vae_tiling == "auto"
            and request.width * request.height > memory.vae_tiling_pixels
        )
        # Decoding a large image in tiles bounds its memory; small ones decode faster whole.
        (pipeline.vae.enable_tiling if tile else pipeline.vae.disable_tiling)()
        extra: dict[str, Any] = {}
        if self.step_hook is not None:
            extra["callback_on_step_end"] = self._step_end(self.step_hook, request.steps)
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
                **extra,
            )
        if choice is None:
            base = model.base_scheduler
            choice = schedulers.describe(type(base).__name__, base.config, model.family)
        return RawOutput(list(output.images), choice)

    @staticmethod
    def _step_end(hook: StepHook, total: int) -> Callable[..., dict]:
        def callback(_pipeline: Any, step: int, _timestep: Any, kwargs: dict) -> dict:
            hook(step + 1, total)
            return kwargs

        return callback
