"""Which device worker takes a job: the least loaded that can serve its model, or why none."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from backend.model.catalogue import ModelSpec
from backend.model.errors import ModelNotReadyError, ModelUnavailableError, QueueFullError
from backend.model.service import WorkerState

if TYPE_CHECKING:
    from backend.model.worker import DeviceWorker


def choose_worker(
    workers: Sequence[DeviceWorker], spec: ModelSpec, max_queue_size: int
) -> DeviceWorker:
    """The least-loaded device holding `spec`, else the least-loaded that can load it."""
    ready = [w for w in workers if w.state is WorkerState.READY and not w.broken(spec.name)]
    if not ready:
        if not workers or any(w.state is WorkerState.LOADING for w in workers):
            raise ModelNotReadyError(f"Model '{spec.name}' is still loading; retry shortly.")
        reasons = [w.model_errors.get(spec.name) or w.error for w in workers]
        raise ModelUnavailableError(next((r for r in reasons if r), "The server is shutting down."))
    open_ = [w for w in ready if w.has_room()]
    if not open_:
        raise QueueFullError(
            "The server is busy: every device's queue is full "
            f"(MAX_QUEUE_SIZE={max_queue_size}). Retry later.",
            min(w.retry_after() for w in ready),
        )
    holding = [w for w in open_ if spec.name in w.loaded_models]
    return min(holding or open_, key=lambda worker: worker.pending)
