"""One thread per device: it loads the pipeline, then runs every generation for that device.

Pipelines are only ever called from their device's thread: diffusers schedulers keep per-call
state and are not thread-safe, and a single consumer gives a natural queue for later admission
control and micro-batching. torch and diffusers are imported inside the thread, so creating a
worker (and the Flask app around it) is instant and `/ping` answers while they load.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from backend.config import ModelSpec
from backend.model.errors import ModelLayerError, ModelNotReadyError, ModelUnavailableError
from backend.model.registry import display_path, inspect_folder
from backend.model.types import GenerationRequest

log = logging.getLogger(__name__)


class WorkerState(StrEnum):
    """Where a device worker is in its life."""

    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"
    STOPPED = "stopped"


@dataclass
class Job:
    """A generation waiting for, or being served by, a device worker."""

    request: GenerationRequest
    future: Future = field(default_factory=Future)
    submitted_at: float = field(default_factory=time.perf_counter)
    started_at: float = 0.0
    finished_at: float = 0.0


class DeviceWorker:
    """Owns one device's pipeline and the thread that alone may call it."""

    def __init__(self, spec: ModelSpec, device: str, dtype: str) -> None:
        self.spec = spec
        self.device_setting = device
        self.dtype_setting = dtype
        self.device_name: str | None = None  # known once torch has resolved `auto`
        self.state = WorkerState.LOADING
        self.error: str | None = None
        self.load_seconds: float | None = None
        self._pipeline: Any = None
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._load_ended = threading.Event()
        # Held while checking the state and queueing, so no job can land behind stop()'s sentinel.
        self._intake = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"device-{device}", daemon=True)

    @property
    def pipeline(self) -> Any:
        """The loaded pipeline, or None. A seam for tests and benchmarks: only this worker's
        thread may call it while the server runs."""
        return self._pipeline

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
        """Block until loading ended (either way); False if still loading after `timeout`."""
        return self._load_ended.wait(timeout)

    def submit(self, request: GenerationRequest) -> Job:
        """Queue a generation; its future resolves to the list of PIL images."""
        with self._intake:
            if self.state is WorkerState.LOADING:
                raise ModelNotReadyError(
                    f"Model '{self.spec.name}' is still loading; retry shortly."
                )
            if self.state is not WorkerState.READY:
                raise ModelUnavailableError(
                    self.error or f"Model '{self.spec.name}' is not available."
                )
            job = Job(request)
            self._jobs.put(job)
        return job

    def _run(self) -> None:
        try:
            self._load()
        finally:
            self._load_ended.set()
        while (job := self._jobs.get()) is not None:
            self._serve(job)

    def _load(self) -> None:
        started = time.perf_counter()
        try:
            folder = inspect_folder(self.spec)  # fast and torch-free: bad folders fail at once
            from backend.model import device as devices
            from backend.model import loader

            device = devices.resolve_device(self.device_setting)
            self.device_name = str(device)
            dtype = devices.resolve_dtype(self.dtype_setting, device)
            log.info("loading model %s from %s", self.spec.name, display_path(folder.path))
            self._pipeline = loader.load_pipeline(folder, device, dtype)
        except ModelLayerError as error:
            self._fail(str(error))
            return
        except Exception as error:  # a corrupt file, a diffusers incompatibility, ...
            log.exception("loading model %s failed", self.spec.name)
            # The exception text may hold internals; the client gets its type and where to look.
            self._fail(
                f"Model '{self.spec.name}' in '{display_path(self.spec.folder)}' failed to load "
                f"({type(error).__name__}); the server log has the details."
            )
            return
        self.load_seconds = time.perf_counter() - started
        log.info(
            "model %s ready on %s in %.2fs", self.spec.name, self.device_name, self.load_seconds
        )
        self._set_state(WorkerState.READY)

    def _fail(self, message: str) -> None:
        log.error("model %s cannot serve: %s", self.spec.name, message)
        self.error = message
        self._set_state(WorkerState.FAILED)

    def _set_state(self, state: WorkerState) -> None:
        with self._intake:
            if self.state is not WorkerState.STOPPED:  # stop() during loading wins
                self.state = state

    def _serve(self, job: Job) -> None:
        if not job.future.set_running_or_notify_cancel():
            return
        job.started_at = time.perf_counter()
        try:
            images = self._generate(job.request)
        except BaseException as error:  # the thread must outlive any one request
            job.finished_at = time.perf_counter()
            job.future.set_exception(error)
            return
        job.finished_at = time.perf_counter()
        job.future.set_result(images)

    def _generate(self, request: GenerationRequest) -> list[Any]:
        import torch

        # A CPU generator gives the same starting noise for a seed on every device.
        generator = torch.Generator("cpu").manual_seed(request.seed)
        with torch.inference_mode():
            output = self._pipeline(
                prompt=request.prompt,
                # None, not "", so each family uses its own unconditional embedding
                # (SDXL zeroes it for an empty negative prompt).
                negative_prompt=request.negative_prompt or None,
                width=request.width,
                height=request.height,
                num_inference_steps=request.steps,
                guidance_scale=request.guidance_scale,
                generator=[generator],
                output_type="pil",
            )
        return list(output.images)
