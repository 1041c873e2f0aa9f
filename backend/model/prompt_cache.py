"""Text embeddings of recent prompts, so a repeated prompt skips the text encoders.

Clients repeat prompts all the time (the same prompt with new seeds, a UI re-rolling an image),
and the text encoders cost a fixed slice of every call: CLIP for SD, two CLIPs for SDXL, two CLIPs
and T5 for SD3. The embeddings are exactly what the pipeline would compute itself, handed to it
as `prompt_embeds` and friends, so images are byte-identical with the cache on or off. The same
holds for FLUX (CLIP and T5), PixArt-Σ (T5) and Sana (Gemma2).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from backend.model import prompt_weights
from backend.model.catalogue import Family
from backend.model.clip_skip import effective as effective_clip_skip
from backend.model.prompt_plan import TextPlan

if TYPE_CHECKING:  # torch is imported by the worker thread, not when the app is built
    import torch

# What each family's encode_prompt returns, in order, named as its __call__ takes them.
_OUTPUTS = {
    Family.SD: ("prompt_embeds", "negative_prompt_embeds"),
    Family.SDXL: (
        "prompt_embeds",
        "negative_prompt_embeds",
        "pooled_prompt_embeds",
        "negative_pooled_prompt_embeds",
    ),
}
_OUTPUTS[Family.SD3] = _OUTPUTS[Family.SDXL]
# FLUX's third output (text_ids) is rebuilt by the call from the embeddings: not an argument.
_OUTPUTS[Family.FLUX] = ("prompt_embeds", "pooled_prompt_embeds", None)
_OUTPUTS[Family.PIXART] = (
    "prompt_embeds",
    "prompt_attention_mask",
    "negative_prompt_embeds",
    "negative_prompt_attention_mask",
)
_OUTPUTS[Family.SANA] = _OUTPUTS[Family.PIXART]
# PixArt-Σ and Sana tokenise the negative prompt as text even when there is none: they take ""
# for none (None fails), and None once its embeddings are given (both together are refused).
_TEXT_NEGATIVE = (Family.PIXART, Family.SANA)

Embeddings = dict[str, "torch.Tensor"]


def uses_guidance(pipeline: Any, guidance_scale: float) -> bool:
    """Whether the pipeline runs classifier-free guidance (and so needs negative embeddings);
    the rule each family's `do_classifier_free_guidance` applies."""
    unet = getattr(pipeline, "unet", None)
    # Distilled models with a guidance embedding (LCM) never run an unconditional pass.
    embedded = unet is not None and unet.config.get("time_cond_proj_dim") is not None
    # FLUX.1 is guidance-distilled: dev takes the scale as an input of its transformer, schnell
    # ignores it, and neither runs an unconditional pass (no negative prompt: see rules.py).
    flux = type(pipeline).__name__.startswith("Flux")
    return guidance_scale > 1 and not embedded and not flux


def no_negative(family: Family) -> str | None:
    """What a `family` pipeline's call takes as negative_prompt when a request has none."""
    return "" if family in _TEXT_NEGATIVE else None


class PromptCache:
    """The embeddings of the last `size` (parsed prompt, parsed negative prompt, guidance, clip
    skip, length) combinations of one loaded pipeline; only its device's worker thread uses it.
    Size 0 stores nothing (weighted prompts still need it to be encoded)."""

    def __init__(self, size: int, on_lookup: Callable[[str], None] | None = None) -> None:
        self.size = size
        self.hits = 0
        self.misses = 0
        self._on_lookup = on_lookup  # called with "hit" or "miss" (the metrics)
        self._entries: OrderedDict[tuple, Embeddings] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        """Forget every entry (a newly loaded embedding changes what a prompt's text means)."""
        self._entries.clear()

    def embeddings(
        self,
        pipeline: Any,
        family: Family,
        plans: list[TextPlan],
        guidance: bool,
        clip_skip: int | None = None,
        *,
        variant: tuple = (),
    ) -> Embeddings:
        """The pipeline keyword arguments for one image per plan, from the cache where it can;
        `variant` tells apart encoders changed by text-encoder LoRAs (empty: the model's own)."""
        # Every image of a call needs the same sequence length: the longest one's.
        shapes = [each.shape() for each in plans]
        shape = (max(s[0] for s in shapes), max(s[1] for s in shapes))
        per_image = [
            self._one(
                pipeline,
                family,
                each,
                guidance=guidance,
                clip_skip=clip_skip,
                shape=shape,
                variant=variant,
            )
            for each in plans
        ]
        # The negative prompt's embeddings replace its text (PixArt-Σ and Sana default it to "").
        extra = {"negative_prompt": None} if family in _TEXT_NEGATIVE else {}
        if len(per_image) == 1:
            return {**per_image[0], **extra}
        import torch

        joined = {name: torch.cat([each[name] for each in per_image]) for name in per_image[0]}
        return {**joined, **extra}

    def _one(
        self,
        pipeline: Any,
        family: Family,
        text: TextPlan,
        *,
        guidance: bool,
        clip_skip: int | None,
        shape: tuple[int, int],
        variant: tuple = (),
    ) -> Embeddings:
        # Keyed on the parsed prompt: "(cat:1.5)" and "cat" differ, "(cat:1.0)" and "cat" do not.
        layer = effective_clip_skip(family, clip_skip)
        key = (text.key(), guidance, layer, shape, variant)
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
            self.hits += 1
            self._count("hit")
            return found
        self.misses += 1
        self._count("miss")
        if text.plain(family, clip_skip) and text.shape() == shape:
            negative = text.negative.text if text.negative else None
            found = encode(pipeline, family, text.positive.text, negative, guidance)
        else:
            found = prompt_weights.encode(
                pipeline, family, text, guidance=guidance, clip_skip=clip_skip, shape=shape
            )
        if self.size > 0:
            self._entries[key] = found
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return found

    def _count(self, result: str) -> None:
        if self._on_lookup is not None:
            self._on_lookup(result)


def encode(
    pipeline: Any, family: Family, prompt: str, negative: str | None, guidance: bool
) -> Embeddings:
    """One prompt's embeddings, computed by the pipeline's own encode_prompt as its __call__
    would (one image per prompt: the call repeats them for num_images_per_prompt)."""
    device = pipeline._execution_device
    if family is Family.SD:
        outputs = pipeline.encode_prompt(prompt, device, 1, guidance, negative_prompt=negative)
    elif family is Family.SDXL:
        outputs = pipeline.encode_prompt(
            prompt=prompt,
            device=device,
            num_images_per_prompt=1,
            do_classifier_free_guidance=guidance,
            negative_prompt=negative,
        )
    elif family is Family.SD3:
        outputs = pipeline.encode_prompt(
            prompt=prompt,
            prompt_2=None,
            prompt_3=None,
            device=device,
            num_images_per_prompt=1,
            do_classifier_free_guidance=guidance,
            negative_prompt=negative,
        )
    else:
        outputs = encode_transformer_family(pipeline, family, prompt, negative, guidance)
    # Without guidance the negative embeddings are None: the call must not be given them.
    return {
        name: value
        for name, value in zip(_OUTPUTS[family], outputs, strict=True)
        if value is not None and name is not None
    }


def encode_transformer_family(
    pipeline: Any, family: Family, prompt: str, negative: str | None, guidance: bool
) -> tuple:
    """encode_prompt of FLUX, PixArt-Σ and Sana, with the text options their __call__ passes
    (sequence length, caption cleaning, Sana's instruction): the embeddings must be the call's."""
    import inspect

    call_defaults = {
        name: parameter.default
        for name, parameter in inspect.signature(pipeline.__call__).parameters.items()
        if parameter.default is not inspect.Parameter.empty
    }
    device = pipeline._execution_device
    length = call_defaults["max_sequence_length"]
    if family is Family.FLUX:
        return pipeline.encode_prompt(
            prompt=prompt, prompt_2=None, device=device, max_sequence_length=length
        )
    options = {"clean_caption": call_defaults["clean_caption"], "max_sequence_length": length}
    if family is Family.SANA:
        options["complex_human_instruction"] = call_defaults["complex_human_instruction"]
    return pipeline.encode_prompt(
        prompt,
        guidance,
        negative_prompt=negative if negative is not None else "",
        num_images_per_prompt=1,
        device=device,
        **options,
    )
