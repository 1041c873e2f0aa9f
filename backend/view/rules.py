"""What every generation request must satisfy, whichever API dialect it arrives in.

The request schemas (ours, OpenAI's, AUTOMATIC1111's) differ in field names; the limits and the
model-dependent rules are the same, so they live here once.
"""

from __future__ import annotations

import difflib
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, pre_load, validate

from backend.config import Limits
from backend.model import clip_skip as clip_layers
from backend.model import prompt_syntax, schedulers, vae_files
from backend.model.catalogue import Family, ModelSpec
from backend.model.model_catalog import ModelCatalog
from backend.model.types import MAX_SEED, GenerationRequest
from backend.settings.groups import AssetSettings
from backend.view.text import clean_body

MIN_SIDE = 64
MAX_GUIDANCE = 30.0
OUTPUT_FORMATS = ("png", "jpeg", "webp")
FLUX_NO_NEGATIVE = (
    "Model '{}' is a FLUX.1 model, which takes no negative prompt (it is guidance-distilled: "
    "there is no unconditional pass to steer away from). Leave negative_prompt empty."
)


def between(minimum: float, maximum: float) -> validate.Range:
    """A range check whose message states the range."""
    return validate.Range(minimum, maximum, error="Must be between {min} and {max}.")


class GenerationSchema(Schema):
    """Base of the request schemas: knows the limits and the models, checks what depends on them.

    Limits are configurable, so their checks are attached per instance (and so appear in the
    OpenAPI document with the configured values).
    """

    def __init__(
        self,
        *,
        limits: Limits,
        catalog: ModelCatalog,
        assets: AssetSettings | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.limits = limits
        self.catalog = catalog
        self.assets = assets  # None: no VAEs or other added files (the OpenAPI document's)
        # LORAS_DIR, where the names in `loras` are looked up (None: no LoRAs)
        self.loras_dir = assets.loras_dir if assets is not None else None
        self._specs: dict[str | None, ModelSpec] = {}  # an instance serves one request

    def spec(self, model: str | None) -> ModelSpec:
        """The spec of the model a request names (404 if unknown), resolved once per request."""
        if model not in self._specs:
            self._specs[model] = self.catalog.resolve(model)
        return self._specs[model]

    @pre_load
    def _prepare(self, data: Any, **_: Any) -> Any:
        """Clean or refuse hostile text (`text.clean_body`), then name unknown fields' likely
        intended names, which marshmallow's bare 'Unknown field.' does not."""
        if not isinstance(data, dict):
            return data
        data = clean_body(data)
        if self.unknown != RAISE:
            return data
        known = list(self.load_fields)
        errors = {}
        for key in data:
            if key not in known:
                close = difflib.get_close_matches(str(key), known, n=1)
                hint = f" Did you mean '{close[0]}'?" if close else f" Known: {', '.join(known)}."
                errors[str(key)[:64]] = [f"Unknown field.{hint}"]
        if errors:
            raise ValidationError(errors)
        return data

    def bound(self, name: str, check: validate.Validator) -> None:
        """Add `check` to field `name` of this instance only (the field's list is shared)."""
        field = self.fields[name]
        field.validators = [*field.validators, check]

    def bound_text(self, *names: str) -> None:
        """Prompt-like fields: at most MAX_PROMPT_LENGTH characters, in the prompt syntax this
        server draws (`prompt_syntax`: emphasis and BREAK, no prompt editing or alternation)."""
        for name in names:
            self.bound(
                name,
                validate.Length(
                    max=self.limits.max_prompt_length,
                    error="Longer than the maximum of {max} characters.",
                ),
            )
            self.bound(name, _supported_syntax)

    def clip_skip_problem(self, model: str | None, value: int | None) -> str | None:
        """Why clip skip `value` cannot be used with `model` (its family, its layer count)."""
        if value is None:
            return None
        spec = self.spec(model)
        return clip_layers.problem(spec.family, spec.folder, value)

    def make_request(
        self,
        model: str | None,
        *,
        prompt: str,
        negative_prompt: str | None,
        width: int | None,
        height: int | None,
        steps: int | None,
        guidance_scale: float | None,
        seed: int | None,
        num_images: int | None,
        scheduler: str | None,
        clip_skip: int | None = None,
    ) -> GenerationRequest:
        """A GenerationRequest from what a body gave; None (and seed -1) take the defaults."""
        spec = self.spec(model)
        if spec.family in PLAIN_ONLY:
            for name, text in (("prompt", prompt), ("negative_prompt", negative_prompt)):
                if text and not prompt_syntax.is_plain(text, prompt_syntax.check(text)):
                    raise ValidationError({name: [PLAIN_ONLY_PROMPT.format(spec.name)]})
        if negative_prompt and spec.family is Family.FLUX:
            # Guidance-distilled: no unconditional pass for a negative prompt to steer.
            raise ValidationError({"negative_prompt": [FLUX_NO_NEGATIVE.format(spec.name)]})
        defaults = spec.defaults
        return GenerationRequest(
            prompt=prompt,
            negative_prompt=negative_prompt or "",
            width=width or defaults.width,
            height=height or defaults.height,
            # The operator's MAX_STEPS bounds a model's own default too (sd-1.5's 50, say).
            steps=steps or min(defaults.steps, self.limits.max_steps),
            guidance_scale=defaults.guidance_scale if guidance_scale is None else guidance_scale,
            seed=None if seed in (None, -1) else seed,
            num_images=num_images or 1,
            model=model,
            scheduler=scheduler,
            # 1 and absent mean the same (no skip): one batch key, one cache entry.
            clip_skip=clip_skip if clip_skip and clip_skip > 1 else None,
            vae=self.vae_choice(model, None),  # DEFAULT_VAE, where set and fitting
        )

    def size_problems(self, model: str | None, width: int, height: int) -> dict[str, list[str]]:
        """Why `width`x`height` cannot be drawn by `model` within the limits, per side."""
        multiple = self.spec(model).family.size_multiple
        problems: dict[str, list[str]] = {}
        for side, value in (("width", width), ("height", height)):
            if value % multiple:
                problems[side] = [f"Must be a multiple of {multiple}."]
        if width * height > self.limits.max_pixels:
            message = (
                f"{width}x{height} is {width * height} pixels, more than the limit of "
                f"{self.limits.max_pixels}."
            )
            for side in ("width", "height"):
                problems.setdefault(side, []).append(message)
        return problems

    def vae_choice(self, model: str | None, given: str | None) -> str | None:
        """The VAE a request gets (None: the model's own); ValueError says why it cannot."""
        if self.assets is None:
            return None
        assets = self.assets
        return vae_files.choose(assets.vaes_dir, assets.default_vae, self.spec(model), given)

    def scheduler_problem(self, model: str | None, name: str) -> str | None:
        """Why scheduler `name` cannot run `model`, listing those that can."""
        spec = self.spec(model)
        if schedulers.find(name, spec.family) is not None:
            return None
        known = ", ".join(choice.name for choice in schedulers.choices(spec.family))
        return f"Unknown scheduler '{name[:40]}' for model '{spec.name}'. Known: {known}."


# PixArt-Σ and Sana: their T5 / Gemma encoders get the text as written (prompt_weights).
PLAIN_ONLY = frozenset({Family.PIXART, Family.SANA})
PLAIN_ONLY_PROMPT = (
    "Model '{}' takes plain prompts: emphasis such as (word:1.2) or [word], escapes and BREAK "
    "are only supported for SD, SDXL, SD3 and FLUX models. Remove the brackets."
)

CLIP_SKIP_RANGE = validate.Range(
    1, clip_layers.MAX_CLIP_SKIP, error="Must be between {min} (no skip) and {max}."
)


def _supported_syntax(text: str | None) -> None:
    """Refuse prompt syntax that would be drawn as something else than the client meant."""
    if text and (found := prompt_syntax.problem(text)):
        raise ValidationError(found)


SEED_RANGE = validate.Range(-1, MAX_SEED, error="Must be -1 (random) or between 0 and {max}.")
