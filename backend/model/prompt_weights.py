"""Weighted and long prompts, encoded as AUTOMATIC1111 encodes them (torch imported lazily).

A prompt is cut into chunks of the CLIP window less its BOS and EOS (75 tokens for SD's 77),
a BREAK starts a new chunk, and a chunk that would end within 20 tokens after a comma moves the
words after that comma to the next chunk (AUTOMATIC1111's `comma_padding_backtrack`). Each
chunk is wrapped in BOS/EOS, padded, and encoded on its own; the chunks' hidden states are
concatenated along the sequence. Each token's hidden state is multiplied by its weight, then the
chunk is rescaled so its mean is what it was before weighting (AUTOMATIC1111's "Original"
emphasis). The positive and negative prompts are padded to the same number of chunks with
empty ones (a BOS, an EOS and padding), as AUTOMATIC1111 pads a batch.

SDXL: both CLIP encoders chunk the same text; their penultimate states are concatenated per
token, and the pooled embedding is text_encoder_2's for the first chunk. SD3: the same for its
two CLIPs, and T5 (when loaded) reads the whole prompt in one window of 256 tokens, or 512 when
the prompt needs more, weighted the same way.

FLUX: T5 (text_encoder_2) reads the whole weighted prompt in its 512-token window; CLIP only
gives the pooled embedding, of the text without its syntax, as FLUX's own encode_prompt does.
PixArt-Σ and Sana take plain prompts only (the schemas refuse emphasis for them).

A plain prompt that fits the window keeps the pipeline's own encode_prompt (`prompt_cache.encode`)
so its images stay byte-identical to what they always were.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from backend.model import clip_skip as skip
from backend.model.catalogue import Family
from backend.model.prompt_plan import FLUX_T5_LENGTH, Chunk, Side, TextPlan, empty_side

if TYPE_CHECKING:
    import torch


def encode(
    pipeline: Any,
    family: Family,
    text: TextPlan,
    *,
    guidance: bool,
    clip_skip: int | None,
    shape: tuple[int, int],
) -> dict[str, torch.Tensor]:
    """One image's embeddings, as the pipeline's keyword arguments, at `shape` (chunks, T5)."""
    import torch

    if family is Family.FLUX:  # guidance-distilled: no negative embeddings, ever
        embeds, pooled = _encode_flux(pipeline, text.positive)
        return {"prompt_embeds": embeds, "pooled_prompt_embeds": pooled}
    layer = skip.effective(family, clip_skip)
    positive = _encode_side(pipeline, family, text.positive, layer, shape)
    out = {"prompt_embeds": positive[0]}
    if family is not Family.SD:
        out["pooled_prompt_embeds"] = positive[1]
    if not guidance:
        return out
    if (
        text.negative is None
        and family is Family.SDXL
        and pipeline.config.force_zeros_for_empty_prompt
    ):
        out["negative_prompt_embeds"] = torch.zeros_like(positive[0])
        out["negative_pooled_prompt_embeds"] = torch.zeros_like(positive[1])
        return out
    empty = text.negative or empty_side(pipeline, family)
    negative = _encode_side(pipeline, family, empty, layer, shape)
    out["negative_prompt_embeds"] = negative[0]
    if family is not Family.SD:
        out["negative_pooled_prompt_embeds"] = negative[1]
    return out


def _encode_side(
    pipeline: Any, family: Family, side: Side, layer: int | None, shape: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor | None]:
    import torch

    chunks, t5_length = shape
    device = pipeline._execution_device
    if family is Family.SD:
        states, _ = _encode_clip(
            pipeline.text_encoder,
            pipeline.tokenizer,
            side.clip[0],
            count=chunks,
            layer=layer,
            device=device,
            final_norm=True,
        )
        return states.to(dtype=pipeline.text_encoder.dtype, device=device), None
    encoders = [pipeline.text_encoder, pipeline.text_encoder_2]
    tokenizers = [pipeline.tokenizer, pipeline.tokenizer_2]
    states, pooled = [], []
    for encoder, tokenizer, own in zip(encoders, tokenizers, side.clip, strict=True):
        hidden, pool = _encode_clip(
            encoder, tokenizer, own, count=chunks, layer=layer or 2, device=device, final_norm=False
        )
        states.append(hidden)
        pooled.append(pool)
    clip = torch.cat(states, dim=-1)
    if family is Family.SDXL:
        return clip.to(dtype=pipeline.text_encoder_2.dtype, device=device), pooled[1]
    clip = clip.to(dtype=pipeline.text_encoder.dtype, device=device)
    t5 = _encode_t5(pipeline, side, t5_length, device)
    clip = torch.nn.functional.pad(clip, (0, t5.shape[-1] - clip.shape[-1]))
    return torch.cat([clip, t5], dim=-2), torch.cat(pooled, dim=-1)


def _encode_clip(
    encoder: Any,
    tokenizer: Any,
    chunks: Sequence[Chunk],
    *,
    count: int,
    layer: int | None,
    device: Any,
    final_norm: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The chunks' hidden states side by side (1, count * window, width), and the first chunk's
    pooled output. `layer`: None for the last layer, N for layer -N."""
    import torch

    window = tokenizer.model_max_length
    bos, eos, pad = tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id
    padded = [*chunks, *[([], [])] * (count - len(chunks))]
    ids, weights, masks = [], [], []
    for tokens, token_weights in padded:
        rest = window - 2 - len(tokens)
        ids.append([bos, *tokens, eos] + [pad] * rest)
        weights.append([1.0, *token_weights, 1.0] + [1.0] * rest)
        masks.append([1] * (len(tokens) + 2) + [0] * rest)
    input_ids = torch.tensor(ids, device=device)
    mask = None
    if getattr(encoder.config, "use_attention_mask", False):
        mask = torch.tensor(masks, device=device)
    states, pooled = [], None
    for index in range(len(padded)):  # one chunk per call, as AUTOMATIC1111 and diffusers do
        chunk_mask = None if mask is None else mask[index : index + 1]
        if layer is None:
            output = encoder(input_ids[index : index + 1], attention_mask=chunk_mask)
            hidden = output[0]
        else:
            output = encoder(
                input_ids[index : index + 1], attention_mask=chunk_mask, output_hidden_states=True
            )
            hidden = output.hidden_states[-layer]
            if final_norm:
                hidden = _final_norm(encoder)(hidden)
        if index == 0:
            pooled = output[0]
        states.append(_emphasis(hidden, weights[index]))
    return torch.cat(states, dim=1), pooled


def _final_norm(encoder: Any) -> Any:
    # transformers 5 holds it on the model itself; earlier versions on `text_model`.
    found = getattr(encoder, "final_layer_norm", None)
    return found if found is not None else encoder.text_model.final_layer_norm


def _encode_flux(pipeline: Any, side: Side) -> tuple[torch.Tensor, torch.Tensor]:
    """FLUX's T5 states of the weighted prompt, and CLIP's pooled output of its plain text."""
    device = pipeline._execution_device
    tokenizer, encoder = pipeline.tokenizer, pipeline.text_encoder
    ids = tokenizer(
        side.plain_text,
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids
    pooled = encoder(ids.to(device), output_hidden_states=False).pooler_output
    pooled = pooled.to(dtype=encoder.dtype, device=device)
    states = _encode_t5(pipeline, side, FLUX_T5_LENGTH, device, t5=pipeline.text_encoder_2)
    return states, pooled


def _encode_t5(pipeline: Any, side: Side, length: int, device: Any, t5: Any = None) -> torch.Tensor:
    import torch

    if side.t5 is None:  # no T5 loaded: zeros, as the pipeline gives itself
        width = pipeline.transformer.config.joint_attention_dim
        return torch.zeros((1, length, width), device=device, dtype=pipeline.text_encoder.dtype)
    encoder = t5 if t5 is not None else pipeline.text_encoder_3
    tokenizer = pipeline.tokenizer_2 if t5 is not None else pipeline.tokenizer_3
    tokens, weights = side.t5  # the last token is T5's EOS: it stays last
    tokens = tokens[:-1][: length - 1] + tokens[-1:]
    weights = [*weights[:-1][: length - 1], 1.0]
    rest = length - len(tokens)
    ids = torch.tensor([tokens + [tokenizer.pad_token_id] * rest], device=device)
    hidden = encoder(ids)[0]
    return _emphasis(hidden, weights + [1.0] * rest).to(dtype=encoder.dtype, device=device)


def _emphasis(hidden: torch.Tensor, weights: list[float]) -> torch.Tensor:
    """Each token's state times its weight, then rescaled to the chunk's former mean."""
    if all(weight == 1.0 for weight in weights):
        return hidden  # AUTOMATIC1111 computes x * 1 * (m / m): exactly x
    import torch

    factors = torch.tensor(weights, device=hidden.device, dtype=hidden.dtype)
    before = hidden.mean()
    hidden = hidden * factors.reshape(1, -1, 1)
    return hidden * (before / hidden.mean())
