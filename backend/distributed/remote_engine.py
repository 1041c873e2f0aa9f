"""The API side of the scale-out mode (QUEUE_BACKEND=celery): no torch, no model, no device.

It implements `GenerationService` by admitting each job in Redis (one script: capacity of the
live workers, queue position, routing), sending its id over Celery to the queue the admission
chose, and reading the job's state back from Redis. Any API process can answer for any job.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

import redis
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily

from backend.config import Settings
from backend.distributed.celery_app import TASK, make_celery
from backend.distributed.job_state import generation_result, job_record, new_record
from backend.distributed.redis_connection import (
    WAIT_SLICE_SECONDS,
    redis_client,
    redis_errors,
    redis_problem,
    store_settings,
)
from backend.distributed.remote_live import RemoteLive
from backend.distributed.results import ResultFiles
from backend.distributed.store import JobStore
from backend.distributed.worker_status import engine_status, model_infos, worker_metrics
from backend.model.catalogue import ModelSpec
from backend.model.engine_status import folder_problem
from backend.model.errors import (
    GenerationTimeoutError,
    JobGoneError,
    JobNotFinishedError,
    JobNotFoundError,
    ModelFolderError,
    ModelLayerError,
    ModelNotReadyError,
    ModelUnavailableError,
    QueueFullError,
)
from backend.model.job_record import JobRecord, JobStatus
from backend.model.metrics import StateCollector
from backend.model.model_catalog import ModelCatalog
from backend.model.service import EngineStatus, ModelInfo
from backend.model.types import (
    MAX_SEED,
    EncodedImage,
    GenerationRequest,
    GenerationResult,
    OutputOptions,
)

log = logging.getLogger(__name__)

GRACE_SECONDS = 1.0  # past a sync deadline, for the worker's own timeout to arrive first


class RemoteEngine(RemoteLive):
    """Admits work in Redis and hands it to worker processes over Celery."""

    def __init__(self, settings: Settings, registry: CollectorRegistry | None = None) -> None:
        self.settings = settings
        self.catalog = ModelCatalog(settings.default_model, settings.models_dir)
        self.redis = redis_client(settings, settings.http_threads + 8)
        self.store = JobStore(self.redis, store_settings(settings))
        self.results = ResultFiles(settings.scale_out.results_dir)
        self.celery = make_celery(settings)
        # A default switched by POST /sdapi/v1/options on any API process holds for all.
        self._default_key = f"{settings.scale_out.redis_prefix}:default_model"
        self.catalog.follow(self._shared_default)
        if registry is not None:
            registry.register(StateCollector(self.state_metrics))

    def start(self) -> None:
        """Nothing to load: workers hold the models."""

    def stop(self, timeout: float | None = None) -> None:
        """Let go of the connections (accepted jobs live on in Redis)."""
        with contextlib.suppress(Exception):
            self.redis.close()

    # --- work ---

    def generate(
        self,
        request: GenerationRequest,
        output: OutputOptions | None = None,
        owner: str | None = None,
    ) -> GenerationResult:
        """Run one generation on some worker within REQUEST_TIMEOUT_SECONDS; `owner` lets
        `current_work` and `interrupt` find it."""
        timeout = self.settings.serving.request_timeout_seconds or None
        record = self._admit(request, output, timeout, owner, keep=False)
        job_id = record["id"]
        with redis_errors():
            state = self._wait(job_id, timeout)
            if state is None or not JobStatus(state["status"]).final:
                self.store.cancel(job_id)  # the worker stops it at its next step
                self.store.delete(job_id, "its deadline passed")
                raise GenerationTimeoutError(
                    f"The generation did not finish within its {timeout:g} s deadline "
                    "and was stopped."
                )
            images = self.store.take_inline(job_id) or []
            self.store.delete(job_id, "its result was returned")
        status = JobStatus(state["status"])
        if status is not JobStatus.SUCCEEDED:
            error = state.get("error")
            raise (
                ModelLayerError.from_dict(error)
                if error
                else GenerationTimeoutError("The generation was stopped.")
            )
        result = state["result"]
        encoded = [
            EncodedImage(data, result["media_type"], seed)
            for data, seed in zip(images, result["seeds"], strict=True)
        ]
        return generation_result(state, encoded)

    def submit_job(
        self,
        request: GenerationRequest,
        output: OutputOptions | None = None,
        owner: str | None = None,
    ) -> JobRecord:
        """Queue a generation to fetch later, within JOB_TIMEOUT_SECONDS."""
        timeout = self.settings.serving.job_timeout_seconds or None
        record = self._admit(request, output, timeout, owner, keep=True)
        with redis_errors():
            state = self.store.get(record["id"])
        return job_record(state or {**record, "status": "queued"})

    def job(self, job_id: str, owner: str | None = None) -> JobRecord:
        """A submitted job, from whichever API process took it."""
        return job_record(self._state(job_id, owner))

    def cancel_job(self, job_id: str, owner: str | None = None) -> JobRecord:
        """Cancel a queued or running job; a finished one is deleted with its images."""
        state = self._state(job_id, owner)
        with redis_errors():
            if JobStatus(state["status"]).final:
                self.store.delete(job_id, "it was deleted")
                self.results.delete((state.get("result") or {}).get("files", []))
                return job_record(state)
            cancelled = self.store.cancel(job_id) or state
        self.results.delete_jobs(self.store.trimmed())  # the cancel may have pushed one out
        log.info("job %s cancelled", job_id)
        return job_record(cancelled)

    def job_result(self, job_id: str, owner: str | None = None) -> GenerationResult:
        """The images of a job that succeeded, from RESULTS_DIR."""
        state = self._state(job_id, owner)
        if state["status"] != JobStatus.SUCCEEDED.value:
            raise JobNotFinishedError(f"Job {job_id} has no images: it is {state['status']}.")
        try:
            images = self.results.load(state["result"]["files"])
        except (OSError, ValueError, KeyError) as error:
            log.error("images of job %s are missing from RESULTS_DIR: %s", job_id, error)
            raise JobGoneError(f"Job {job_id} is gone: its images are no longer stored.") from None
        return generation_result(state, images)

    # --- readiness and listings ---

    def status(self) -> EngineStatus:
        """Ready when Redis answers and a live worker serves the default model."""
        try:
            workers = self.store.workers()
        except redis.RedisError as error:
            return engine_status(
                self.catalog.default.name, None, redis_problem(self.settings, error)
            )
        return engine_status(self.catalog.default.name, workers, None)

    def switch_default(self, name: str) -> ModelSpec:
        """Make `name` the default of every API process (through Redis); workers get jobs by
        model name, and load it on demand."""
        spec = self.catalog.resolve(name)  # ModelNotFoundError if it is not servable
        problem = folder_problem(spec, self.settings)
        if problem is not None:
            raise ModelFolderError(problem)
        with redis_errors():
            self.redis.set(self._default_key, spec.name)
        self.catalog.set_default(spec)
        return spec

    def _shared_default(self) -> str | None:
        try:
            value = self.redis.get(self._default_key)
        except redis.RedisError:
            return None  # Redis trouble shows in /health; keep the default we have
        return value.decode() if isinstance(value, bytes) else value

    def models(self) -> list[ModelInfo]:
        """The catalogue, with where each model is loaded among the live workers."""
        try:
            workers = self.store.workers()
        except redis.RedisError:
            workers = []
        return model_infos(self.catalog, workers)

    def state_metrics(self) -> Iterable[GaugeMetricFamily]:
        """Outstanding jobs per model (for autoscaling) and the live workers' queues."""
        try:
            counts, workers = self.store.outstanding_by_model(), self.store.workers()
        except redis.RedisError:
            return []  # a scrape must not fail; /health says what is wrong
        return worker_metrics(self.catalog, counts, workers)

    # --- steps ---

    def _admit(
        self,
        request: GenerationRequest,
        output: OutputOptions | None,
        timeout: float | None,
        owner: str | None,
        keep: bool,
    ) -> dict[str, Any]:
        spec = self.catalog.resolve(request.model)
        seed = secrets.randbelow(MAX_SEED + 1) if request.seed is None else request.seed
        request = replace(request, seed=seed, model=spec.name)
        record = new_record(request, output or OutputOptions(), timeout, owner, keep)
        with redis_errors():
            admission = self.store.admit(record)
        if not admission.accepted:
            if admission.reason == "full":
                raise QueueFullError(
                    f"The server is busy: {admission.outstanding} generations are queued or "
                    f"running for {admission.capacity} places on the live workers. Retry later.",
                    max(1, admission.retry_after),
                )
            raise ModelNotReadyError(
                "No worker is serving yet: start one with `make worker` (QUEUE_BACKEND=celery)."
            )
        try:
            self.celery.send_task(TASK, args=[record["id"]], queue=admission.queue)
        except Exception as error:  # the broker went away between the two calls
            with contextlib.suppress(redis.RedisError):
                self.store.delete(record["id"], "it could not be queued")
            log.error("sending job %s to %s failed: %s", record["id"], admission.queue, error)
            raise ModelUnavailableError(
                "The job queue (Redis) does not answer; retry shortly."
            ) from None
        return record

    def _wait(self, job_id: str, timeout: float | None) -> dict[str, Any] | None:
        """The job's state once final, or its state when the deadline (plus grace) passed."""
        deadline = None if timeout is None else time.monotonic() + timeout + GRACE_SECONDS
        while True:
            left = WAIT_SLICE_SECONDS if deadline is None else deadline - time.monotonic()
            if left <= 0 or self.store.wait(job_id, min(left, WAIT_SLICE_SECONDS)):
                return self.store.get(job_id)
            state = self.store.get(job_id)
            if state is None or JobStatus(state["status"]).final:
                return state

    def _state(self, job_id: str, owner: str | None) -> dict[str, Any]:
        with redis_errors():
            state = self.store.get(job_id)
            reason = self.store.gone_reason(job_id) if state is None else None
        if state is not None and state.get("keep") and state.get("owner") in (None, owner):
            return state
        if reason is not None and state is None:
            raise JobGoneError(f"Job {job_id} is gone: {reason}.")
        # Another key's job, or a synchronous request's, reads like one that never existed.
        raise JobNotFoundError(f"No job with id {job_id[:64]!r}.")
