"""What the image fields of every dialect must satisfy: input images, masks, strength, the hires
fix and the SDXL refiner. The schemas (ours, OpenAI's, AUTOMATIC1111's) differ in names; these
rules are the same, so they live here once, and every failure names the client's field."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from marshmallow import ValidationError

from backend.model import image_input
from backend.model.catalogue import Family
from backend.model.image_input import ImageInputError
from backend.model.types import HIRES_UPSCALERS, HiresOptions, ImageInput, RefinerOptions
from backend.view.rules import GenerationSchema, between

if TYPE_CHECKING:
    from PIL import Image

STRENGTH_RANGE = between(0.0, 1.0)
MASK_BLUR_RANGE = between(0, 64)
HR_SCALE_RANGE = between(1.0, 4.0)
SWITCH_AT_RANGE = between(0.01, 0.99)
FULL_RES_PADDING_RANGE = between(0, 256)


def read(schema: GenerationSchema, field: str, data: bytes | str) -> Image.Image:
    """One uploaded image: bytes, or base64 text with or without a `data:` URL prefix."""
    try:
        raw = image_input.from_base64(data) if isinstance(data, str) else data
        return image_input.read_image(raw, schema.limits.max_pixels)
    except ImageInputError as error:
        raise ValidationError({field: [str(error)]}) from None


@dataclass(frozen=True)
class Sized:
    """An ImageInput and the size it was normalised to (the request's width and height)."""

    image: ImageInput
    width: int
    height: int


def make_input(
    schema: GenerationSchema,
    model: str | None,
    images: list[Image.Image],
    *,
    strength: float,
    width: int | None = None,
    height: int | None = None,
    mask: Image.Image | None = None,
    resize_mode: str = "resize",
    mask_blur: int = 0,
    mask_invert: bool = False,
    mask_from_alpha: bool = False,
    fill: str = "original",
    full_res: bool = False,
    full_res_padding: int = 32,
    fields: tuple[str, str] = ("image", "mask"),  # the client's names for the two parts
) -> Sized:
    """The normalised input: every image at width x height (default: the first image's own
    size, rounded to the family's multiple and scaled to fit MAX_PIXELS), the mask with it."""
    image_field, mask_field = fields
    if not images:
        raise ValidationError({image_field: ["An input image is required."]})
    if width is None or height is None:
        multiple = schema.spec(model).family.size_multiple
        own = image_input.default_size(images[0], multiple, schema.limits.max_pixels)
        width, height = width or own[0], height or own[1]
    problems = schema.size_problems(model, width, height)
    if problems:
        raise ValidationError(problems)
    # A transparent input is drawn over white, as an editor shows it.
    pixels = tuple(
        image_input.to_png(image_input.fit(image_input.flatten(each), width, height, resize_mode))
        for each in images
    )
    mask_bytes = None
    if mask is not None:
        try:
            # The mask goes through the same resize mode as the images, so they stay aligned.
            fitted = image_input.fit(mask, width, height, resize_mode)
            mask_bytes = image_input.make_mask(
                fitted,
                width,
                height,
                from_alpha=mask_from_alpha,
                invert=mask_invert,
                blur=mask_blur,
            )
        except ImageInputError as error:
            raise ValidationError({mask_field: [str(error)]}) from None
    image = ImageInput(
        images=pixels,
        strength=strength,
        mask=mask_bytes,
        fill=fill,
        full_res=full_res and mask_bytes is not None,
        full_res_padding=full_res_padding,
    )
    return Sized(image, width, height)


def hires(
    schema: GenerationSchema,
    model: str | None,
    width: int,
    height: int,
    *,
    scale: float | None,
    resize_x: int | None,
    resize_y: int | None,
    upscaler: str | None,
    steps: int | None,
    strength: float | None,
) -> HiresOptions:
    """The hires fix of a txt2img request drawn first at width x height (A1111's rules: the
    resize sizes win over the scale; one of them alone keeps the aspect ratio)."""
    multiple = schema.spec(model).family.size_multiple
    if resize_x or resize_y:
        final_w = resize_x or round(resize_y * width / height)  # type: ignore[operator]
        final_h = resize_y or round(resize_x * height / width)  # type: ignore[operator]
        fields = ("hr_resize_x", "hr_resize_y")
    else:
        factor = 2.0 if scale is None else scale
        final_w, final_h = round(width * factor), round(height * factor)
        fields = ("hr_scale", "hr_scale")
    final_w = max(multiple, final_w // multiple * multiple)
    final_h = max(multiple, final_h // multiple * multiple)
    problems = schema.size_problems(model, final_w, final_h)
    # The final size is what is drawn and returned: MAX_WIDTH and MAX_HEIGHT bound it too.
    for side, value, most in (
        ("width", final_w, schema.limits.max_width),
        ("height", final_h, schema.limits.max_height),
    ):
        if value > most:
            problems.setdefault(side, []).append(f"{value} is more than the limit of {most}.")
    if problems:
        named: dict[str, list[str]] = {}
        for side, field in zip(("width", "height"), fields, strict=True):
            for message in problems.get(side, []):
                text = f"The hires fix's final size: {message}"
                if text not in named.get(field, []):
                    named.setdefault(field, []).append(text)
        raise ValidationError(named)
    if steps is not None and steps > schema.limits.max_steps:
        raise ValidationError(
            {"hr_second_pass_steps": [f"Must be at most {schema.limits.max_steps} (MAX_STEPS)."]}
        )
    return HiresOptions(
        width=final_w,
        height=final_h,
        upscaler=upscaler_name(upscaler),
        steps=steps or 0,
        strength=0.7 if strength is None else strength,
    )


def upscaler_name(given: str | None) -> str:
    """Our upscaler name for A1111's label ('Latent', 'Latent (bicubic)', 'Lanczos', ...)."""
    if not given:
        return "latent"
    name = given.strip().lower()
    for known in HIRES_UPSCALERS:
        if name == known or name.startswith(f"{known} ("):
            return known
    labels = "Latent, Lanczos, Nearest"
    raise ValidationError({"hr_upscaler": [f"Unknown upscaler '{given[:40]}'. Known: {labels}."]})


def refiner(
    schema: GenerationSchema, model: str | None, name: Any, switch_at: float | None
) -> RefinerOptions | None:
    """The refiner a request names (its model name, or A1111's `name.safetensors [hash]`
    title); None for none. Only REFINER_MODEL is known, and only SDXL models take it."""
    if name in (None, "", "None", False):
        return None
    configured = schema.assets.refiner_model if schema.assets is not None else None
    if configured is None:
        raise ValidationError(
            {"refiner": ["No refiner is configured on this server (REFINER_MODEL)."]}
        )
    given = configured if name is True else str(name).split(" [")[0].removesuffix(".safetensors")
    if given != configured:
        raise ValidationError(
            {"refiner": [f"Unknown refiner '{str(name)[:64]}'. Known: {configured}."]}
        )
    spec = schema.spec(model)
    if spec.family is not Family.SDXL:
        raise ValidationError(
            {"refiner": [f"The refiner works with SDXL models; '{spec.name}' is {spec.family}."]}
        )
    return RefinerOptions(model=configured, switch_at=0.8 if switch_at is None else switch_at)
