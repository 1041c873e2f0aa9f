"""Jobs in Redis as the model layer knows them: the record admitted, the state read back.

The store keeps plain dicts; these functions turn them into the model layer's own types
(`JobRecord`, `GenerationResult`, errors with their codes), so the controllers and views
answer exactly as they do in the single-process mode.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import asdict
from typing import Any

from backend.model.errors import ModelLayerError
from backend.model.job_record import JobRecord, JobStatus
from backend.model.task_steps import planned_from_values
from backend.model.types import EncodedImage, GenerationRequest, GenerationResult, OutputOptions


def new_record(
    request: GenerationRequest,
    output: OutputOptions,
    timeout: float | None,
    owner: str | None,
    keep: bool,
) -> dict[str, Any]:
    """What `JobStore.admit` stores for a new job (seed drawn and model resolved already)."""
    created = time.time()
    return {
        "id": secrets.token_urlsafe(16),  # 128 random bits: ids cannot be guessed
        "model": request.model,
        "owner": owner,
        "keep": keep,
        "created_at": created,
        "timeout": timeout,
        "deadline_at": created + timeout if timeout else None,
        "request": request.to_dict(),
        "output": asdict(output),
    }


def job_record(state: dict[str, Any], now: float | None = None) -> JobRecord:
    """The job `state` (from `JobStore.get`) as the views show it."""
    now = time.time() if now is None else now
    status = JobStatus(state["status"])
    created, started, finished = state["created_at"], state.get("started_at"), None
    if status.final:
        finished = state.get("finished_at") or now
    queue_end = started or finished or now
    result = state.get("result") or {}
    error = state.get("error")
    total = state.get("total")
    if total is None:  # no step reported yet: every pass it will run (img2img: fewer steps)
        values = state["request"]
        total = planned_from_values(values["steps"], values.get("init_image"), values.get("hires"))
    total = int(total)
    return JobRecord(
        id=state["id"],
        owner=state.get("owner"),
        status=status,
        request=GenerationRequest.from_dict(state["request"]),
        output=OutputOptions(**state["output"]),
        created_at=created,
        timeout=state.get("timeout"),
        attempt=int(state.get("attempt") or 0),
        step=_step(state, status, total),
        total_steps=total,
        queue_position=state.get("position") if status is JobStatus.QUEUED else None,
        queue_seconds=max(0.0, queue_end - created),
        run_seconds=max(0.0, (finished or now) - started) if started else 0.0,
        ran=started is not None,
        batch_size=int(state.get("batch_size") or 1),
        finished_at=state.get("finished_at") if status.final else None,
        error=ModelLayerError.from_dict(error) if error else None,
        scheduler=result.get("scheduler"),
        sampler=result.get("sampler"),
        preview_step=state.get("preview_step"),
        interrupted=bool(state.get("interrupted")),
        skipped=state.get("interrupted") == "skip",
    )


def _step(state: dict[str, Any], status: JobStatus, total: int) -> int:
    """The steps done: progress reaches Redis a few times a second, so a success has done every
    step, unless it was interrupted (its result says where)."""
    if status is not JobStatus.SUCCEEDED:
        return int(state.get("step") or 0)
    notes = (state.get("result") or {}).get("notes") or {}
    return int(notes["steps_run"]) if notes.get("interrupted") else total


def generation_result(state: dict[str, Any], images: list[EncodedImage]) -> GenerationResult:
    """The result of a job that succeeded, with its `images`."""
    result = state["result"]
    request = GenerationRequest.from_dict(state["request"])
    return GenerationResult(
        images=images,
        model=request.model or "",
        request=request,
        scheduler=result["scheduler"],
        sampler=result["sampler"],
        generation_seconds=result["generation_seconds"],
        queue_seconds=result["queue_seconds"],
        notes=result.get("notes") or {},
    )


def result_fields(result: GenerationResult) -> dict[str, Any]:
    """What a worker records of a result besides its images."""
    return {
        "scheduler": result.scheduler,
        "sampler": result.sampler,
        "generation_seconds": result.generation_seconds,
        "queue_seconds": result.queue_seconds,
        "media_type": result.images[0].media_type if result.images else None,
        "seeds": result.seeds,
        "notes": result.notes,
    }
