"""The in-process engine (QUEUE_BACKEND=local): resolve the model, pick a device, run, report.

It implements `GenerationService` with one `DeviceWorker` per device in this process. A worker
process of the scale-out mode runs one too, fed by Celery instead of HTTP.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily

from backend.config import Settings
from backend.model import host_memory
from backend.model.catalogue import ModelSpec
from backend.model.errors import (
    GenerationFailedError,
    JobNotFinishedError,
    ModelFolderError,
    ModelLayerError,
    ModelNotReadyError,
    ModelUnavailableError,
    QueueFullError,
)
from backend.model.images import encode_job
from backend.model.job import Job
from backend.model.job_files import JobFiles
from backend.model.job_record import JobRecord, JobStatus
from backend.model.job_recovery import JobRecovery
from backend.model.job_store import JobStore
from backend.model.metrics import ModelMetrics
from backend.model.registry import ModelCatalog, display_path, inspect_folder
from backend.model.service import DeviceStatus, EngineStatus, ModelInfo, WorkerState
from backend.model.types import (
    MAX_SEED,
    GenerationRequest,
    GenerationResult,
    OutputOptions,
)
from backend.model.worker import DeviceWorker

log = logging.getLogger(__name__)


def _job_files(settings: Settings) -> JobFiles | None:
    folder = settings.serving.jobs_dir
    if folder is None:
        return None
    try:
        return JobFiles(folder)
    except OSError as error:
        # Serving matters more than keeping jobs across restarts: go on, in memory, loudly.
        log.error("JOBS_DIR %s is unusable (%s); jobs will not outlive a restart", folder, error)
        return None


def _folder_problem(spec: ModelSpec, settings: Settings) -> str | None:
    """Why the default model's folder cannot be loaded, found without importing torch."""
    try:
        inspect_folder(spec, drop_t5=settings.memory.sd3_drop_t5)
    except ModelFolderError as error:
        return str(error)
    return None


def _may_run_on_cpu(settings: Settings) -> bool:
    """Whether DEVICE/DEVICES can mean the CPU, judged without importing torch."""
    return any(name in ("cpu", "auto") for name in settings.devices or (settings.device,))


class Engine:
    """Serves generations on one worker per device; one engine per app, so per process."""

    def __init__(self, settings: Settings, registry: CollectorRegistry | None = None) -> None:
        self.settings = settings
        self.metrics = ModelMetrics(registry)
        self.catalog = ModelCatalog(settings.default_model, settings.models_dir)
        self.jobs = JobStore(
            settings.serving.job_ttl_seconds, settings.serving.max_stored_jobs, _job_files(settings)
        )
        self._workers: tuple[DeviceWorker, ...] = ()
        # Pure Python and quick: /health can name a missing or broken default model folder at
        # once, while the device threads are still importing torch.
        self._default_problem = _folder_problem(self.catalog.default, settings)
        self._started = threading.Event()
        self._dispatch = threading.Lock()  # choosing a device and queueing on it, atomically
        # Encodes finished async jobs, so the device thread goes straight on to the next batch.
        self._encoder = ThreadPoolExecutor(max_workers=2, thread_name_prefix="encode")
        self._stopping = threading.Event()
        files = self.jobs.files
        self._recovery = (
            None
            if files is None
            else JobRecovery(files, self.jobs, settings.serving.job_max_attempts, self._resubmit)
        )
        self.metrics.watch(self.state_metrics)

    def pipeline(self, name: str | None = None, device: int = 0) -> Any:
        """A loaded pipeline or None (a seam for tests; see `DeviceWorker.pipeline`)."""
        return self._workers[device].pipeline(name or self.catalog.default.name)

    @property
    def workers(self) -> tuple[DeviceWorker, ...]:
        """The device workers (empty until start-up has found the devices)."""
        return self._workers

    def start(self) -> None:
        """Find the devices and begin loading the default model on each, in the background."""
        if _may_run_on_cpu(self.settings):
            # Now, before this engine starts a thread: glibc picks a thread's malloc arena at
            # its first allocation, and only threads started after the tuning use the tuned one.
            host_memory.tune_for_cpu_inference()
        threading.Thread(target=self._start_workers, name="engine-start", daemon=True).start()

    def _start_workers(self) -> None:
        from backend.model import device as devices  # imports torch: never on the caller

        names = devices.expand_devices(self.settings.devices, self.settings.device)
        if not any(devices.runs_on_cpu(name) for name in names):
            host_memory.restore_defaults()  # DEVICE=auto found a GPU: nothing to tune for
        workers = tuple(
            DeviceWorker(index, name, self.settings, self.catalog.default, self.metrics)
            for index, name in enumerate(names)
        )
        for worker in workers:
            worker.start()
        self._workers = workers
        self._started.set()
        if self._recovery is not None:
            self._recovery.start()

    def stop(self, timeout: float | None = None) -> None:
        """Refuse new work, finish what was accepted (within `timeout`), release the threads."""
        deadline = None if timeout is None else time.monotonic() + timeout

        def left() -> float | None:
            return None if deadline is None else max(0.0, deadline - time.monotonic())

        self._stopping.set()
        self._started.wait(left())
        if self._recovery is not None:
            self._recovery.stop(left())
        for worker in self._workers:  # all refuse new jobs at once, then each drains
            worker.refuse()
        pending = sum(worker.pending for worker in self._workers)
        if pending:
            log.info("stopping: finishing %d accepted generation(s) first", pending)
        for worker in self._workers:
            worker.stop(left())
        self._encoder.shutdown(wait=True)
        if self.jobs.files is not None:  # what is left unfinished is the next process's to run
            self.jobs.files.owners.release()
        unfinished = sum(worker.pending for worker in self._workers)
        if unfinished:
            log.warning("stopped with %d generation(s) unfinished (out of time)", unfinished)
        elif pending:
            log.info("stopped: every accepted generation was served")

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
                queue_depth=worker.queued,
                running=worker.running,
                served=worker.served,
                memory=worker.memory(),
                error=worker.error or worker.model_errors.get(default),
                last_step_at=worker.models.last_step_at,
            )
            for worker in workers
        )
        serving = [d for d in devices if d.state is WorkerState.READY and d.error is None]
        if serving:
            state, error = WorkerState.READY, None
        elif self._default_problem and not any(d.state is WorkerState.READY for d in devices):
            state, error = WorkerState.FAILED, self._default_problem
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
        """Run one generation (one or more images) within REQUEST_TIMEOUT_SECONDS, encoded."""
        job = self._submit(request, output, self.settings.serving.request_timeout_seconds)
        if not job.wait(job.remaining()):
            # The device may be mid-step: the job's step callback stops it at the next step.
            self._abandon(job)
            job.wait(None)  # whichever end won (deadline, failure or images) is settled now
        if job.error is not None:
            raise job.error
        result = self._encode(job)  # here, on the request's thread: the device goes on
        job.succeed(result)
        return result

    def _record(self, job: Job) -> JobRecord:
        """`job` as plain data, with its place in its device's queue."""
        position = None
        if job.status is JobStatus.QUEUED:
            places = (worker.position(job) for worker in self._workers)
            # Not in any queue but not begun: taken into the batch that starts next.
            position = next((place for place in places if place is not None), 0)
        return job.record(position)

    def submit_job(
        self,
        request: GenerationRequest,
        output: OutputOptions | None = None,
        owner: str | None = None,
    ) -> JobRecord:
        """Queue a generation to fetch later (`job`), within JOB_TIMEOUT_SECONDS.

        With an `owner`, only calls naming the same owner see the job.
        """
        timeout = self.settings.serving.job_timeout_seconds
        return self._record(self._submit(request, output, timeout, keep=True, owner=owner))

    def job(self, job_id: str, owner: str | None = None) -> JobRecord:
        """A job submitted with `submit_job`, while it is kept."""
        return self._record(self.jobs.get(job_id, owner))

    def cancel_job(self, job_id: str, owner: str | None = None) -> JobRecord:
        """Cancel a queued or running job; a finished one is forgotten with its images."""
        job = self.jobs.get(job_id, owner)
        if job.cancel():
            self._withdraw(job)
            log.info("job %s cancelled", job.id)
        else:
            self.jobs.forget(job, "it was deleted")
        return self._record(job)

    def job_result(self, job_id: str, owner: str | None = None) -> GenerationResult:
        """The result, with encoded images, of a job that succeeded."""
        job = self.jobs.get(job_id, owner)
        result = job.result
        if job.status is not JobStatus.SUCCEEDED or result is None:
            raise JobNotFinishedError(f"Job {job.id} has no images: it is {job.status}.")
        return result

    def _submit(
        self,
        request: GenerationRequest,
        output: OutputOptions | None,
        timeout: float,
        keep: bool = False,
        owner: str | None = None,
    ) -> Job:
        spec = self.catalog.resolve(request.model)
        seed = secrets.randbelow(MAX_SEED + 1) if request.seed is None else request.seed
        request = replace(request, seed=seed, model=spec.name)
        job = Job(spec, request, output or OutputOptions(), timeout or None, owner)
        if keep:  # before queueing: the device may finish it before `submit` returns
            job.on_drawn = self._drawn
            self.jobs.track(job)
        with self._dispatch:
            self._choose(spec).submit(job)
        if keep:  # only accepted jobs are kept (and written to disk): refusals stay cheap
            self.jobs.add(job)
        return job

    def _resubmit(self, job: Job) -> None:
        """Queue a job taken over from a dead process, waiting for the device to have room."""
        try:
            job.spec = self.catalog.resolve(job.request.model)
        except ModelLayerError as error:  # its model folder went away meanwhile
            self.jobs.track(job)
            job.fail(error)
            return
        job.on_drawn = self._drawn
        self.jobs.track(job)
        while not self._stopping.is_set() and job.alive:  # a client may cancel it meanwhile
            try:
                with self._dispatch:
                    self._choose(job.spec).submit(job)
                return
            except (QueueFullError, ModelNotReadyError):
                self._stopping.wait(0.05)  # its place comes as soon as a queued job starts
            except ModelUnavailableError as error:
                if not self._stopping.is_set():
                    job.fail(error)
                return

    def _abandon(self, job: Job) -> None:
        if job.expire():
            self._withdraw(job)
            log.info("job %s stopped after its %.0f s deadline", job.id, job.timeout or 0)

    def _withdraw(self, job: Job) -> None:
        for worker in self._workers:
            worker.withdraw(job)

    def _drawn(self, job: Job) -> None:
        try:
            self._encoder.submit(self._finish_async, job)
        except RuntimeError:  # the encoder has shut down (a stop that ran out of time)
            self._finish_async(job)

    def _finish_async(self, job: Job) -> None:
        try:
            job.succeed(self._encode(job))
            log.info(
                "job %s succeeded: %d image(s), %.2f s queued, %.2f s on the device",
                job.id,
                job.request.num_images,
                job.queue_seconds(),
                job.run_seconds(),
            )
        except Exception:  # an encoder failure must not leave the job "running" forever
            log.exception("encoding the images of job %s failed", job.id)
            job.fail_encoding(GenerationFailedError("Encoding the images failed."))

    def _encode(self, job: Job) -> GenerationResult:
        return encode_job(job, self.settings.embed_metadata)

    def state_metrics(self) -> Iterable[GaugeMetricFamily]:
        """Queue depths, running generations and kept jobs, read at scrape time."""
        queued = GaugeMetricFamily(
            "t2i_queue_depth", "Generations waiting for each device.", labels=["device"]
        )
        running = GaugeMetricFamily(
            "t2i_running", "Generations on each device now.", labels=["device"]
        )
        for worker in self._workers:
            name = worker.device_name or worker.device_setting
            queued.add_metric([name], worker.queued)
            running.add_metric([name], worker.running)
        jobs = GaugeMetricFamily("t2i_jobs", "Jobs kept, by status.", labels=["status"])
        for status, count in self.jobs.counts().items():
            jobs.add_metric([status], count)
        return [queued, running, jobs]

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
        open_ = [w for w in ready if w.has_room()]
        if not open_:
            raise QueueFullError(
                "The server is busy: every device's queue is full "
                f"(MAX_QUEUE_SIZE={self.settings.serving.max_queue_size}). Retry later.",
                min(w.retry_after() for w in ready),
            )
        holding = [w for w in open_ if spec.name in w.loaded_models]
        return min(holding or open_, key=lambda worker: worker.pending)
