"""Plain data passed between the view schemas, the model layer and the controllers."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class GenerationRequest:
    """One validated text-to-image request with every default already filled in."""

    prompt: str
    negative_prompt: str
    width: int
    height: int
    steps: int
    guidance_scale: float
    seed: int | None = None  # None: the model layer draws one and reports it


@dataclass(frozen=True)
class EncodedImage:
    """One generated image, encoded for the wire."""

    data: bytes
    media_type: str
    seed: int


@dataclass(frozen=True)
class GenerationResult:
    """What a generation produced, and with which exact parameters."""

    images: list[EncodedImage]
    model: str
    request: GenerationRequest  # with the seed actually used
    generation_seconds: float
    queue_seconds: float = 0.0

    @property
    def seed(self) -> int:
        """The seed of the first image."""
        return self.images[0].seed

    def parameters(self) -> dict[str, Any]:
        """The parameters that reproduce this result."""
        return {**asdict(self.request), "seed": self.seed, "model": self.model}
