"""The `preview_every` field of our generate and edit APIs: live previews every N steps."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from marshmallow import ValidationError

from backend.model.types import GenerationRequest
from backend.view.fields import WholeNumber


def preview_every_field() -> WholeNumber:
    """The field: 0 (or absent, null) for none, else 1..steps."""
    return WholeNumber(
        allow_none=True,
        metadata={
            "description": "Live previews: a small image of the latents every N steps, shown "
            "by GET /jobs/{id}/events and /sdapi/v1/progress (0 or absent: none; at most steps).",
            "minimum": 0,
        },
    )


def with_previews(data: dict[str, Any], request: GenerationRequest) -> GenerationRequest:
    """`request` with the body's `preview_every`, checked against its steps."""
    every = data.get("preview_every") or 0
    if every < 0 or every > request.steps:
        raise ValidationError(
            {"preview_every": [f"Must be between 0 and steps ({request.steps})."]}
        )
    return replace(request, preview_every=every)
