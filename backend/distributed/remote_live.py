"""The live half of the scale-out API side: previews, a caller's current work, interrupts."""

from __future__ import annotations

from typing import Any

from backend.distributed import live_store
from backend.distributed.job_state import job_record
from backend.distributed.redis_connection import redis_errors
from backend.distributed.store import JobStore
from backend.model.job_record import JobPreview
from backend.model.service import CurrentWork


class RemoteLive:
    """`RemoteEngine`'s calls on running work, answered from Redis."""

    store: JobStore

    def _state(self, job_id: str, owner: str | None) -> dict[str, Any]:
        raise NotImplementedError  # RemoteEngine provides it

    def job_preview(self, job_id: str, owner: str | None = None) -> JobPreview | None:
        """The latest live preview of a kept job while it runs (None before the first, without
        previews, and once it ended)."""
        self._state(job_id, owner)  # JobNotFoundError for another key's job
        with redis_errors():
            return live_store.read_preview(self.store, job_id)

    def current_work(self, owner: str | None = None) -> CurrentWork:
        """The caller's generation on the workers now (every caller's, when `owner` is None):
        the running one (the oldest), else the next queued."""
        with redis_errors():
            states = live_store.unfinished(self.store, owner)
            if not states:
                return CurrentWork(None, 0, None)
            # Running first, by start; then the waiting ones by their place in line.
            state = min(
                states,
                key=lambda each: (
                    each["status"] != "running",
                    each.get("started_at") or 0.0,
                    each.get("position") or 0,
                ),
            )
            preview = None
            if state.get("preview_step") is not None:
                preview = live_store.read_preview(self.store, state["id"])
        return CurrentWork(job_record(state), len(states), preview)

    def interrupt(self, owner: str | None = None, skip: bool = False) -> int:
        """Stop the caller's running generations at their next step, keeping their images."""
        with redis_errors():
            return live_store.interrupt(self.store, owner, skip)
