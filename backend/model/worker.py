"""One thread per device: it joins the device's queue to its loaded models.

The queue (`device_queue.py`) decides what runs next; the residency (`residency.py`) loads
models and `pipeline_call.py` runs them. This thread alone touches the pipelines, so loading never
races a generation. torch is imported inside the thread: creating a worker (and the Flask app
around it) is instant, and `/ping` answers while it loads.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Any

from backend.config import Settings
from backend.model.catalogue import ModelSpec
from backend.model.device_queue import DeviceQueue
from backend.model.errors import (
    DeviceOutOfMemoryError,
    GenerationFailedError,
    ModelLayerError,
    ModelNotReadyError,
    ModelUnavailableError,
)
from backend.model.job import Job
from backend.model.metrics import ModelMetrics
from backend.model.pipeline_call import RawOutput, StepHook
from backend.model.residency import ModelResidency
from backend.model.service import WorkerState

log = logging.getLogger(__name__)


class DeviceWorker:
    """Owns one device's queue and models, and the thread that alone may run them."""

    def __init__(
        self,
        index: int,
        device: str,
        settings: Settings,
        preload: ModelSpec,
        metrics: ModelMetrics | None = None,
        *,
        max_waiting: int | None = None,
    ) -> None:
        self.index = index
        self.device_setting = device
        self.settings = settings
        self.preload = preload
        self.metrics = metrics or ModelMetrics()
        self.state = WorkerState.LOADING
        self.error: str | None = None  # why the device cannot be used
        self.served = 0
        self.queue = DeviceQueue(settings.serving, max_waiting)
        self.models = ModelResidency(device, settings, self.metrics)
        self._load_ended = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"device-{index}-{device}", daemon=True
        )

    # --- what other threads read ---

    @property
    def device_name(self) -> str | None:
        """The resolved device (`cuda:0`, `cpu`), once torch has resolved `auto`."""
        return self.models.device_name

    @property
    def description(self) -> str:
        """The device in words (e.g. the GPU's model)."""
        return self.models.description

    @property
    def loaded_models(self) -> tuple[str, ...]:
        """Names of the models in memory here."""
        return self.models.loaded_models

    @property
    def model_errors(self) -> dict[str, str]:
        """The latest failure per model."""
        return self.models.model_errors

    @property
    def step_hook(self) -> StepHook | None:
        """Fault-injection seam: called on this thread after every denoising step."""
        return self.models.step_hook

    @step_hook.setter
    def step_hook(self, hook: StepHook | None) -> None:
        self.models.step_hook = hook

    @property
    def queued(self) -> int:
        """Jobs waiting for this device."""
        return self.queue.queued

    @property
    def running(self) -> int:
        """Jobs in the batch on the device now."""
        return self.queue.running

    @property
    def pending(self) -> int:
        """Jobs queued or running here."""
        return self.queue.pending

    def pipeline(self, name: str) -> Any:
        """A loaded pipeline, or None. A seam for tests and benchmarks: only this worker's
        thread may call it while the server runs."""
        return self.models.pipeline(name)

    def broken(self, name: str) -> bool:
        """Whether `name` failed to load here (and will not be retried)."""
        return self.models.broken(name)

    def memory(self) -> dict[str, int] | None:
        """Device memory in bytes (CUDA only)."""
        return self.models.memory()

    def has_room(self) -> bool:
        """Whether `submit` would accept a job now."""
        return self.queue.has_room()

    def retry_after(self) -> int:
        """Seconds until a place in the queue is likely to free up."""
        return self.queue.retry_after()

    # --- life ---

    def start(self) -> None:
        """Start loading in the background; returns at once."""
        self._thread.start()

    def refuse(self) -> None:
        """Refuse new jobs from now on; queued ones are still served."""
        self.state = WorkerState.STOPPED
        self.queue.close()

    def stop(self, timeout: float | None = None) -> None:
        """Refuse new jobs, finish the queued ones, then end the thread."""
        self.refuse()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def wait_until_loaded(self, timeout: float | None) -> bool:
        """Block until start-up ended (either way); False if still loading after `timeout`."""
        return self._load_ended.wait(timeout)

    def submit(self, job: Job) -> None:
        """Queue a job, or refuse it at once (still loading, unusable, or the queue is full)."""
        if self.state is WorkerState.LOADING:
            name = self.preload.name
            raise ModelNotReadyError(f"Model '{name}' is still loading; retry shortly.")
        if self.state is not WorkerState.READY:
            raise ModelUnavailableError(self.error or "The server is shutting down.")
        if job.spec is not None and self.models.broken(job.spec.name):
            raise ModelUnavailableError(self.models.model_errors[job.spec.name])
        self.queue.put(job, self.device_name or self.device_setting)

    def position(self, job: Job) -> int | None:
        """How many jobs wait ahead of `job` (0: it runs next); None if it is not queued."""
        return self.queue.position(job)

    def withdraw(self, job: Job) -> None:
        """Take a cancelled or abandoned job out of the queue, freeing its place at once."""
        self.queue.withdraw(job)

    def _run(self) -> None:
        try:
            self.models.resolve()
        except ModelLayerError as error:
            log.error("device %s cannot be used: %s", self.device_setting, error)
            self.error = str(error)
            self._set_state(WorkerState.FAILED)
            self._load_ended.set()
            return
        try:
            if self.models.device.type == "cpu":
                # Values below ~1e-38 take a slow microcode path on x86; flushing them to zero
                # changes no visible pixel. It is per thread: this one runs the pipelines.
                import torch

                torch.set_flush_denormal(True)
            # A failure is recorded in model_errors; the device still serves the other models.
            with contextlib.suppress(ModelLayerError):
                self.models.model(self.preload)
            self._set_state(WorkerState.READY)
        finally:
            self._load_ended.set()
        while True:
            batch = self.queue.take(self.models.idle_wait())
            if batch is None:
                return
            if batch:
                self._serve(batch)
            else:
                self.models.unload_idle()

    def _set_state(self, state: WorkerState) -> None:
        if self.state is not WorkerState.STOPPED:  # stop() during start-up wins
            self.state = state
        if self.state is WorkerState.STOPPED:
            self.queue.close()

    def _serve(self, batch: list[Job]) -> None:
        import torch

        images = sum(job.request.num_images for job in batch)
        # A job cancelled or past its deadline while queued is not run.
        jobs = [job for job in batch if job.begin(images)]
        failure: ModelLayerError | None = None
        out_of_memory = False
        started = time.monotonic()
        outputs: list[RawOutput] = []
        try:
            if jobs:
                spec = jobs[0].spec
                assert spec is not None  # resolved when it was submitted
                outputs = self.models.generate(spec, [job.request for job in jobs], jobs)
        except torch.cuda.OutOfMemoryError:
            out_of_memory = True  # no reference kept: its traceback pins the tensors
        except ModelLayerError as error:
            failure = error
        except BaseException:  # the thread must outlive any one request
            log.exception("generation failed on %s", self.device_name)
            failure = GenerationFailedError("The generation failed on the device.")
        if out_of_memory:
            # Outside the except block, where nothing holds the failed run's tensors any more.
            self.models.release_memory()
            failure = DeviceOutOfMemoryError(
                f"{self.device_name} ran out of memory for this request. Try a smaller size or "
                "fewer images, or set CPU_OFFLOAD=model, VAE_TILING=true or ATTENTION_SLICING=true."
            )
            log.warning("out of memory on %s; memory released", self.device_name)
        seconds = time.monotonic() - started
        if jobs and failure is None:
            self.metrics.generation_seconds.labels(jobs[0].spec.name).observe(seconds)
            self.metrics.batch_images.observe(images)
        for job in jobs:
            self.metrics.queue_seconds.observe(job.queue_seconds())
            if failure is not None:
                self.metrics.failures.labels(type(failure).__name__).inc()
                job.fail(failure)
        for job, output in zip(jobs, outputs, strict=False):
            job.drawn(output)
            if job.raw is not None:
                self.metrics.images.labels(job.spec.name).inc(len(output.images))
        self.served += len(batch)
        self.queue.done(seconds if jobs and failure is None else None)
