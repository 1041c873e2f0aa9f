"""Text embeddings of recent prompts, so a repeated prompt skips the text encoders.

Clients repeat prompts all the time (the same prompt with new seeds, a UI re-rolling an image),
and the text encoders cost a fixed slice of every call: CLIP for SD, two CLIPs for SDXL, two CLIPs
and T5 for SD3. The embeddings are exactly what the pipeline would compute itself, handed to it
as `prompt_embeds` and friends, so images are byte-identical with the cache on or off.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from backend.model.catalogue import Family

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

Embeddings = dict[str, "torch.Tensor"]


def uses_guidance(pipeline: Any, guidance_scale: float) -> bool:
    """Whether the pipeline runs classifier-free guidance (and so needs negative embeddings);
    the rule each family's `do_classifier_free_guidance` applies."""
    unet = getattr(pipeline, "unet", None)
    # Distilled models with a guidance embedding (LCM) never run an unconditional pass.
    embedded = unet is not None and unet.config.get("time_cond_proj_dim") is not None
    return guidance_scale > 1 and not embedded


class PromptCache:
    """The embeddings of the last `size` (prompt, negative prompt, guidance) combinations of one
    loaded pipeline; only its device's worker thread uses it."""

    def __init__(self, size: int, on_lookup: Callable[[str], None] | None = None) -> None:
        self.size = size
        self.hits = 0
        self.misses = 0
        self._on_lookup = on_lookup  # called with "hit" or "miss" (the metrics)
        self._entries: OrderedDict[tuple, Embeddings] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def embeddings(
        self,
        pipeline: Any,
        family: Family,
        prompts: list[str],
        negatives: list[str] | None,
        guidance: bool,
        *,
        variant: tuple = (),
    ) -> Embeddings:
        """The pipeline keyword arguments for one image per prompt, from the cache where it can;
        `variant` tells apart encoders changed by text-encoder LoRAs (empty: the model's own)."""
        per_image = [
            self._one(
                pipeline,
                family,
                prompt,
                negatives[k] if negatives else None,
                guidance,
                variant=variant,
            )
            for k, prompt in enumerate(prompts)
        ]
        if len(per_image) == 1:
            return per_image[0]
        import torch

        return {name: torch.cat([each[name] for each in per_image]) for name in per_image[0]}

    def _one(
        self,
        pipeline: Any,
        family: Family,
        prompt: str,
        negative: str | None,
        guidance: bool,
        *,
        variant: tuple = (),
    ) -> Embeddings:
        key = (prompt, negative, guidance, variant)
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
            self.hits += 1
            self._count("hit")
            return found
        self.misses += 1
        self._count("miss")
        found = encode(pipeline, family, prompt, negative, guidance)
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
    else:
        outputs = pipeline.encode_prompt(
            prompt=prompt,
            prompt_2=None,
            prompt_3=None,
            device=device,
            num_images_per_prompt=1,
            do_classifier_free_guidance=guidance,
            negative_prompt=negative,
        )
    # Without guidance the negative embeddings are None: the call must not be given them.
    return {
        name: value
        for name, value in zip(_OUTPUTS[family], outputs, strict=True)
        if value is not None
    }
