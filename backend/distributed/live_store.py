"""The live side of the job store: previews, interrupts and a caller's current work in Redis.

A worker writes each job's latest preview (fenced by its attempt, like progress) to
P:preview:<id>, deleted when the job ends (its images are there then). An API process marks a
caller's running jobs `interrupted` in their records; their worker reads the mark in its next
progress write.
"""

from __future__ import annotations

from typing import Any

from backend.distributed.store import JobStore
from backend.distributed.store_scripts import text
from backend.model.job_record import JobPreview

INTERRUPTED, SKIPPED = 2, 3  # what JobStore.progress answers once an interrupt was asked


def write_preview(
    store: JobStore, job_id: str, worker_id: str, attempt: int, preview: JobPreview
) -> bool:
    """Store the run's latest preview (and the job's preview_step); False if not ours."""
    values = (preview.step, preview.total_steps, preview.media_type, preview.width, preview.height)
    return bool(store._run("preview", job_id, worker_id, attempt, *values, preview.data))


def read_preview(store: JobStore, job_id: str) -> JobPreview | None:
    """The job's latest preview; None before its first one."""
    fields = store.client.hgetall(store._key("preview", job_id))
    if not fields or b"data" not in fields:
        return None
    return JobPreview(
        step=int(fields[b"step"]),
        total_steps=int(fields[b"total"]),
        data=fields[b"data"],
        media_type=text(fields[b"media_type"]) or "image/png",
        width=int(fields[b"width"]),
        height=int(fields[b"height"]),
    )


def interrupt(store: JobStore, owner: str | None, skip: bool) -> int:
    """Mark the running jobs of `owner` (everyone's for None) interrupted; how many."""
    kind = "skip" if skip else "interrupt"
    everyone = "1" if owner is None else "0"
    return int(store._run("interrupt", everyone, owner or "", kind))


def unfinished(store: JobStore, owner: str | None) -> list[dict[str, Any]]:
    """The states of the admitted, unfinished jobs of `owner` (everyone's for None)."""
    ids = [each.decode() for each in store.client.smembers(store._key("active"))]
    states = (store.get(job_id) for job_id in ids)
    return [
        state
        for state in states
        if state is not None
        and state["status"] in ("queued", "running")
        and (owner is None or state.get("owner") == owner)
    ]
