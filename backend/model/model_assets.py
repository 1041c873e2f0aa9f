"""Embeddings and VAEs of one loaded model: loaded on first use, applied for one call.

Only the device worker's thread calls this (as it alone runs the pipelines). Embeddings are
loaded when a prompt first uses their token and stay loaded with the model (they are a few KB);
VAEs are loaded once, a few kept per model, and swapped in for a call only: the model's own is
back in place when the call ends, whatever happened, so a request naming none gets exactly the
images a server that never swapped would draw.
"""

from __future__ import annotations

import contextlib
import logging
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backend.config import Settings
from backend.model import asset_files, embedding_files, vae_files
from backend.model.catalogue import ModelSpec
from backend.model.errors import ModelUnavailableError
from backend.model.pipeline_call import LoadedModel
from backend.model.tensor_files import load_tensors
from backend.model.types import GenerationRequest

log = logging.getLogger(__name__)

MAX_VAES_PER_MODEL = 2  # VAEs kept loaded per model beside its own (least recently used out)


@dataclass
class ModelAssets:
    """What one loaded model has taken on beyond its folder."""

    embeddings: dict[str, embedding_files.EmbeddingFile] = field(default_factory=dict)
    refused: set[str] = field(default_factory=set)  # embeddings that failed to load: not retried
    vaes: OrderedDict[str, Any] = field(default_factory=OrderedDict)
    _files: dict[Path, tuple[tuple[int, int], embedding_files.EmbeddingFile]] = field(
        default_factory=dict
    )

    def embedding_files(self, folder: Path) -> list[embedding_files.EmbeddingFile]:
        """EMBEDDINGS_DIR's files, each header read again only when its file changed."""
        found = []
        for path in asset_files.entries(folder):  # the names and files the API process sees
            if path.suffix != ".safetensors":
                continue
            try:
                stat = path.stat()
            except OSError:
                continue
            stamp = (stat.st_mtime_ns, stat.st_size)
            known = self._files.get(path)
            if known is None or known[0] != stamp:
                known = self._files[path] = (stamp, embedding_files.read_embedding(path))
            found.append(known[1])
        return found


@contextlib.contextmanager
def prepared(
    model: LoadedModel, spec: ModelSpec, requests: Sequence[GenerationRequest], settings: Settings
) -> Iterator[None]:
    """The model ready for `requests` (one batch): their embeddings loaded, their VAE in place."""
    if model.assets is None:
        model.assets = ModelAssets()
    load_embeddings(model, requests, settings.assets.embeddings_dir)
    name = requests[0].vae  # batch_key: one VAE per batch
    if name is None:
        yield
        return
    pipeline = model.pipeline
    own = pipeline.vae
    pipeline.vae = _vae(model, spec, name, settings)
    try:
        yield
    finally:
        pipeline.vae = own


def load_embeddings(
    model: LoadedModel, requests: Sequence[GenerationRequest], folder: Path
) -> list[str]:
    """Load the embeddings the requests' prompts use and the model lacks; returns their names."""
    assets: ModelAssets = model.assets
    pipeline = model.pipeline
    if model.family not in embedding_files.ENCODERS:
        return []
    texts = [text for each in requests for text in (each.prompt, each.negative_prompt) if text]
    encoders = [getattr(pipeline, name) for name in embedding_files.ENCODERS[model.family]]
    widths = tuple(encoder.config.hidden_size for encoder in encoders)
    loaded = []
    for embedding in assets.embedding_files(folder):
        name = embedding.name
        if name in assets.embeddings or name in assets.refused:
            continue
        if not embedding_files.fits(embedding, widths) or not any(map(embedding.used_in, texts)):
            continue
        try:
            _load_embedding(pipeline, model.family, embedding)
        except Exception as error:  # a token already in the vocabulary, a corrupt file
            log.warning("embedding %s could not be loaded: %s", name, error)
            assets.refused.add(name)
            continue
        assets.embeddings[name] = embedding
        loaded.append(name)
        log.info("embedding %s loaded (%d vectors)", name, embedding.vectors)
    if loaded and model.prompts is not None:
        # The same prompt text now means something else: no embedding cached before may serve.
        model.prompts.clear()
    return loaded


def _load_embedding(pipeline: Any, family: Any, embedding: embedding_files.EmbeddingFile) -> None:
    weights = load_tensors(embedding.path)
    tokenizers = ("tokenizer", "tokenizer_2")
    # SDXL: once per text encoder and its tokenizer, each with its own part of the file.
    for key, encoder, tokenizer in zip(
        embedding.keys, embedding_files.ENCODERS[family], tokenizers, strict=False
    ):
        pipeline.load_textual_inversion(
            {embedding.name: weights[key]},
            token=embedding.name,
            text_encoder=getattr(pipeline, encoder),
            tokenizer=getattr(pipeline, tokenizer),
        )


def _vae(model: LoadedModel, spec: ModelSpec, name: str, settings: Settings) -> Any:
    """The loaded VAE `name` for `model`, loading it (and unloading the least recently used)."""
    assets: ModelAssets = model.assets
    if name in assets.vaes:
        assets.vaes.move_to_end(name)
        return assets.vaes[name]
    found = vae_files.find(settings.assets.vaes_dir, name)
    problem = None if found is None else vae_files.misfit(found, spec)
    if found is None or problem is not None:
        # The API process checked it; this worker's VAES_DIR differs, or it changed since.
        raise ModelUnavailableError(problem or f"VAE '{name}' is not in this worker's VAES_DIR.")
    while len(assets.vaes) >= MAX_VAES_PER_MODEL:
        assets.vaes.popitem(last=False)
    vae = _load_vae(model.pipeline, spec, found)
    assets.vaes[name] = vae
    log.info("VAE %s loaded for model %s", name, spec.name)
    return vae


def _load_vae(pipeline: Any, spec: ModelSpec, found: vae_files.VaeFile) -> Any:
    from diffusers import AutoencoderKL

    from backend.model.loader import _LOADING  # diffusers' loading is not thread-safe

    own = pipeline.vae
    try:
        with _LOADING:
            if found.is_folder:
                vae = AutoencoderKL.from_pretrained(
                    found.path, local_files_only=True, use_safetensors=True, dtype=own.dtype
                )
            else:
                # The weights alone: the architecture is the model's own VAE's.
                vae = AutoencoderKL.from_single_file(
                    str(found.path),
                    config=str(spec.folder),
                    subfolder="vae",
                    local_files_only=True,
                    dtype=own.dtype,
                )
    except Exception as error:
        log.exception("loading VAE %s failed", found.name)
        raise ModelUnavailableError(
            f"VAE '{found.name}' failed to load ({type(error).__name__}); the server log has "
            "the details."
        ) from None
    vae.use_slicing = getattr(own, "use_slicing", False)
    # With CPU offload the model's own VAE visits the device per call; this small one stays.
    return vae.to(pipeline._execution_device).eval()
