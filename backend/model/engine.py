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
from dataclasses import replace
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily

from backend.config import Settings
from backend.model import engine_status, host_memory
from backend.model.catalogue import ModelSpec
from backend.model.engine_jobs import EngineJobs
from backend.model.engine_live import EngineLive
from backend.model.errors import (
    ModelFolderError,
    ModelLayerError,
    ModelNotReadyError,
    ModelUnavailableError,
    QueueFullError,
)
from backend.model.images import encode_job
from backend.model.job import Job
from backend.model.job_encoder import JobEncoder
from backend.model.job_files import JobFiles
from backend.model.job_recovery import JobRecovery
from backend.model.job_store import JobStore
from backend.model.metrics import ModelMetrics
from backend.model.model_catalog import ModelCatalog
from backend.model.model_listing import list_models
from backend.model.service import EngineStatus, ModelInfo
from backend.model.types import (
    MAX_SEED,
    GenerationRequest,
    GenerationResult,
    OutputOptions,
)
from backend.model.worker import DeviceWorker
from backend.model.worker_choice import choose_worker

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


def _may_run_on_cpu(settings: Settings) -> bool:
    """Whether DEVICE/DEVICES can mean the CPU, judged without importing torch."""
    return any(name in ("cpu", "auto") for name in settings.devices or (settings.device,))


class Engine(EngineJobs, EngineLive):
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
        self._default_problem = engine_status.folder_problem(self.catalog.default, settings)
        self._started = threading.Event()
        self._dispatch = threading.Lock()  # choosing a device and queueing on it, atomically
        # Encodes finished async jobs, so the device thread goes straight on to the next batch.
        self._encoder = JobEncoder(settings.embed_metadata)
        self._stopping = threading.Event()
        self._live_init()
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
        self._encoder.shutdown()
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
        return engine_status.engine_status(
            self._workers, self.catalog.default.name, self._default_problem, self.settings.device
        )

    def switch_default(self, name: str) -> ModelSpec:
        """Make `name` the default model; it loads on demand, as any other model does."""
        spec = self.catalog.resolve(name)  # ModelNotFoundError if it is not servable
        problem = engine_status.folder_problem(spec, self.settings)
        if problem is not None:
            raise ModelFolderError(problem)
        with self._dispatch:  # the default and its folder's problem change together
            self.catalog.set_default(spec)
            self._default_problem = problem
        return spec

    def models(self) -> list[ModelInfo]:
        """Every model worth listing, with whether it is present, loaded, and the default."""
        return list_models(self.catalog, engine_status.model_holders(self._workers))

    def generate(
        self,
        request: GenerationRequest,
        output: OutputOptions | None = None,
        owner: str | None = None,
    ) -> GenerationResult:
        """Run one generation (one or more images) within REQUEST_TIMEOUT_SECONDS, encoded;
        `owner` lets `current_work` and `interrupt` find it."""
        timeout = self.settings.serving.request_timeout_seconds
        job = self._submit(request, output, timeout, owner=owner)
        if not job.wait(job.remaining()):
            # The device may be mid-step: the job's step callback stops it at the next step.
            self._abandon(job)
            job.wait(None)  # whichever end won (deadline, failure or images) is settled now
        if job.error is not None:
            raise job.error
        # Encoded here, on the request's thread: the device goes on with the next batch.
        result = encode_job(job, self.settings.embed_metadata)
        job.succeed(result)
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
            job.on_drawn = self._encoder.drawn
            self.jobs.track(job)
        with self._dispatch:
            self._choose(spec).submit(job)
        self._watch(job)
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
        job.on_drawn = self._encoder.drawn
        self.jobs.track(job)
        self._watch(job)
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

    def state_metrics(self) -> Iterable[GaugeMetricFamily]:
        """Queue depths, running generations and kept jobs, read at scrape time."""
        return engine_status.state_metrics(self._workers, self.jobs)

    def _choose(self, spec: ModelSpec) -> DeviceWorker:
        return choose_worker(self._workers, spec, self.settings.serving.max_queue_size)
