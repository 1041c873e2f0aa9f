"""Plain data passed between the view schemas, the model layer and the controllers.

Plain, serialisable values only (no torch, no PIL in requests): the same calls can later cross
a process boundary to a queue worker.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

MAX_SEED = 2**32 - 1


@dataclass(frozen=True)
class LoraChoice:
    """One LoRA a request applies: its name in LORAS_DIR and its weight."""

    name: str
    weight: float = 1.0


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
    num_images: int = 1
    model: str | None = None  # None: the default model
    scheduler: str | None = None  # None: the model's own scheduler
    loras: tuple[LoraChoice, ...] = ()  # adapters applied to this request only
    clip_skip: int | None = None  # AUTOMATIC1111 numbering: 1 (or None) means no skip
    vae: str | None = None  # a VAE from VAES_DIR; None: the model's own (or DEFAULT_VAE)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> GenerationRequest:
        """The request `asdict` wrote (job records, Redis states, Celery messages)."""
        loras = tuple(LoraChoice(**each) for each in values.get("loras") or ())
        return cls(**{**values, "loras": loras})

    def seeds(self) -> list[int]:
        """One seed per image, `seed, seed+1, ...` (wrapping below 2**32), so each can be redone."""
        if self.seed is None:
            raise ValueError("the seed is drawn before seeds are listed")
        return [(self.seed + index) % (MAX_SEED + 1) for index in range(self.num_images)]


@dataclass(frozen=True)
class OutputOptions:
    """How images are encoded: format, and quality where the format has one."""

    format: str = "png"  # png | jpeg | webp
    quality: int | None = None  # 0..100 for jpeg/webp; None: the encoder default of this server


@dataclass(frozen=True)
class EncodedImage:
    """One generated image, encoded for the wire."""

    data: bytes
    media_type: str
    seed: int

    @property
    def extension(self) -> str:
        """File extension for this image's format."""
        return self.media_type.split("/")[1]


@dataclass(frozen=True)
class GenerationResult:
    """What a generation produced, and with which exact parameters."""

    images: list[EncodedImage]
    model: str
    request: GenerationRequest  # with the seed and model actually used
    scheduler: str  # the scheduler that ran (our name), even when the model's own
    sampler: str  # the same, as AUTOMATIC1111 labels it
    generation_seconds: float
    queue_seconds: float = 0.0

    @property
    def seed(self) -> int:
        """The seed of the first image."""
        return self.images[0].seed

    @property
    def seeds(self) -> list[int]:
        """The seed of every image, in order."""
        return [image.seed for image in self.images]

    def parameters(self) -> dict[str, Any]:
        """The parameters that reproduce this result."""
        return {**asdict(self.request), "scheduler": self.scheduler, "model": self.model}
