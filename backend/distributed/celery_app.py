"""The Celery app both sides share: API processes send with it, worker processes consume with it.

Celery is only the transport here. A message carries nothing but a job id; the job itself,
its progress, cancel flag, lease and result live in the project's own Redis keys (`store.py`).
The settings below are the ones SCALE-OUT.md explains: late acks so a killed worker's message
comes back, one message prefetched per thread, JSON only, and no result backend.
"""

from __future__ import annotations

from celery import Celery

from backend.config import Settings

TASK = "t2i.generate"
# The broker's redelivery of an unacked message is only the backstop: leases bring a dead
# worker's job back much sooner. Longer than any job may run, so a live run is never doubled.
_DAY = 24 * 3600.0


def any_queue(prefix: str) -> str:
    """The queue of jobs for models no live worker holds: every worker consumes it."""
    return f"{prefix}.any"


def model_queue(prefix: str, model: str) -> str:
    """The queue of jobs for `model`: consumed by the workers holding it."""
    return f"{prefix}.m.{model}"


def visibility_timeout(settings: Settings) -> float:
    """Seconds after which Redis hands an unacked message out again."""
    serving = settings.serving
    longest = max(serving.job_timeout_seconds, serving.request_timeout_seconds)
    return _DAY if not longest else longest + 600.0


def worker_threads(settings: Settings) -> int:
    """Task threads per worker: one batch running and one forming (SCALE-OUT.md)."""
    return 2 * settings.serving.max_batch_size


def make_celery(settings: Settings) -> Celery:
    """The Celery app for these settings."""
    scale = settings.scale_out
    app = Celery("t2i", broker=scale.broker_url, set_as_current=False)
    app.conf.update(
        task_acks_late=True,  # acked after the run: a SIGKILL mid-run loses nothing
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,  # x threads: the rest stays in Redis for other workers
        task_ignore_result=True,  # job state is ours; an unknown AsyncResult reads PENDING
        result_backend=None,
        task_serializer="json",
        accept_content=["json"],
        task_default_queue=any_queue(scale.redis_prefix),
        broker_transport_options={"visibility_timeout": visibility_timeout(settings)},
        broker_connection_retry_on_startup=True,
        broker_pool_limit=max(10, settings.http_threads),  # one producer per sending thread
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        task_send_sent_event=False,
    )
    return app
