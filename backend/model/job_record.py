"""A job as plain data: what a poll shows, what a file or a Redis key holds, in either mode.

`JobRecord` is the one serialized form of a job. The in-process engine makes it from a live
`Job`; the scale-out mode reads it back from Redis. Times in it are wall-clock seconds (a
deadline read in another process, or after a restart, still means the same moment).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from enum import StrEnum
from typing import Any

from backend.model.errors import ModelLayerError
from backend.model.types import GenerationRequest, OutputOptions


class JobStatus(StrEnum):
    """Where a job is in its life; the last three are final."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        """The job will not change any more."""
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


@dataclass(frozen=True)
class JobPreview:
    """A live preview of a running job: a small picture of its latents at `step`."""

    step: int
    total_steps: int
    data: bytes  # an encoded image (PNG or JPEG), a few KB
    media_type: str
    width: int
    height: int


@dataclass(frozen=True)
class JobRecord:
    """Everything needed to show a job, as plain values."""

    id: str
    owner: str | None  # who may see it (an API key's identity); None: whoever has the id
    status: JobStatus
    request: GenerationRequest  # seed already drawn, model resolved
    output: OutputOptions
    created_at: float  # wall clock
    timeout: float | None  # seconds from submission to the end of the run; None: no limit
    attempt: int = 0  # runs begun so far
    step: int = 0
    total_steps: int = 0
    queue_position: int | None = None  # jobs ahead (0: next); None unless queued
    queue_seconds: float = 0.0
    run_seconds: float = 0.0
    ran: bool = False  # a run has begun (batch_size means something)
    batch_size: int = 1  # images in the pipeline call that ran it
    finished_at: float | None = None  # wall clock of the final state
    error: ModelLayerError | None = None
    scheduler: str | None = None  # the scheduler that ran (our name), once it ran
    sampler: str | None = None  # the same, as AUTOMATIC1111 labels it
    preview_step: int | None = None  # the step of the latest live preview (`job_preview`)
    interrupted: bool = False  # stopped early on request; its images are what the steps made
    skipped: bool = False  # ... and the request was AUTOMATIC1111's skip

    @property
    def deadline_at(self) -> float | None:
        """The wall-clock moment the job's deadline passes; None without one."""
        return None if not self.timeout else self.created_at + self.timeout

    def parameters(self) -> dict[str, Any]:
        """The parameters that reproduce the job (with the scheduler that ran, once known)."""
        parameters = self.request.parameters()
        if self.scheduler is not None:
            parameters["scheduler"] = self.scheduler
        elif parameters["scheduler"] is None:  # the model's own: named once it ran
            del parameters["scheduler"]
        return parameters

    def to_dict(self) -> dict[str, Any]:
        """JSON-able values; `from_dict` reads them back."""
        data = {field.name: getattr(self, field.name) for field in fields(self)}
        data.update(
            status=self.status.value,
            request=self.request.to_dict(),
            output=asdict(self.output),
            error=self.error.to_dict() if self.error is not None else None,
            deadline_at=self.deadline_at,
        )
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobRecord:
        """The record `to_dict` wrote (unknown keys, such as a file's own, are ignored)."""
        names = {field.name for field in fields(cls)}
        values = {key: value for key, value in data.items() if key in names}
        error = values.get("error")
        if isinstance(error, str):  # written before errors carried a code
            error = {"message": error}
        return cls(
            **{
                **values,
                "status": JobStatus(values["status"]),
                "request": GenerationRequest.from_dict(values["request"]),
                "output": OutputOptions(**values["output"]),
                "error": ModelLayerError.from_dict(error) if error else None,
            }
        )

    def with_changes(self, **changes: Any) -> JobRecord:
        """A copy with `changes` applied."""
        return replace(self, **changes)
