"""What a pipeline run may ask of the work it serves: report progress, and whether to stop.

The step callback sees only this, never a job: in one process a `Job` answers it, and a worker
of the scale-out mode can answer from Redis (progress written there, cancels read from there).
"""

from __future__ import annotations

from typing import Protocol

from backend.model.job_record import JobPreview


class RunControl(Protocol):
    """One request's say in a running pipeline call."""

    def progress(self, step: int, total: int) -> None:
        """A denoising step finished (`step` of `total`)."""

    def should_stop(self) -> bool:
        """Whether nobody wants this request's images any more (cancelled, past its deadline)."""

    def interrupted(self) -> bool:
        """Whether its owner asked to stop early and keep the images the steps made so far."""

    def take_preview(self, preview: JobPreview) -> None:
        """A live preview of its latents (only for requests with `preview_every`)."""
