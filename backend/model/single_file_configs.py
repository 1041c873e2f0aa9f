"""Which local folder of configs a single-file checkpoint is built from, and what to fetch if none.

A checkpoint holds weights only; diffusers builds the pipeline from a folder of the family's
small config files. A candidate must be of the checkpoint's pipeline class and its configs must
fit the file's tensor shapes: a folder of another size (the trained demo beside an SD 1.5 file,
say) would build a pipeline the weights do not fit.
"""

from __future__ import annotations

import json
from pathlib import Path

from backend.config import ROOT
from backend.model.catalogue import Family
from backend.model.checkpoint_file import CheckpointKind, read_header
from backend.model.checkpoint_flux import flux_misfit
from backend.model.errors import ModelFolderError

CONFIGS = "configs"  # MODELS_DIR/configs/<kind>/: the families' config folders
# Where each kind's config files come from (the diffusers repository of that model).
CONFIG_REPOS = {
    "sd1": "stable-diffusion-v1-5/stable-diffusion-v1-5",
    "sd2": "stabilityai/stable-diffusion-2-1",
    "sdxl": "stabilityai/stable-diffusion-xl-base-1.0",
    "sd3": "stabilityai/stable-diffusion-3-medium-diffusers",
    "sd3.5-medium": "stabilityai/stable-diffusion-3.5-medium",
    "sd3.5-large": "stabilityai/stable-diffusion-3.5-large",
    "flux-dev": "black-forest-labs/FLUX.1-dev",
    "flux-schnell": "black-forest-labs/FLUX.1-schnell",
}
# The configs and tokenizer files of a diffusers repository, without any weights (~2 MB).
CONFIG_FILES = ("model_index.json", "*/*.json", "*/*.txt", "*/*.model")


def display_path(path: Path) -> str:
    """A path as operators know it: relative to the repository when inside it."""
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def find_config(path: Path, name: str, models_dir: Path, kind: CheckpointKind) -> Path:
    """The config folder for checkpoint `path` (model `name`); ModelFolderError saying what to
    fetch, and where, when there is none."""
    root = models_dir
    named = [root / CONFIGS / name, root / CONFIGS / kind.kind]
    folders = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    tensors = read_header(path)
    misfits = []
    for candidate in [*named, *folders]:
        if _pipeline_class(candidate) != kind.pipeline_class:
            if candidate in named and candidate.is_dir():
                misfits.append(f"'{display_path(candidate)}' is not a {kind.kind} config folder")
            continue
        problem = (
            flux_misfit(candidate, tensors, kind)
            if kind.family is Family.FLUX
            else _misfit(candidate, tensors)
        )
        if problem is None:
            return candidate
        if candidate in named:
            misfits.append(f"'{display_path(candidate)}' does not fit it ({problem})")
    repo = CONFIG_REPOS[kind.kind]
    target = display_path(root / CONFIGS / kind.kind)
    patterns = [*CONFIG_FILES, *(f"{component}/*" for component in kind.missing)]
    includes = " ".join(f'--include "{pattern}"' for pattern in patterns)
    found = f" ({'; '.join(misfits)})" if misfits else ""
    what = (
        "the family's config files and the weights of the parts the file lacks ("
        f"{', '.join(kind.missing)}: about 10 GB)"
        if kind.missing
        else "the family's small config files once (no weights, a few MB)"
    )
    return _raise(
        f"Checkpoint '{path.name}' is {kind.kind}, and no config folder for it was "
        f"found{found}. Fetch {what}: `hf download {repo} {includes} --local-dir {target}`."
    )


def _raise(message: str) -> Path:
    raise ModelFolderError(message)


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _pipeline_class(folder: Path) -> str | None:
    return _read_json(folder / "model_index.json").get("_class_name")


def _shape(tensors: dict[str, dict], name: str) -> list[int] | None:
    entry = tensors.get(name) or tensors.get("model.diffusion_model." + name)
    return entry["shape"] if entry else None


def _misfit(folder: Path, tensors: dict[str, dict]) -> str | None:
    """Why `folder`'s configs do not describe the checkpoint's tensors (None: they do)."""
    vae = _read_json(folder / "vae" / "config.json")
    channels = vae.get("block_out_channels") or [None]
    expected = {
        "first_stage_model.encoder.conv_in.weight": channels[0],
        "first_stage_model.decoder.conv_in.weight": channels[-1],
    }
    unet = _read_json(folder / "unet" / "config.json")
    if unet:
        blocks = unet.get("block_out_channels") or [None]
        expected["model.diffusion_model.input_blocks.0.0.weight"] = blocks[0]
        expected["model.diffusion_model.out.2.weight"] = unet.get("out_channels")
        problem = _unet_misfit(unet, tensors)
        if problem:
            return problem
    transformer = _read_json(folder / "transformer" / "config.json")
    if transformer:
        heads, head_dim = (
            transformer.get("num_attention_heads"),
            transformer.get("attention_head_dim"),
        )
        expected["x_embedder.proj.weight"] = heads * head_dim if heads and head_dim else None
        depth = sum(1 for name in tensors if name.endswith("x_block.mlp.fc1.weight"))
        if depth != transformer.get("num_layers"):
            return f"{depth} transformer blocks, the config says {transformer.get('num_layers')}"
    for name, want in expected.items():
        shape = _shape(tensors, name) if not name.startswith("first") else _vae_shape(tensors, name)
        if shape is not None and shape[0] != want:
            return f"{name} has {shape[0]} channels, the config says {want}"
    return None


def _unet_misfit(unet: dict, tensors: dict[str, dict]) -> str | None:
    """A mismatch in cross-attention width or in block count between `unet` and the file."""
    prefix = "model.diffusion_model."
    context = next(
        (
            e["shape"]
            for n, e in tensors.items()
            if n.startswith(prefix) and n.endswith("attn2.to_k.weight")
        ),
        None,
    )
    want = unet.get("cross_attention_dim")
    if context is not None and isinstance(want, int) and context[-1] != want:
        return f"cross-attention width {context[-1]}, the config says {want}"
    layers, blocks = unet.get("layers_per_block"), unet.get("block_out_channels")
    inputs = {n.split(".")[3] for n in tensors if n.startswith(prefix + "input_blocks.")}
    if isinstance(layers, int) and blocks and len(inputs) != len(blocks) * (layers + 1):
        return f"{len(inputs)} input blocks, the config implies {len(blocks) * (layers + 1)}"
    return None


def _vae_shape(tensors: dict[str, dict], name: str) -> list[int] | None:
    entry = tensors.get(name) or tensors.get(name.replace("first_stage_model.", "vae.", 1))
    return entry["shape"] if entry else None


def native_size(folder: Path) -> int | None:
    """The size the config folder's model was trained at (latent sample size x VAE scale)."""
    vae = _read_json(folder / "vae" / "config.json")
    for denoiser in ("unet", "transformer"):
        config = _read_json(folder / denoiser / "config.json")
        try:
            return int(config["sample_size"]) * 2 ** (len(vae["block_out_channels"]) - 1)
        except (KeyError, TypeError, ValueError):
            continue
    return None
