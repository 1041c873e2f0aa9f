"""The async jobs of this process, by id, in memory and (with JOBS_DIR) in files."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

from backend.model.errors import JobGoneError, JobNotFoundError
from backend.model.job import Job
from backend.model.job_files import JobFiles
from backend.model.job_record import JobStatus


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
