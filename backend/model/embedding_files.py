"""Textual-inversion embeddings in EMBEDDINGS_DIR, found and described without torch.

An embedding's name is its file's stem, and that name is the token a prompt uses. Three layouts
are read: AUTOMATIC1111's (`emb_params`), diffusers' (one tensor named after the token) and
SDXL's (`clip_l` and `clip_g`, one per text encoder). Whether one fits a model is decided by
vector width: each must match the hidden size of the text encoder it extends.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from backend.model import asset_files
from backend.model.catalogue import Family, ModelSpec

# The text encoders an embedding extends, per family: SD has one CLIP, SDXL two.
ENCODERS = {Family.SD: ("text_encoder",), Family.SDXL: ("text_encoder", "text_encoder_2")}
# SDXL files name their two parts after the encoders' CLIP models.
SDXL_KEYS = ("clip_l", "clip_g")


@dataclass(frozen=True)
class EmbeddingFile:
    """One embedding file: its token, its vectors per text encoder, what its metadata says."""

    name: str
    path: Path
    shapes: tuple[tuple[int, int], ...] = ()  # (vectors, width) per text encoder, in order
    keys: tuple[str, ...] = ()  # the tensor for each text encoder, in the same order
    step: int | None = None
    sd_checkpoint: str | None = None
    sd_checkpoint_name: str | None = None
    problem: str | None = None  # why it cannot be used at all (unreadable, unknown layout)

    @property
    def vectors(self) -> int:
        """Tokens' worth of vectors the embedding stands for."""
        return self.shapes[0][0] if self.shapes else 0

    @property
    def widths(self) -> tuple[int, ...]:
        """The vector width for each text encoder it extends."""
        return tuple(width for _, width in self.shapes)

    def used_in(self, text: str) -> bool:
        """Whether `text` names this embedding as a word of its own."""
        return re.search(rf"(?<![\w.-]){re.escape(self.name)}(?![\w-])", text) is not None


@dataclass
class EmbeddingListing:
    """Embeddings by whether they fit one model (AUTOMATIC1111's loaded / skipped)."""

    fitting: list[EmbeddingFile] = field(default_factory=list)
    skipped: list[EmbeddingFile] = field(default_factory=list)


def read_embedding(path: Path) -> EmbeddingFile:
    """Describe one `.safetensors` embedding file from its header."""
    name = path.stem
    try:
        header = asset_files.read_header(path)
    except asset_files.HeaderError as error:
        return EmbeddingFile(name, path, problem=str(error))
    shapes = asset_files.tensors(header)
    if all(key in shapes for key in SDXL_KEYS):
        keys: tuple[str, ...] = SDXL_KEYS
    elif "emb_params" in shapes:
        keys = ("emb_params",)
    elif len(shapes) == 1:
        keys = (next(iter(shapes)),)
    else:
        return EmbeddingFile(name, path, problem="not a textual-inversion embedding layout")
    matrices = tuple(_matrix(shapes[key]) for key in keys)
    if any(m is None for m in matrices) or len({m[0] for m in matrices if m}) != 1:
        return EmbeddingFile(name, path, problem="its tensors are not (vectors, width) matrices")
    info = asset_files.metadata(header)
    step = info.get("step", "")
    return EmbeddingFile(
        name,
        path,
        shapes=tuple(m for m in matrices if m),
        keys=keys,
        step=int(step) if step.isdigit() else None,
        sd_checkpoint=info.get("sd_checkpoint") or None,
        sd_checkpoint_name=info.get("sd_checkpoint_name") or None,
    )


def _matrix(shape: list[int]) -> tuple[int, int] | None:
    if len(shape) == 1:
        return 1, shape[0]  # one vector saved flat (diffusers' single-token files)
    if len(shape) == 2:
        return shape[0], shape[1]
    return None


def embedding_files(folder: Path) -> list[EmbeddingFile]:
    """Every `.safetensors` embedding in `folder`, by name (pickle files are never read)."""
    return [
        read_embedding(path)
        for path in asset_files.entries(folder)
        if path.suffix == ".safetensors" and path.is_file()
    ]


def encoder_widths(spec: ModelSpec) -> tuple[int, ...]:
    """The hidden size of each text encoder a model's embeddings extend; () if it takes none."""
    widths = []
    for encoder in ENCODERS.get(spec.family, ()):
        config = asset_files.read_json(spec.folder / encoder / "config.json") or {}
        width = config.get("hidden_size")
        if not isinstance(width, int):
            return ()
        widths.append(width)
    return tuple(widths)


def fits(embedding: EmbeddingFile, widths: tuple[int, ...]) -> bool:
    """Whether `embedding` extends text encoders of exactly these widths."""
    return embedding.problem is None and bool(widths) and embedding.widths == widths


def listing(folder: Path, spec: ModelSpec) -> EmbeddingListing:
    """The embeddings of `folder`, split by whether they fit `spec`'s text encoders."""
    widths = encoder_widths(spec)
    found = EmbeddingListing()
    for embedding in embedding_files(folder):
        (found.fitting if fits(embedding, widths) else found.skipped).append(embedding)
    return found
