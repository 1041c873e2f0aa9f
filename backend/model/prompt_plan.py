"""Prompts parsed and tokenized for a pipeline's encoders: the plan `prompt_weights` encodes.

Pure tokenization (no torch): which chunks of which CLIP window each text takes, as AUTOMATIC1111
cuts them, and the tokens T5 reads. Requests whose plans differ in shape never share a pipeline
call (`pipeline_call`), and the prompt cache keys on a plan's parsed pieces.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from backend.model import clip_skip as skip
from backend.model.catalogue import Family
from backend.model.prompt_syntax import BREAK, check, is_plain

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


def empty_side(pipeline: Any, family: Family) -> Side:
    """The empty text's plan: what an absent negative prompt encodes as."""
    return _side(pipeline, family, "")
