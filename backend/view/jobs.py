"""Schemas of the jobs API (`/jobs`): a job's state, progress, timing and where its images are."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from marshmallow import Schema, fields, validate

from backend.model.job_record import JobRecord, JobStatus
from backend.view.generate import ParametersSchema


class ProgressSchema(Schema):
    """Denoising progress, from the pipeline's step callback."""

    step = fields.Integer(required=True, metadata={"description": "Steps finished."})
    total = fields.Integer(required=True, metadata={"description": "Steps in the run."})
    fraction = fields.Float(required=True, metadata={"description": "0 to 1."})


class JobSchema(Schema):
    """One job: what it is doing, how far it got, and where its images are once done."""

    id = fields.String(required=True, metadata={"description": "Unguessable; keep it private."})
    status = fields.String(required=True, validate=validate.OneOf([s.value for s in JobStatus]))
    queue_position = fields.Integer(
        required=True,
        allow_none=True,
        metadata={"description": "Jobs ahead of this one (0: next); null once it left the queue."},
    )
    progress = fields.Nested(ProgressSchema, required=True)
    model = fields.String(required=True)
    seeds = fields.List(fields.Integer(), required=True)
    parameters = fields.Nested(ParametersSchema, required=True)
    created_at = fields.String(required=True, metadata={"description": "ISO 8601, UTC."})
    queue_seconds = fields.Float(required=True, metadata={"description": "Waited so far."})
    generation_seconds = fields.Float(
        required=True, metadata={"description": "On the device so far."}
    )
    batch_size = fields.Integer(
        required=True,
        allow_none=True,
        metadata={"description": "Images in the pipeline call that ran it (micro-batching)."},
    )
    attempt = fields.Integer(
        required=True,
        metadata={
            "description": "Runs begun so far: a run cut off by a crash of the server is tried "
            "again, up to JOB_MAX_ATTEMPTS times."
        },
    )
    expires_at = fields.String(
        required=True,
        allow_none=True,
        metadata={"description": "When a finished job and its images are dropped (ISO 8601)."},
    )
    error = fields.String(
        required=True, allow_none=True, metadata={"description": "Why it failed."}
    )
    images = fields.List(
        fields.String(),
        required=True,
        metadata={"description": "URLs of the images, once it succeeded."},
    )
    preview_step = fields.Integer(
        required=True,
        allow_none=True,
        metadata={
            "description": "The step of its latest live preview (preview_every), served by "
            "GET /jobs/{id}/events; null before the first or without previews."
        },
    )
    interrupted = fields.Boolean(
        required=True,
        metadata={
            "description": "Stopped early by POST /sdapi/v1/interrupt or /skip: its images "
            "are what the steps so far drew."
        },
    )


def dump_job(job: JobRecord, ttl_seconds: float) -> dict[str, Any]:
    """The JSON body describing `job`."""
    status = job.status
    total = max(job.total_steps, 1)
    images = []
    if status is JobStatus.SUCCEEDED:
        images = [f"/jobs/{job.id}/images/{index}" for index in range(job.request.num_images)]
    expires = None
    if status.final and job.finished_at is not None:
        expires = _iso(job.finished_at + ttl_seconds)
    return JobSchema().dump(
        {
            "id": job.id,
            "status": status.value,
            "queue_position": job.queue_position,
            "progress": {
                "step": job.step,
                "total": job.total_steps,
                "fraction": round(min(job.step / total, 1.0), 4),
            },
            "model": job.request.model,
            "seeds": job.request.seeds(),
            "parameters": job.parameters(),
            "created_at": _iso(job.created_at),
            "queue_seconds": round(job.queue_seconds, 3),
            "generation_seconds": round(job.run_seconds, 3),
            "batch_size": job.batch_size if job.ran else None,
            "attempt": job.attempt,
            "expires_at": expires,
            "error": str(job.error) if job.error is not None else None,
            "images": images,
            "preview_step": job.preview_step,
            "interrupted": job.interrupted,
        }
    )


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")
