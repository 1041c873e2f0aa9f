"""The job half of the in-process engine: submit, look up, cancel and fetch jobs (/jobs)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from backend.config import Settings
from backend.model.errors import JobNotFinishedError
from backend.model.job import Job
from backend.model.job_record import JobRecord, JobStatus
from backend.model.job_store import JobStore
from backend.model.types import GenerationRequest, GenerationResult, OutputOptions

if TYPE_CHECKING:
    from backend.model.worker import DeviceWorker

log = logging.getLogger(__name__)


class EngineJobs:
    """`Engine`'s job calls, on top of the queueing that `Engine` itself provides."""

    settings: Settings
    jobs: JobStore

    @property
    def workers(self) -> tuple[DeviceWorker, ...]:
        """The device workers (`Engine` provides them)."""
        raise NotImplementedError

    def _submit(
        self,
        request: GenerationRequest,
        output: OutputOptions | None,
        timeout: float,
        keep: bool = False,
        owner: str | None = None,
    ) -> Job:
        raise NotImplementedError

    def _withdraw(self, job: Job) -> None:
        raise NotImplementedError

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

    def _record(self, job: Job) -> JobRecord:
        """`job` as plain data, with its place in its device's queue."""
        position = None
        if job.status is JobStatus.QUEUED:
            places = (worker.position(job) for worker in self.workers)
            # Not in any queue but not begun: taken into the batch that starts next.
            position = next((place for place in places if place is not None), 0)
        return job.record(position)
