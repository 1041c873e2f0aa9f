"""Encodes the images of finished async jobs off the device thread, which goes on at once."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from backend.model.errors import GenerationFailedError
from backend.model.images import encode_job
from backend.model.job import Job

log = logging.getLogger(__name__)


class JobEncoder:
    """Two threads that turn a drawn job's images into its result."""

    def __init__(self, embed_metadata: bool) -> None:
        self.embed_metadata = embed_metadata
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="encode")

    def drawn(self, job: Job) -> None:
        """`Job.on_drawn`: encode `job` on the pool (here, once the pool has shut down)."""
        try:
            self._pool.submit(self._finish, job)
        except RuntimeError:  # the pool has shut down (a stop that ran out of time)
            self._finish(job)

    def shutdown(self) -> None:
        """Finish the encodings already handed over, then let the threads go."""
        self._pool.shutdown(wait=True)

    def _finish(self, job: Job) -> None:
        try:
            job.succeed(encode_job(job, self.embed_metadata))
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
