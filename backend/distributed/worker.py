"""`python -m backend.distributed.worker` (`make worker`): one worker process for one device.

Loads the default model first, then consumes the shared queue and its models' queues with a
pool of threads that all feed the one device worker. SIGTERM (Celery's warm shutdown) finishes
the running batch, hands the unstarted jobs to other workers, then exits.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from celery import signals

from backend.config import load_settings
from backend.distributed.celery_app import TASK, worker_threads
from backend.distributed.upkeep import Upkeep
from backend.distributed.worker_http import serve
from backend.distributed.worker_node import WorkerNode
from backend.model import host_memory

log = logging.getLogger("backend.distributed.worker")

# Fault-injection seams for the tests (not settings): seconds each denoising step sleeps, and
# seconds between claiming a job and queueing it (the window a SIGTERM can fall into).
STEP_DELAY_SEAM = "T2I_TEST_STEP_SECONDS"
CLAIM_DELAY_SEAM = "T2I_TEST_CLAIM_SECONDS"
HEARTBEAT_GRACE = 3  # missed heartbeats before /health says the worker is cut off


def main() -> None:
    """Run a worker until it is told to stop."""
    settings = load_settings()
    logging.basicConfig(format="%(asctime)s %(levelname)s [%(name)s] %(message)s")
    logging.getLogger("backend").setLevel(settings.log_level.upper())
    if settings.device in ("cpu", "auto"):
        host_memory.tune_for_cpu_inference()  # before any thread starts (see host_memory)
    node = WorkerNode(settings)
    upkeep = Upkeep(node)
    stale = HEARTBEAT_GRACE * settings.scale_out.heartbeat_seconds + 1

    def health() -> tuple[int, dict[str, Any]]:
        device = node.device
        connected = time.monotonic() - upkeep.heartbeat_ok_at < stale
        alive = device.state.value in ("loading", "ready") and connected
        ready = device.state.value == "ready" and connected
        body = {"worker": node.id, "state": device.state.value, "redis": connected,
                "models": list(device.loaded_models), "queued": device.queued,
                "running": device.running}  # fmt: skip
        return (200 if ready else 503), {**body, "alive": alive}

    step_seconds = float(os.environ.get(STEP_DELAY_SEAM, "0") or 0)
    if step_seconds:  # tests make runs long enough to kill, pause or cancel mid-run
        node.device.step_hook = lambda _step, _total: time.sleep(step_seconds)
    claim_seconds = float(os.environ.get(CLAIM_DELAY_SEAM, "0") or 0)
    if claim_seconds:
        node.claimed_hook = lambda _job_id: time.sleep(claim_seconds)
    http = serve(settings.host, settings.scale_out.worker_port, health, node.registry)
    node.device.start()
    upkeep.start(set())  # heartbeats say "loading" meanwhile: no capacity offered yet
    node.device.wait_until_loaded(None)
    queues = node.queues()
    upkeep.consumed = set(queues)

    @node.celery.task(name=TASK, acks_late=True, ignore_result=True)
    def generate(job_id: str) -> None:
        node.run(job_id)

    @signals.worker_shutting_down.connect
    def _closing(**_: Any) -> None:
        log.info("shutting down: finishing the running batch, handing on the rest")
        node.hand_back()

    try:
        node.celery.worker_main(
            [
                "worker",
                "--pool=threads",
                f"--concurrency={worker_threads(settings)}",
                f"--queues={','.join(sorted(queues))}",
                f"--hostname={node.hostname}",
                f"--loglevel={settings.log_level.upper()}",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ]
        )
    finally:
        node.device.stop(settings.graceful_timeout)
        upkeep.stop()
        http.shutdown()
        log.info("worker %s stopped", node.id)


if __name__ == "__main__":
    main()
