"""Accepted jobs survive a crash: the jobs a dead process left unfinished run again here.

At start-up, and every few seconds after, the engine looks for owners of JOBS_DIR whose process
died (`job_owners.py`), takes their unfinished jobs over and queues them again, oldest first. A
job is tried at most JOB_MAX_ATTEMPTS times, so one that kills the process cannot loop forever.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from backend.model.errors import GenerationFailedError
from backend.model.job import Job
from backend.model.job_files import JobFiles
from backend.model.job_record import JobRecord
from backend.model.job_store import JobStore

log = logging.getLogger(__name__)

POLL_SECONDS = 5.0  # how often to look for owners that died while this process runs


class JobRecovery:
    """A background thread that re-runs the unfinished jobs of dead processes."""

    def __init__(
        self,
        files: JobFiles,
        store: JobStore,
        max_attempts: int,
        resubmit: Callable[[Job], None],
    ) -> None:
        self.files = files
        self.store = store
        self.max_attempts = max_attempts
        self.resubmit = resubmit  # queues a job, waiting for room; returns once it is placed
        self.stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="job-recovery", daemon=True)

    def start(self) -> None:
        """Begin looking for unfinished jobs."""
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stop looking; a job not yet queued again stays on disk for the next process."""
        self.stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        first = True
        while not self.stopped.is_set():
            try:
                self.recover_once(everything=first)
            except Exception:  # recovery must never take the server down with it
                log.exception("recovering unfinished jobs failed; retrying later")
            first = False
            self.stopped.wait(POLL_SECONDS)

    def recover_once(self, everything: bool = False) -> int:
        """Take over the unfinished jobs of every dead owner; returns how many were found.

        `everything` (at start-up) also takes records whose owner left no lock file at all:
        written before owners were recorded, or with the owners folder removed.
        """
        owners = self.files.owners
        dead = owners.claim_dead()  # their locks are ours until their jobs are
        if not dead and not everything:
            return 0  # the common case: one glob of a small folder, no record read
        records = [
            record
            for record in self.files.unfinished()
            if record.get("process") in dead
            or (everything and not owners.alive(record.get("process")))
        ]
        for record in records:
            if self.stopped.is_set():
                return len(records)  # the rest stay owned by the dead process: the next start
            self._recover(Job.restore(JobRecord.from_dict(record), []))
        for token in dead:
            self.files.owners.forget(token)
        return len(records)

    def _recover(self, job: Job) -> None:
        job.requeue()
        self.store.add(job)  # ours now, on disk, and visible to polls as queued
        if job.attempt >= self.max_attempts:
            log.error("job %s stopped the server %d time(s); not tried again", job.id, job.attempt)
            self.store.track(job)
            job.fail(
                GenerationFailedError(
                    f"The server stopped {job.attempt} time(s) while running this job "
                    f"(JOB_MAX_ATTEMPTS={self.max_attempts}); it is not tried again."
                )
            )
            return
        log.info("job %s was cut off by a stop; queued again (attempt %d)", job.id, job.attempt + 1)
        self.resubmit(job)
