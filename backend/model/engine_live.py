"""The live half of the in-process engine: previews, what a caller runs now, interrupts.

Every accepted generation, synchronous or a job, is watched here until it ends, so that
AUTOMATIC1111's /sdapi/v1/progress and /interrupt find a caller's work whichever way it came.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from backend.model.job import Job
from backend.model.job_record import JobPreview, JobStatus
from backend.model.job_store import JobStore
from backend.model.service import CurrentWork

if TYPE_CHECKING:
    from backend.model.job_record import JobRecord


class EngineLive:
    """`Engine`'s calls on running work; `Engine` calls `_watch` for each accepted job."""

    jobs: JobStore

    def _live_init(self) -> None:
        self._live: dict[str, Job] = {}  # accepted, unfinished generations, in submission order
        self._live_lock = threading.Lock()

    def _record(self, job: Job) -> JobRecord:
        raise NotImplementedError  # EngineJobs provides it

    def _watch(self, job: Job) -> None:
        """Follow `job` until it ends (finished ones are let go of here, cheaply)."""
        with self._live_lock:
            for job_id in [key for key, each in self._live.items() if not each.alive]:
                del self._live[job_id]
            self._live[job.id] = job

    def _running(self, owner: str | None) -> list[Job]:
        """The caller's unfinished generations (everyone's for None), oldest first."""
        with self._live_lock:
            jobs = list(self._live.values())
        return [job for job in jobs if job.alive and (owner is None or job.owner == owner)]

    def job_preview(self, job_id: str, owner: str | None = None) -> JobPreview | None:
        """The latest live preview of a kept job while it runs (None before the first, without
        previews, and once it ended)."""
        return self.jobs.get(job_id, owner).preview

    def current_work(self, owner: str | None = None) -> CurrentWork:
        """The caller's generation on the devices now (every caller's, when `owner` is None):
        the running one, else the next queued."""
        jobs = self._running(owner)
        if not jobs:
            return CurrentWork(None, 0, None)
        running = [job for job in jobs if job.status is JobStatus.RUNNING]
        pairs = [(self._record(job), job) for job in running or jobs]
        # Running first (the oldest); else the one nearest the head of its queue.
        record, job = min(pairs, key=lambda pair: pair[0].queue_position or 0)
        return CurrentWork(record, len(jobs), job.preview)

    def interrupt(self, owner: str | None = None, skip: bool = False) -> int:
        """Stop the caller's running generations at their next step, keeping their images."""
        return sum(job.interrupt(skip) for job in self._running(owner))
