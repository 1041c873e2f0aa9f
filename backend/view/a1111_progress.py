"""AUTOMATIC1111's /sdapi/v1/progress answer, from the caller's current work.

A1111 reports one global state (its server runs one generation at a time); here each caller
(API key) sees its own work: the running generation, else the next queued one.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

from marshmallow import EXCLUDE, Schema, fields

from backend.model.service import CurrentWork


class ProgressQuerySchema(Schema):
    """The query string of GET /sdapi/v1/progress."""

    class Meta:
        unknown = EXCLUDE  # A1111 clients add their own parameters; only this one matters

    skip_current_image = fields.Boolean(
        load_default=False,
        metadata={"description": "Leave current_image out (it is the latest live preview)."},
    )


class ProgressStateSchema(Schema):
    """A1111's `shared.state.dict()`."""

    skipped = fields.Boolean(required=True)
    interrupted = fields.Boolean(required=True)
    stopping_generation = fields.Boolean(required=True)
    job = fields.String(required=True, metadata={"description": "The task, e.g. txt2img."})
    job_count = fields.Integer(
        required=True, metadata={"description": "The caller's generations queued or running."}
    )
    job_timestamp = fields.String(required=True, metadata={"description": "YYYYmmddHHMMSS."})
    job_no = fields.Integer(required=True)
    sampling_step = fields.Integer(required=True)
    sampling_steps = fields.Integer(required=True)


class ProgressResponseSchema(Schema):
    """A1111's ProgressResponse."""

    progress = fields.Float(required=True, metadata={"description": "0 to 1."})
    eta_relative = fields.Float(required=True, metadata={"description": "Seconds left, guessed."})
    state = fields.Nested(ProgressStateSchema, required=True)
    current_image = fields.String(
        allow_none=True,
        metadata={"description": "The latest live preview, base64 PNG (A1111_PREVIEW_EVERY)."},
    )
    textinfo = fields.String(allow_none=True)


def dump_progress(work: CurrentWork, skip_current_image: bool) -> dict[str, Any]:
    """The progress body for `work`, as A1111's progressapi computes it."""
    job = work.job
    state = {
        "skipped": False,
        "interrupted": False,
        "stopping_generation": False,
        "job": "",
        "job_count": work.job_count,
        "job_timestamp": "0",
        "job_no": 0,
        "sampling_step": 0,
        "sampling_steps": 0,
    }
    if job is None:
        body = {"progress": 0.0, "eta_relative": 0.0, "state": state, "current_image": None}
        return ProgressResponseSchema().dump({**body, "textinfo": None})
    started = job.created_at + job.queue_seconds  # wall clock of its start (or now, if queued)
    state.update(
        skipped=job.skipped,
        interrupted=job.interrupted and not job.skipped,
        job=job.request.task,
        job_timestamp=datetime.fromtimestamp(started, UTC).strftime("%Y%m%d%H%M%S"),
        sampling_step=job.step,
        sampling_steps=job.total_steps,
    )
    # A1111: 0.01 once begun, plus the steps' share; the ETA from the time taken so far.
    progress = 0.01 + (job.step / job.total_steps if job.total_steps and job.ran else 0.0)
    elapsed = job.run_seconds if job.ran else 0.0
    eta = elapsed / progress - elapsed if job.ran else 0.0
    image = None
    if work.preview is not None and not skip_current_image:
        image = base64.b64encode(work.preview.data).decode("ascii")
    body = {
        "progress": round(min(progress, 1.0), 4),
        "eta_relative": round(max(eta, 0.0), 3),
        "state": state,
        "current_image": image,
        "textinfo": f"{job.status.value}: step {job.step} of {job.total_steps}",
    }
    return ProgressResponseSchema().dump(body)
