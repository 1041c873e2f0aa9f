"""A worker's background duties: heartbeats, progress, leases, cancels, the reaper, queues.

None of it runs on the device thread, which only ever touches local `Job`s: Redis round trips
are made here, a few times a second at most, so a fast model's steps cost nothing extra.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable

import redis

from backend.distributed import live_store
from backend.distributed.worker_node import WorkerNode
from backend.model.job import Job

log = logging.getLogger(__name__)

PROGRESS_SECONDS = 0.25  # how often step counts and "running" reach Redis
SWEEP_SECONDS = 60.0  # how often RESULTS_DIR is cleared of expired jobs' images


class Upkeep:
    """One thread doing each duty on its own period."""

    def __init__(self, node: WorkerNode) -> None:
        self.node = node
        scale = node.settings.scale_out
        self.duties: list[tuple[float, Callable[[], None]]] = [
            (PROGRESS_SECONDS, self.report_progress),
            (scale.heartbeat_seconds, self.heartbeat),
            (max(0.1, scale.lease_seconds / 4), self.renew_leases),
            (max(0.2, scale.lease_seconds / 2), self.reap),
            (scale.heartbeat_seconds, self.follow_models),
            (SWEEP_SECONDS, self.sweep_results),
        ]
        self.consumed: set[str] = set()
        self.heartbeat_ok_at = 0.0  # monotonic time of the latest heartbeat Redis took
        self._stopped = threading.Event()
        self._unsubscribe: Callable[[], None] | None = None
        self._thread = threading.Thread(target=self._loop, name="upkeep", daemon=True)

    def start(self, consumed: set[str]) -> None:
        """Begin; `consumed` are the queues Celery was started on."""
        self.consumed = set(consumed)
        self.heartbeat()
        self._unsubscribe = self.node.store.subscribe_cancels(self.cancelled)
        self._thread.start()

    def stop(self) -> None:
        """End the duties and drop this worker's heartbeat at once."""
        self._stopped.set()
        if self._unsubscribe is not None:
            with contextlib.suppress(Exception):
                self._unsubscribe()
        self._thread.join(5)
        with contextlib.suppress(redis.RedisError):
            self.node.store.forget_worker(self.node.id)

    def _loop(self) -> None:
        due = [time.monotonic()] * len(self.duties)
        while not self._stopped.is_set():
            now = time.monotonic()
            for index, (period, duty) in enumerate(self.duties):
                if now >= due[index]:
                    due[index] = now + period
                    try:
                        duty()
                    except redis.RedisError as error:  # Redis away: keep trying, loudly
                        log.warning("%s: Redis error %s", duty.__name__, error)
                    except Exception:
                        log.exception("%s failed", duty.__name__)
            self._stopped.wait(max(0.0, min(due) - time.monotonic()))

    # --- duties ---

    def cancelled(self, job_id: str) -> None:
        """A cancel published by an API process: stop the local run at its next step."""
        with self.node.runs_lock:
            run = self.node.runs.get(job_id)
        if run is not None:
            self._stop(run.job, "cancelled")

    def report_progress(self) -> None:
        """Tell Redis which runs began and how far each got; stop those it says to stop."""
        node = self.node
        with node.runs_lock:
            runs = list(node.runs.values())
        for run in runs:
            job = run.job
            if job.started is not None and not run.begun and not node.begin(run):
                self._stop(job, "no longer ours")
                continue
            if not (run.begun and job.alive):
                continue
            preview = job.preview
            if preview is not None and preview.step != run.reported_preview:
                run.reported_preview = preview.step
                live_store.write_preview(node.store, job.id, node.id, run.attempt, preview)
            if job.step != run.reported_step:
                run.reported_step = job.step
                answer = node.store.progress(
                    job.id, node.id, run.attempt, job.step, job.total_steps
                )
                if not answer:
                    self._stop(job, "cancelled or taken over")
                elif answer in (live_store.INTERRUPTED, live_store.SKIPPED):
                    job.interrupt(skip=answer == live_store.SKIPPED)

    def renew_leases(self) -> None:
        """Keep this worker's claims alive; stop runs whose job went final or elsewhere."""
        node = self.node
        with node.runs_lock:
            runs = {job_id: run.attempt for job_id, run in node.runs.items()}
        if not runs:
            return
        for job_id in node.store.renew(node.id, runs):
            with node.runs_lock:
                run = node.runs.get(job_id)
            if run is not None:
                self._stop(run.job, "no longer ours")

    def reap(self) -> None:
        """Send again the jobs whose worker stopped renewing (died, paused) or that were never
        delivered; one live worker does it at a time."""
        node = self.node
        if not node.store.reap_lock(node.id, max(1.0, node.settings.scale_out.lease_seconds)):
            return
        for state in node.store.due():
            log.info("job %s: its lease ran out; queued again", state["id"])
            node.resend(state["id"], state.get("model"))

    def heartbeat(self) -> None:
        """Tell Redis this worker lives, what it holds and how busy it is."""
        node, device = self.node, self.node.device
        serving = node.settings.serving
        ready = device.state.value == "ready" and not node.closing.is_set()
        node.store.heartbeat(
            node.id,
            {
                "worker": node.id,
                "pid": os.getpid(),
                "device": device.device_name or device.device_setting,
                "description": device.description,
                "state": "stopped" if node.closing.is_set() else device.state.value,
                "models": list(device.loaded_models),
                "model_errors": dict(device.model_errors),
                "error": device.error,
                "queued": device.queued,
                "running": device.running,
                "served": device.served,
                "memory": device.memory(),
                "last_step_at": device.models.last_step_at,
                # Places it offers admission: as many as one device takes in the local mode.
                "capacity": serving.max_queue_size + serving.max_batch_size if ready else 0,
                "retry_after": device.retry_after(),
            },
        )
        self.heartbeat_ok_at = time.monotonic()

    def follow_models(self) -> None:
        """Consume the queues of the models loaded here now (model-affine routing)."""
        node = self.node
        wanted = node.queues()
        control = node.celery.control
        for queue in wanted - self.consumed:
            control.add_consumer(queue, destination=[node.hostname], reply=False)
        for queue in self.consumed - wanted:
            control.cancel_consumer(queue, destination=[node.hostname], reply=False)
        self.consumed = wanted

    def sweep_results(self) -> None:
        """Delete images whose jobs have expired (their records are gone from Redis)."""
        removed = self.node.results.sweep(self.node.settings.serving.job_ttl_seconds + 60)
        if removed:
            log.info("removed %d expired image file(s) from RESULTS_DIR", removed)

    def _stop(self, job: Job, why: str) -> None:
        if job.cancel():  # locally; Redis already knows
            self.node.device.withdraw(job)
            log.info("job %s stopped here: %s", job.id, why)
