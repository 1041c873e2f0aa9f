"""Accepted generations: their life from the queue to a result, and the store of async jobs.

A `Job` is shared by three threads: the caller that submitted it (waiting, polling or
cancelling), the device worker that runs it, and the encoder that turns its images into files.
Every change of state goes through the job's lock, so a cancel racing the end of a run has
exactly one winner. A kept job's final state is made durable (`persist`) before anyone can see
it: a client told "succeeded" can rely on the images surviving a crash.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from backend.model.catalogue import ModelSpec
from backend.model.errors import (
    GenerationTimeoutError,
    JobGoneError,
    JobNotFoundError,
    ModelLayerError,
)
from backend.model.types import EncodedImage, GenerationRequest, GenerationResult, OutputOptions

if TYPE_CHECKING:
    from backend.model.job_files import JobFiles
    from backend.model.schedulers import SchedulerChoice


class JobStatus(StrEnum):
    """Where a job is in its life; the last three are final."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        """The job will not change any more."""
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


@dataclass(frozen=True)
class RawOutput:
    """What the pipeline drew for one job: PIL images, and the scheduler that drew them."""

    images: list[Any]
    scheduler: SchedulerChoice


class Job:
    """One accepted generation, from submission to its result."""

    def __init__(
        self,
        spec: ModelSpec | None,  # None only for a job read back from disk (`restore`)
        request: GenerationRequest,
        output: OutputOptions,
        timeout: float | None,
        owner: str | None = None,
    ) -> None:
        self.id = secrets.token_urlsafe(16)  # 128 random bits: ids cannot be guessed
        self.owner = owner  # who may see it (an API key's identity); None: whoever has the id
        self.spec = spec
        self.request = request  # seed already drawn
        self.output = output
        self.timeout = timeout  # seconds from submission to the end of the run; None: no limit
        self.created_at = time.time()  # wall clock, for clients
        self.submitted = time.monotonic()
        self.deadline = self.submitted + timeout if timeout else None
        self.status = JobStatus.QUEUED
        self.step = 0
        self.total_steps = request.steps
        self.started: float | None = None  # monotonic
        self.finished: float | None = None  # monotonic: images drawn, failed or cancelled
        self.finished_at: float | None = None  # wall clock of the final state, for the TTL
        self.batch_size = 1  # images in the pipeline call that served it
        self.error: ModelLayerError | None = None
        self.raw: RawOutput | None = None
        self.result: GenerationResult | None = None
        self.attempt = 0  # runs begun, across restarts (JOB_MAX_ATTEMPTS bounds it)
        self.on_drawn: Callable[[Job], None] | None = None  # called once the images exist
        self.on_begin: Callable[[Job], None] | None = None  # called once it starts a run
        # Makes the final record (and images) durable; called before the final state is shown.
        self.persist: Callable[[Job, dict[str, Any], list[EncodedImage]], None] | None = None
        self.final_saved = False  # its final record is on disk: earlier states must not replace it
        self.position: Callable[[Job], int | None] = lambda _job: None  # set by the queue
        self._lock = threading.Lock()
        self._ending = False  # a final state has been claimed and is being made durable
        self._drawn = threading.Event()  # the worker is done with it, one way or another

    def record(self) -> dict[str, Any]:
        """Everything needed to show this job again later, as plain JSON-able values."""
        result = self.result
        return {
            "id": self.id,
            "owner": self.owner,
            "status": self.status.value,
            "error": str(self.error) if self.error is not None else None,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
            "queue_seconds": self.queue_seconds(),
            "run_seconds": self.run_seconds(),
            "ran": self.started is not None,
            "attempt": self.attempt,
            "batch_size": self.batch_size,
            "step": self.step,
            "total_steps": self.total_steps,
            "timeout": self.timeout,
            "request": asdict(self.request),
            "output": asdict(self.output),
            "scheduler": result.scheduler if result else None,
            "sampler": result.sampler if result else None,
        }

    @classmethod
    def restore(cls, record: dict[str, Any], images: list[EncodedImage]) -> Job:
        """A job read back from its `record` (and its images), e.g. after a restart."""
        request = GenerationRequest(**record["request"])
        job = cls(None, request, OutputOptions(**record["output"]), record["timeout"])
        job.id, job.owner = record["id"], record["owner"]
        job.created_at, job.finished_at = record["created_at"], record["finished_at"]
        job.step, job.total_steps = record["step"], record["total_steps"]
        job.batch_size, job.attempt = record["batch_size"], record.get("attempt", 0)
        # Durations, re-expressed on a clock that starts at 1 (0 would read as "not yet").
        job.submitted = 1.0
        job.started = 1.0 + record["queue_seconds"] if record["ran"] else None
        job.finished = 1.0 + record["queue_seconds"] + record["run_seconds"]
        job.deadline = None
        status = JobStatus(record["status"])  # unfinished: as its owner (or a dead one) left it
        job.status = status
        job.final_saved = status.final
        job.error = ModelLayerError(record["error"]) if record["error"] else None
        if status is JobStatus.SUCCEEDED:
            job.result = GenerationResult(
                images=images,
                model=request.model or "",
                request=request,
                scheduler=record["scheduler"],
                sampler=record["sampler"],
                generation_seconds=record["run_seconds"],
                queue_seconds=record["queue_seconds"],
            )
        if status.final:
            job._drawn.set()
        return job

    def requeue(self) -> None:
        """Make a job restored from a process that died queued again, from its first step.

        Its deadline stays where it was, on the wall clock: the time the server was down counts.
        """
        waited = max(0.0, time.time() - self.created_at)
        self.submitted = time.monotonic() - waited
        self.deadline = self.submitted + self.timeout if self.timeout else None
        self.status, self.step, self.started, self.finished = JobStatus.QUEUED, 0, None, None

    # --- the device worker's side ---

    def begin(self, batch_size: int) -> bool:
        """Mark the job running; False if it was cancelled, failed or timed out meanwhile."""
        if self.expired():
            self.expire()
        with self._lock:
            if self.status is not JobStatus.QUEUED or self._ending:
                return False
            self.status = JobStatus.RUNNING
            self.started = time.monotonic()
            self.batch_size = batch_size
            self.attempt += 1
        if self.on_begin is not None:  # records the attempt: a run that kills the process counts
            self.on_begin(self)
        return True

    def progress(self, step: int, total: int) -> None:
        """Record a finished denoising step."""
        self.step, self.total_steps = step, total

    def drawn(self, raw: RawOutput) -> None:
        """The images exist; they are kept only if nobody cancelled the job meanwhile."""
        with self._lock:
            if self.status is not JobStatus.RUNNING or self._ending:
                return
            self.raw = raw
            self.step = self.total_steps
            self.finished = time.monotonic()
        self._drawn.set()
        if self.on_drawn is not None:
            self.on_drawn(self)

    def fail(self, error: ModelLayerError) -> bool:
        """End the job with `error`, unless it already ended; True if this call ended it."""
        return self._end(JobStatus.FAILED, error)

    def cancel(self) -> bool:
        """End the job as cancelled unless it already ended or its images exist."""
        return self._end(JobStatus.CANCELLED, None)

    def expire(self) -> bool:
        """End the job because its deadline passed."""
        return self.fail(
            GenerationTimeoutError(
                f"The generation did not finish within its {self.timeout:g} s deadline "
                f"and was stopped (it waited {self.queue_seconds():.1f} s in the queue)."
            )
        )

    def _end(self, status: JobStatus, error: ModelLayerError | None) -> bool:
        with self._lock:
            if self.status.final or self.raw is not None or self._ending:
                return False
            self._ending = True  # claimed: no other end, and no images, can win from here
            self.finished = time.monotonic()
        self._publish(status, None, error)
        return True

    def _publish(
        self, status: JobStatus, result: GenerationResult | None, error: ModelLayerError | None
    ) -> None:
        """Make the final state durable first, then show it: never "succeeded" before that."""
        finished_at = time.time()
        if self.persist is not None:
            record = self.record()
            record.update(status=status.value, finished_at=finished_at)
            record.update(error=str(error) if error is not None else None)
            if result is not None:
                record.update(scheduler=result.scheduler, sampler=result.sampler)
            self.persist(self, record, result.images if result is not None else [])
        with self._lock:
            self.raw, self.result, self.error = None, result, error
            self.status, self.finished_at = status, finished_at
        self._drawn.set()

    # --- the caller's side ---

    def succeed(self, result: GenerationResult) -> None:
        """Keep the encoded result and let go of the raw images."""
        self._settle(JobStatus.SUCCEEDED, result, None)

    def fail_encoding(self, error: ModelLayerError) -> None:
        """The images were drawn but could not be encoded."""
        self._settle(JobStatus.FAILED, None, error)

    def _settle(
        self, status: JobStatus, result: GenerationResult | None, error: ModelLayerError | None
    ) -> None:
        # Once drawn, a job can no longer be cancelled: only the encoder settles it.
        self._publish(status, result, error)

    @property
    def alive(self) -> bool:
        """Still waiting for images: not ended, and not yet drawn."""
        return not self.status.final and self.raw is None and not self._ending

    def expired(self, now: float | None = None) -> bool:
        """Its deadline has passed."""
        return self.deadline is not None and (now or time.monotonic()) >= self.deadline

    def queue_position(self) -> int | None:
        """Jobs waiting ahead of this one (0: it runs next); None once it left the queue."""
        return self.position(self) if self.status is JobStatus.QUEUED else None

    def remaining(self) -> float | None:
        """Seconds left before the deadline; None without one."""
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())

    def wait(self, timeout: float | None) -> bool:
        """Block until the worker is done with the job; False if `timeout` passed first."""
        return self._drawn.wait(timeout)

    def queue_seconds(self) -> float:
        """Time spent waiting for the device."""
        end = self.started or self.finished or time.monotonic()
        return end - self.submitted

    def run_seconds(self) -> float:
        """Time spent on the device (so far, while running)."""
        if self.started is None:
            return 0.0
        return (self.finished or time.monotonic()) - self.started


class JobStore:
    """The async jobs of this process, by id; finished ones are kept for a while, then forgotten.

    Live jobs are never evicted (the queue bounds them); finished ones go after `ttl` seconds or
    when more than `max_finished` are kept, oldest first. Ids of forgotten jobs are remembered
    (a bounded number) so a late poll hears "gone" rather than "never existed".
    """

    def __init__(self, ttl: float, max_finished: int, files: JobFiles | None = None) -> None:
        self.ttl = ttl
        self.max_finished = max_finished
        self.files = files  # None: jobs live in memory only
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._gone: OrderedDict[str, str] = OrderedDict()  # id -> why it was forgotten
        self._lock = threading.Lock()
        if files is not None:
            files.sweep(ttl, max_finished)

    def add(self, job: Job) -> None:
        """Keep `job` until it has been finished for `ttl` seconds."""
        with self._lock:
            self._sweep()
            self._jobs[job.id] = job
        # Durable now, since the client is about to hear 202: after a crash it runs again.
        if self.files is not None:
            self.files.save(job, durable=True)

    def track(self, job: Job) -> None:
        """Wire a kept job to this store: its runs and its final state are written to disk."""
        if self.files is not None:
            job.on_begin = self.files.save  # not fsynced: only a lost attempt count is at stake
            job.persist = self.files.save_final

    def get(self, job_id: str, owner: str | None = None) -> Job:
        """The job with this id, if `owner` may see it; JobNotFoundError or JobGoneError."""
        with self._lock:
            self._sweep()
            job = self._jobs.get(job_id)
            reason = self._gone.get(job_id) if job is None else None
        if job is None and reason is None and self.files is not None:
            job = self._from_disk(job_id)  # e.g. submitted before a restart
        if job is not None and job.owner in (None, owner):
            return job
        if reason is not None and job is None:
            raise JobGoneError(f"Job {job_id} is gone: {reason}.")
        # Another key's job reads exactly like one that never existed.
        raise JobNotFoundError(f"No job with id {job_id[:64]!r}.")

    def _from_disk(self, job_id: str) -> Job | None:
        if self.files is None:
            return None
        job = self.files.load(job_id)
        if job is not None and job.finished_at and time.time() - job.finished_at >= self.ttl:
            self.files.delete(job_id)
            return None
        return job

    def forget(self, job: Job, reason: str) -> None:
        """Drop a job and its images now."""
        with self._lock:
            self._jobs.pop(job.id, None)
            self._remember(job.id, reason)  # deletes its files too

    def counts(self) -> dict[str, int]:
        """How many kept jobs are in each status."""
        with self._lock:
            counts = dict.fromkeys(JobStatus, 0)
            for job in self._jobs.values():
                counts[job.status] += 1
        return {str(status): count for status, count in counts.items()}

    def _sweep(self) -> None:
        now = time.time()
        finished = [job for job in self._jobs.values() if job.status.final]
        excess = len(finished) - self.max_finished
        for job in finished:
            if job.finished_at is not None and now - job.finished_at >= self.ttl:
                self._jobs.pop(job.id)
                self._remember(job.id, f"results are kept for {self.ttl:g} s (JOB_TTL_SECONDS)")
            elif excess > 0:
                excess -= 1
                self._jobs.pop(job.id)
                self._remember(job.id, f"only the last {self.max_finished} finished jobs are kept")

    def _remember(self, job_id: str, reason: str) -> None:
        if self.files is not None:
            self.files.delete(job_id)
        self._gone[job_id] = reason
        while len(self._gone) > 10 * self.max_finished:
            self._gone.popitem(last=False)
