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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from backend.model import clip_skip as skip
from backend.model.catalogue import Family
from backend.model.prompt_syntax import BREAK, check, is_plain

if TYPE_CHECKING:
    import torch

COMMA_BACKTRACK = 20  # AUTOMATIC1111's default comma_padding_backtrack
T5_LENGTHS = (256, 512)  # diffusers' default max_sequence_length, and SD3's longest
FLUX_T5_LENGTH = 512  # FluxPipeline's own max_sequence_length: its window, always
Pieces = tuple[tuple[str, float], ...]
Chunk = tuple[list[int], list[float]]  # a chunk's tokens and weights, without BOS/EOS


@dataclass(frozen=True)
class Side:
    """One text (a prompt or a negative prompt), tokenized for each of the pipeline's encoders."""

    text: str
    pieces: Pieces
    clip: tuple[list[Chunk], ...]  # per CLIP tokenizer
    t5: Chunk | None  # T5's tokens (with its EOS) when the pipeline has T5

    @property
    def chunks(self) -> int:
        """CLIP chunks this text needs (1 for families whose CLIP reads no chunks)."""
        return max((len(each) for each in self.clip), default=1)

    flux: bool = False  # FLUX: T5 always reads its one 512-token window

    @property
    def t5_length(self) -> int:
        """T5 window this text needs."""
        if self.flux:
            return FLUX_T5_LENGTH
        needed = len(self.t5[0]) if self.t5 else 0
        return next((size for size in T5_LENGTHS if needed <= size), T5_LENGTHS[-1])

    @property
    def plain(self) -> bool:
        """No syntax, and short enough for the pipeline's own encoding."""
        fits = self.chunks == 1 and (self.flux or self.t5_length == T5_LENGTHS[0])
        return fits and is_plain(self.text, [list(p) for p in self.pieces])

    @property
    def plain_text(self) -> str:
        """The text without its syntax (what CLIP pools for FLUX)."""
        return "".join(text for text, weight in self.pieces if (text, weight) != BREAK)


@dataclass(frozen=True)
class TextPlan:
    """One image's prompt and negative prompt, tokenized."""

    positive: Side
    negative: Side | None  # None: no negative prompt (each family's own unconditional input)

    def shape(self) -> tuple[int, int]:
        """(CLIP chunks, T5 length) this image needs."""
        sides = [self.positive] + ([self.negative] if self.negative else [])
        return max(s.chunks for s in sides), max(s.t5_length for s in sides)

    def plain(self, family: Family, clip_skip: int | None) -> bool:
        """Whether the pipeline's own encode_prompt draws exactly this."""
        sides = [self.positive] + ([self.negative] if self.negative else [])
        return skip.effective(family, clip_skip) is None and all(s.plain for s in sides)

    def key(self) -> tuple:
        """What the embeddings depend on in the text: the parsed pieces, not the spelling."""
        return self.positive.pieces, self.negative.pieces if self.negative else None


def plan(pipeline: Any, family: Family, prompt: str, negative: str | None) -> TextPlan:
    """`prompt` and `negative` parsed and tokenized for `pipeline`."""
    return TextPlan(
        _side(pipeline, family, prompt), _side(pipeline, family, negative) if negative else None
    )


def _side(pipeline: Any, family: Family, text: str) -> Side:
    pieces = tuple((str(t), float(w)) for t, w in check(text))
    clip = tuple(
        _chunks(pipeline, tokenizer, pieces) for tokenizer in _clip_tokenizers(pipeline, family)
    )
    t5 = None
    if family is Family.SD3 and getattr(pipeline, "text_encoder_3", None) is not None:
        t5 = _t5_tokens(pipeline, pipeline.tokenizer_3, pieces, T5_LENGTHS[-1])
    elif family is Family.FLUX:
        t5 = _t5_tokens(pipeline, pipeline.tokenizer_2, pieces, FLUX_T5_LENGTH)
    return Side(text, pieces, clip, t5, flux=family is Family.FLUX)


def _clip_tokenizers(pipeline: Any, family: Family) -> list[Any]:
    if family is Family.SD:
        return [pipeline.tokenizer]
    if family in (Family.SDXL, Family.SD3):
        return [pipeline.tokenizer, pipeline.tokenizer_2]
    return []  # FLUX pools its CLIP on plain text; PixArt-Σ and Sana have no CLIP


def _tokenize(pipeline: Any, tokenizer: Any, pieces: Pieces) -> list[list[int]]:
    texts = [text for text, _ in pieces]
    convert = getattr(pipeline, "maybe_convert_prompt", None)  # textual inversion's tokens
    if convert is not None:
        texts = [convert(text, tokenizer) for text in texts]
    return tokenizer(texts, truncation=False, add_special_tokens=False)["input_ids"]


def _chunks(pipeline: Any, tokenizer: Any, pieces: Pieces) -> list[Chunk]:
    """AUTOMATIC1111's tokenize_line: the pieces' tokens cut into chunks."""
    length = tokenizer.model_max_length - 2
    comma = tokenizer.convert_tokens_to_ids(",</w>")
    if comma == tokenizer.unk_token_id:
        comma = None
    chunks: list[Chunk] = []
    tokens: list[int] = []
    weights: list[float] = []
    last_comma = -1
    for ids, (text, weight) in zip(_tokenize(pipeline, tokenizer, pieces), pieces, strict=True):
        if text == "BREAK" and weight == -1:
            chunks.append((tokens, weights))
            tokens, weights, last_comma = [], [], -1
            continue
        for token in ids:
            if token == comma:
                last_comma = len(tokens)
            elif (
                len(tokens) == length
                and last_comma != -1
                and length - last_comma <= COMMA_BACKTRACK
            ):
                # Words after a nearby comma go to the next chunk whole, not split in two.
                split = last_comma + 1
                chunks.append((tokens[:split], weights[:split]))
                tokens, weights, last_comma = tokens[split:], weights[split:], -1
            if len(tokens) == length:
                chunks.append((tokens, weights))
                tokens, weights, last_comma = [], [], -1
            tokens.append(token)
            weights.append(weight)
    if tokens or not chunks:
        chunks.append((tokens, weights))
    return chunks


def _t5_tokens(pipeline: Any, tokenizer: Any, pieces: Pieces, window: int) -> Chunk:
    tokens: list[int] = []
    weights: list[float] = []
    for ids, (text, weight) in zip(_tokenize(pipeline, tokenizer, pieces), pieces, strict=True):
        if text == "BREAK" and weight == -1:
            continue  # one window: nothing to break
        tokens += ids
        weights += [weight] * len(ids)
    limit = window - 1
    return [*tokens[:limit], tokenizer.eos_token_id], [*weights[:limit], 1.0]


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
    empty = text.negative or _side(pipeline, family, "")
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
