"""One device's bounded queue and the choice of its next micro-batch.

Pure Python, no torch and no thread of its own: the device worker's thread takes batches from
it, request threads put jobs into it and withdraw them. One condition variable guards the
queue and the running batch, so a full queue is judged on a consistent view and no job can
land behind `close()`.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections import deque

from backend.config import ServingSettings
from backend.model.errors import ModelUnavailableError, QueueFullError
from backend.model.job import Job
from backend.model.types import ImageInput


def batch_key(job: Job) -> tuple:
    """Jobs with equal keys can share one pipeline call (each keeps its prompts and seeds)."""
    r = job.request
    # With and without a negative prompt differ in how the unconditional embedding is made.
    return (
        job.spec.name if job.spec else r.model,
        r.width,
        r.height,
        r.steps,
        r.guidance_scale,
        r.scheduler,
        bool(r.negative_prompt),
        # Adapters, text-encoder depth and VAE change the weights the whole call runs with.
        r.loras,
        r.clip_skip,
        r.vae,
        # Different tasks never share a call; the same task does when its schedule matches.
        r.task,
        _input_key(r.init_image),
        r.hires,
        r.refiner,
    )


def _input_key(image: ImageInput | None) -> tuple | None:
    """What of an input image decides the schedule (each request keeps its own pixels)."""
    if image is None:
        return None
    # Inpainting only the masked box crops each request differently: it runs alone.
    alone = image.mask if image.full_res else None
    return (image.strength, image.fill, image.full_res, image.full_res_padding, alone)


class DeviceQueue:
    """Jobs waiting for one device, the batch running on it, and how fast batches go."""

    def __init__(self, serving: ServingSettings, max_waiting: int | None = None) -> None:
        self.serving = serving
        # MAX_QUEUE_SIZE unless the owner says otherwise (a scale-out worker takes what its
        # task threads hand it; admission was judged in Redis).
        self.max_waiting = serving.max_queue_size if max_waiting is None else max_waiting
        self.closed = False
        self._queue: deque[Job] = deque()
        self._running: tuple[Job, ...] = ()
        self._batch_seconds = 1.0  # a moving average, for Retry-After
        self._lock = threading.Condition()

    @property
    def queued(self) -> int:
        """Jobs waiting."""
        return len(self._queue)

    @property
    def running(self) -> int:
        """Jobs in the batch on the device now."""
        return len(self._running)

    @property
    def pending(self) -> int:
        """Jobs waiting or running."""
        return len(self._queue) + len(self._running)

    def has_room(self) -> bool:
        """Whether `put` would accept a job now."""
        with self._lock:
            return self._has_room()

    def _has_room(self) -> bool:
        # The limit counts jobs that wait behind the running batch: an idle device takes one
        # more, the job it is about to start.
        return len(self._queue) < self.max_waiting + (0 if self._running else 1)

    def retry_after(self) -> int:
        """Seconds until a place in the queue is likely to free up."""
        batches = len(self._queue) / self.serving.max_batch_size + 1
        return max(1, min(600, math.ceil(self._batch_seconds * batches)))

    def put(self, job: Job, device: str) -> None:
        """Queue `job`, or refuse it at once (closed, or full)."""
        with self._lock:
            if self.closed:
                raise ModelUnavailableError("The server is shutting down.")
            if not self._has_room():
                raise QueueFullError(
                    f"The server is busy: {len(self._queue)} generations are already waiting "
                    f"for {device}. Retry later.",
                    self.retry_after(),
                )
            self._queue.append(job)
            self._lock.notify_all()

    def close(self) -> None:
        """Refuse new jobs from now on; the queued ones are still taken."""
        with self._lock:
            self.closed = True
            self._lock.notify_all()

    def position(self, job: Job) -> int | None:
        """How many jobs wait ahead of `job` (0: it runs next); None if it is not in here."""
        with self._lock:
            try:
                return self._queue.index(job)
            except ValueError:
                return None

    def withdraw(self, job: Job) -> bool:
        """Take a cancelled or abandoned job out of the queue, freeing its place at once."""
        with self._lock, contextlib.suppress(ValueError):
            self._queue.remove(job)
            return True
        return False

    def drain(self) -> list[Job]:
        """Take every waiting job out (a worker handing its unstarted jobs to others)."""
        with self._lock:
            jobs = list(self._queue)
            self._queue.clear()
            return jobs

    def take(self, idle_timeout: float | None) -> list[Job] | None:
        """The next batch: the oldest job and compatible ones behind it. [] when the queue
        stayed empty for `idle_timeout`; None once closed and drained."""
        serving = self.serving
        with self._lock:
            while not self._queue:
                if self.closed:
                    return None
                if not self._lock.wait(idle_timeout) and not self._queue:
                    return []
            batch = [self._queue.popleft()]
            room = serving.max_batch_size - batch[0].request.num_images
            # With BATCH_WAIT_MS a lone job waits that long for company; under load, the queue
            # fills while the device is busy and batches form without any waiting.
            until = time.monotonic() + serving.batch_wait_ms / 1000
            while room > 0:
                room = self._gather(batch, room)
                # Counted as running from now: while it waits for company, admission must see
                # the device as busy.
                self._running = tuple(batch)
                left = until - time.monotonic()
                if room <= 0 or left <= 0 or self.closed:
                    break
                self._lock.wait(left)
            self._running = tuple(batch)
            return batch

    def done(self, seconds: float | None) -> None:
        """The running batch ended; `seconds` it took on the device (None: it failed)."""
        with self._lock:
            if seconds is not None:
                self._batch_seconds = 0.8 * self._batch_seconds + 0.2 * seconds
            self._running = ()

    def _gather(self, batch: list[Job], room: int) -> int:
        """Move queued jobs that fit `batch` into it, oldest first; returns the room left."""
        key = batch_key(batch[0])
        for job in list(self._queue):
            if room <= 0:
                break
            if job.request.num_images <= room and batch_key(job) == key:
                self._queue.remove(job)
                batch.append(job)
                room -= job.request.num_images
        return room
