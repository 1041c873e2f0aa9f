"""Plain data passed between the view schemas, the model layer and the controllers.

Plain, serialisable values only (no torch, no PIL in requests): the same calls can later cross
a process boundary to a queue worker.
"""

from __future__ import annotations

import base64
from dataclasses import asdict, dataclass, field, replace
from typing import Any

MAX_SEED = 2**32 - 1

TASKS = ("txt2img", "img2img", "inpaint")
HIRES_UPSCALERS = ("latent", "lanczos", "nearest")
# What a masked area starts from (A1111 numbers them 0 fill, 1 original, 2, 3 as here).
INPAINT_FILLS = ("original", "fill", "latent noise", "latent nothing")


@dataclass(frozen=True)
class LoraChoice:
    """One LoRA a request applies: its name in LORAS_DIR and its weight."""

    name: str
    weight: float = 1.0


@dataclass(frozen=True)
class ImageInput:
    """The image(s) a request starts from, already decoded, checked and normalised by the views.

    Images are PNG bytes (RGB, EXIF rotation applied, exactly the request's width x height);
    output image i starts from `images[i % len(images)]`. The mask is PNG bytes (mode L, the
    same size, white = repaint, blur already applied); None means img2img.
    """

    images: tuple[bytes, ...]
    strength: float  # 0 keeps the input, 1 ignores it; steps * strength steps run
    mask: bytes | None = None
    fill: str = "original"  # what the masked area starts from (INPAINT_FILLS)
    full_res: bool = False  # inpaint only the masked area's box, at full resolution
    full_res_padding: int = 32  # pixels around that box

    @property
    def task(self) -> str:
        """img2img without a mask, inpaint with one."""
        return "img2img" if self.mask is None else "inpaint"

    def summary(self) -> dict[str, Any]:
        """What the response metadata says about the input (never the bytes)."""
        return {
            "images": len(self.images),
            "mask": self.mask is not None,
            "strength": self.strength,
            "fill": self.fill,
            "full_res": self.full_res,
        }


@dataclass(frozen=True)
class HiresOptions:
    """Hires fix: draw at the request's size, upscale to width x height, then img2img."""

    width: int  # the final size
    height: int
    upscaler: str = "latent"  # HIRES_UPSCALERS
    steps: int = 0  # second-pass steps before strength; 0: the request's steps
    strength: float = 0.7  # the second pass's denoising strength


@dataclass(frozen=True)
class RefinerOptions:
    """The SDXL refiner ensemble: the base denoises until `switch_at`, the refiner after it."""

    model: str  # the refiner's model name (REFINER_MODEL)
    switch_at: float = 0.8  # the fraction of the steps the base model runs


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
    init_image: ImageInput | None = None  # img2img / inpainting; None: text to image
    hires: HiresOptions | None = None  # txt2img only
    refiner: RefinerOptions | None = None  # SDXL only
    # Live previews: a small image of the latents every N steps (0: none). It changes nothing
    # in the images drawn, so it is not a parameter and does not split batches.
    preview_every: int = 0

    @property
    def task(self) -> str:
        """txt2img, img2img or inpaint (TASKS): requests of different tasks never batch."""
        return "txt2img" if self.init_image is None else self.init_image.task

    @property
    def output_size(self) -> tuple[int, int]:
        """The size of the images returned (the hires fix's, when asked)."""
        if self.hires is not None:
            return self.hires.width, self.hires.height
        return self.width, self.height

    def to_dict(self) -> dict[str, Any]:
        """JSON-able values (image bytes as base64); `from_dict` reads them back."""
        values = asdict(self)
        if self.init_image is not None:
            image = values["init_image"]
            image["images"] = [base64.b64encode(each).decode() for each in self.init_image.images]
            if self.init_image.mask is not None:
                image["mask"] = base64.b64encode(self.init_image.mask).decode()
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> GenerationRequest:
        """The request `to_dict` wrote (job records, Redis states, Celery messages)."""
        loras = tuple(LoraChoice(**each) for each in values.get("loras") or ())
        extra: dict[str, Any] = {"loras": loras}
        if image := values.get("init_image"):
            mask = image.get("mask")
            extra["init_image"] = ImageInput(
                **{
                    **image,
                    "images": tuple(base64.b64decode(each) for each in image["images"]),
                    "mask": base64.b64decode(mask) if mask else None,
                }
            )
        if hires := values.get("hires"):
            extra["hires"] = HiresOptions(**hires)
        if refiner := values.get("refiner"):
            extra["refiner"] = RefinerOptions(**refiner)
        return cls(**{**values, **extra})

    def parameters(self) -> dict[str, Any]:
        """The parameters that describe this request, the input images summarised."""
        values = asdict(replace(self, init_image=None))
        values["init_image"] = self.init_image.summary() if self.init_image else None
        del values["preview_every"]  # how the run is watched, not how the images are drawn
        return values

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
    # How the images were drawn, plain data for the views: "task"; "steps_run" (img2img,
    # inpaint, hires fix: the denoising steps that ran); "inpaint_mode" (inpaint: "dedicated
    # inpainting UNet" or "mask blending on the base model").
    notes: dict[str, Any] = field(default_factory=dict)

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
        return {**self.request.parameters(), "scheduler": self.scheduler, "model": self.model}
