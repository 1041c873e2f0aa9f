"""A worker process of the scale-out mode: one device worker, fed by Celery, answering to Redis.

Celery's task threads each carry one job id. A task claims its job in Redis (which drops a
redelivered duplicate), hands a local `Job` to the same `DeviceWorker` the single-process
server runs (so queueing, micro-batching, deadlines and the step callback are unchanged),
waits for it, and records the result fenced by its attempt. `upkeep.py` keeps the leases,
heartbeats, progress and cancels flowing meanwhile.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry

from backend.config import Settings
from backend.distributed.celery_app import TASK, any_queue, make_celery, model_queue, worker_threads
from backend.distributed.job_state import result_fields
from backend.distributed.remote_engine import redis_client, store_settings
from backend.distributed.results import ResultFiles
from backend.distributed.store import JobStore
from backend.model.errors import GenerationFailedError, ModelLayerError, ModelNotReadyError
from backend.model.images import encode_job
from backend.model.job import Job
from backend.model.metrics import ModelMetrics
from backend.model.model_catalog import ModelCatalog
from backend.model.types import GenerationRequest, OutputOptions
from backend.model.worker import DeviceWorker

log = logging.getLogger(__name__)


@dataclass
class Run:
    """A job this worker has claimed, and what it last told Redis about it."""

    job: Job
    attempt: int
    reported_step: int = -1
    reported_preview: int = -1  # the step of the latest preview written to Redis
    begun: bool = False
    ours: bool = True  # Redis took the begin (False: the job went final or elsewhere)
    # Held while telling Redis the run began: a fast run's result must not overtake that.
    lock: threading.Lock = field(default_factory=threading.Lock)


def route(workers: list[dict], prefix: str, model: str) -> str:
    """The queue for a job of `model`: a worker's that holds it, else the shared one."""
    if any(model in beat.get("models", ()) for beat in workers):
        return model_queue(prefix, model)
    return any_queue(prefix)


class WorkerNode:
    """Everything one worker process holds: its device, its claimed runs, its connections."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.prefix = settings.scale_out.redis_prefix
        self.id = f"{socket.gethostname()}-{os.getpid()}"
        self.hostname = f"t2i-{os.getpid()}@{socket.gethostname()}"  # Celery's node name
        self.catalog = ModelCatalog(settings.default_model, settings.models_dir)
        self.registry = CollectorRegistry()
        threads = worker_threads(settings)
        self.device = DeviceWorker(
            0,
            settings.device,
            settings,
            self.catalog.default,
            ModelMetrics(self.registry),
            max_waiting=threads,  # every task thread's job fits: admission was judged in Redis
        )
        self.redis = redis_client(settings, threads + 8)
        self.store = JobStore(self.redis, store_settings(settings))
        self.results = ResultFiles(settings.scale_out.results_dir)
        self.celery = make_celery(settings)
        self.runs: dict[str, Run] = {}
        self.runs_lock = threading.Lock()
        self.closing = threading.Event()  # SIGTERM: finish the running batch, hand on the rest
        self.gate = threading.Lock()  # orders queueing a job against `closing` being set
        self.claimed_hook: Callable[[str], None] | None = None  # test seam: after a claim

    # --- a task thread's work ---

    def run(self, job_id: str) -> None:
        """Serve one delivered job id to the end; returns when Celery may ack the message."""
        if self.closing.is_set():  # delivered while shutting down: someone else's to run
            self.resend(job_id, self._model_of(job_id))
            return
        claim = self.store.claim(job_id, self.id)
        if claim is None:
            log.info("job %s dropped: finished, cancelled or running elsewhere", job_id)
            return
        record, attempt = claim.record, claim.attempt
        try:
            job = self._local_job(record, attempt)
        except ModelLayerError as error:  # e.g. its model is not in this worker's MODELS_DIR
            self.store.finish(job_id, self.id, attempt, "failed", None, error.to_dict())
            return
        run = Run(job, attempt)
        with self.runs_lock:
            self.runs[job_id] = run
        try:
            if self.claimed_hook is not None:
                self.claimed_hook(job_id)
            if not self._submit(job):  # SIGTERM came between the claim and the queue
                self._hand_on(job_id, attempt, job.request.model)
                return
            job.wait(None)
            # A run shorter than the progress period has not said it began: say so first.
            if job.started is None or self.begin(run):
                self._record_end(job, attempt, bool(record.get("keep")))
        except ModelLayerError as error:
            self.store.finish(job_id, self.id, attempt, "failed", None, error.to_dict())
        finally:
            with self.runs_lock:
                self.runs.pop(job_id, None)
            # Finishing (or claiming) may have pushed the oldest kept jobs past MAX_STORED_JOBS.
            self.results.delete_jobs(self.store.trimmed())

    def _local_job(self, record: dict, attempt: int) -> Job:
        """The model layer's own `Job` for a claimed record, on this process's clocks."""
        spec = self.catalog.resolve(record["model"])
        job = Job(
            spec,
            GenerationRequest.from_dict(record["request"]),
            OutputOptions(**record["output"]),
            record.get("timeout"),
            record.get("owner"),
        )
        job.id, job.created_at = record["id"], record["created_at"]
        job.attempt = attempt - 1  # begin() counts the run
        waited = max(0.0, time.time() - record["created_at"])
        job.submitted = time.monotonic() - waited
        if record.get("deadline_at"):  # wall clock in the record; monotonic here
            job.deadline = time.monotonic() + (record["deadline_at"] - time.time())
        return job

    def _submit(self, job: Job) -> bool:
        """Queue `job` on the device; False once closing, which `hand_back()` then misses."""
        while True:
            # Under the gate, closing and queueing cannot interleave: a job is queued before
            # hand_back() drains the queue, or it sees `closing` here (never refused as failed).
            with self.gate:
                if self.closing.is_set():
                    return False
                try:
                    self.device.submit(job)
                    return True
                except ModelNotReadyError:  # still loading its default model: it waits here
                    if job.should_stop():
                        return True
            self.device.wait_until_loaded(1.0)

    def _record_end(self, job: Job, attempt: int, keep: bool) -> None:
        """Write the run's outcome to Redis, fenced by `attempt`; images first."""
        if job.raw is not None:
            try:
                result = encode_job(job, self.settings.embed_metadata)
            except Exception:
                log.exception("encoding the images of job %s failed", job.id)
                error = GenerationFailedError("Encoding the images failed.")
                self.store.finish(job.id, self.id, attempt, "failed", None, error.to_dict())
                return
            fields = result_fields(result)
            files = []
            if keep:
                files = self.results.save(job.id, attempt, result.images)
                fields["files"] = files
            inline = None if keep else [image.data for image in result.images]
            job.succeed(result)  # lets go of the raw images
            if not self.store.finish(job.id, self.id, attempt, "succeeded", fields, None, inline):
                log.warning(
                    "job %s: attempt %d's result refused (a newer one exists)", job.id, attempt
                )
                self.results.delete(files)
            return
        if job.error is not None:
            self.store.finish(job.id, self.id, attempt, "failed", None, job.error.to_dict())
        # Cancelled (in Redis already) or handed back at shutdown: nothing to write.

    # --- helpers for upkeep and shutdown ---

    def begin(self, run: Run) -> bool:
        """Tell Redis (once) that `run` began, and when; False if the job is no longer ours."""
        with run.lock:
            if not run.begun:
                run.begun = True
                job = run.job
                ago = time.monotonic() - job.started if job.started is not None else 0.0
                run.ours = self.store.begin(job.id, self.id, run.attempt, job.batch_size, ago)
            return run.ours

    def resend(self, job_id: str, model: str | None) -> None:
        """Send a job's id again, to the queue that suits its model now."""
        workers = self.store.workers()
        queue = route(workers, self.prefix, model) if model else any_queue(self.prefix)
        self.celery.send_task(TASK, args=[job_id], queue=queue)

    def _model_of(self, job_id: str) -> str | None:
        state = self.store.get(job_id)
        return state.get("model") if state else None

    def hand_back(self) -> None:
        """SIGTERM: refuse new work, give the unstarted jobs to other workers; the running
        batch finishes."""
        with self.gate:
            self.closing.set()
            self.device.refuse()
        for job in self.device.queue.drain():
            with self.runs_lock:
                run = self.runs.get(job.id)
            if run is not None and self._hand_on(job.id, run.attempt, job.request.model):
                job.cancel()  # locally: its task thread returns without writing anything

    def _hand_on(self, job_id: str, attempt: int, model: str | None) -> bool:
        """Give a claimed, unstarted job back and send it to another worker; False if it
        is no longer ours to give."""
        if not self.store.release(job_id, self.id, attempt):
            return False
        self.resend(job_id, model)
        log.info("job %s handed back for another worker", job_id)
        return True

    def queues(self) -> set[str]:
        """The queues this worker should consume: the shared one and its models'."""
        models = self.device.loaded_models or (self.catalog.default.name,)
        return {any_queue(self.prefix), *(model_queue(self.prefix, name) for name in models)}
