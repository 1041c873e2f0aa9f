"""Single-file checkpoints as models: their names, their specs, and the config folder each needs.

Torch-free, like the registry: the API process of the scale-out mode lists and checks them too.
A checkpoint holds weights only; diffusers builds the pipeline from a folder of the family's
small config files (model_index.json, */config.json, scheduler and tokenizer files). That folder
is, in order: `MODELS_DIR/configs/<model name>/`, `MODELS_DIR/configs/<kind>/`, or any diffusers
model folder in MODELS_DIR of the same pipeline class whose shapes fit the checkpoint.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from backend.config import ROOT, resolve_path
from backend.model.catalogue import FAMILY_DEFAULTS, Family, ModelSpec
from backend.model.checkpoint_file import (
    PICKLE_SUFFIXES,
    CheckpointKind,
    inspect_checkpoint,
    read_header,
)
from backend.model.errors import ModelFolderError

SUFFIX = ".safetensors"
CONFIGS = "configs"  # MODELS_DIR/configs/<kind>/: the families' config folders
# Where each kind's config files come from (the diffusers repository of that model).
CONFIG_REPOS = {
    "sd1": "stable-diffusion-v1-5/stable-diffusion-v1-5",
    "sd2": "stabilityai/stable-diffusion-2-1",
    "sdxl": "stabilityai/stable-diffusion-xl-base-1.0",
    "sd3": "stabilityai/stable-diffusion-3-medium-diffusers",
    "sd3.5-medium": "stabilityai/stable-diffusion-3.5-medium",
    "sd3.5-large": "stabilityai/stable-diffusion-3.5-large",
}
# The configs and tokenizer files of a diffusers repository, without any weights (~2 MB).
CONFIG_FILES = ("model_index.json", "*/*.json", "*/*.txt", "*/*.model")
SD3_T5_COMPONENTS = ("text_encoder_3", "tokenizer_3")


@dataclass(frozen=True)
class CheckpointSpec(ModelSpec):
    """A model that is one checkpoint file; `folder` is the file."""

    models_dir: Path = Path()  # where its config folders are looked for


@dataclass(frozen=True)
class CheckpointFolder:
    """What inspecting a checkpoint found: the file, and the config folder to build it from."""

    path: Path  # the .safetensors file
    pipeline_class: str
    family: Family
    config: Path  # a diffusers folder with the family's configs (and maybe weights)
    kind: CheckpointKind
    variant: str | None = None
    absent: tuple[str, ...] = ()  # components to load as None (SD3 without T5)


def display_path(path: Path) -> str:
    """A path as operators know it: relative to the repository when inside it."""
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def is_checkpoint_path(path: Path) -> bool:
    """Whether `path` names a checkpoint file (safetensors or pickle), present or not."""
    return path.suffix.lower() in (SUFFIX, *PICKLE_SUFFIXES)


def checkpoint_path(name: str, models_dir: Path) -> Path | None:
    """The checkpoint file in `models_dir` a bare request name means, if there is one."""
    candidates = [models_dir / name] if is_checkpoint_path(Path(name)) else []
    candidates.append(models_dir / f"{name}{SUFFIX}")
    return next((path for path in candidates if path.is_file()), None)


def model_name(path: Path) -> str:
    """A checkpoint's model name: its file name without `.safetensors`, unless a model folder of
    that name is beside it (the folder keeps the name; the file is then its full file name)."""
    stem = path.name[: -len(SUFFIX)] if path.name.endswith(SUFFIX) else path.name
    return path.name if (path.parent / stem / "model_index.json").is_file() else stem


def listed_names(models_dir: Path) -> list[str]:
    """The model names of the `.safetensors` checkpoints directly in `models_dir` whose layout
    is known (a LoRA dropped there is not listed; requested by name, it is refused naming it)."""
    return [model_name(path) for path in models_dir.glob(f"*{SUFFIX}") if _known(path)]


_KNOWN: dict[tuple[Path, int, int], bool] = {}  # (file, size, mtime) -> layout known


def _known(path: Path) -> bool:
    """Whether `path` is a checkpoint of a known layout; cached, as listings read it often."""
    try:
        stat = path.stat()
    except OSError:
        return False
    key = (path, stat.st_size, stat.st_mtime_ns)
    if key not in _KNOWN:
        try:
            inspect_checkpoint(path)
            _KNOWN[key] = True
        except ModelFolderError:
            _KNOWN[key] = False
    return _KNOWN[key] and path.is_file()


def resolve_checkpoint(value: str, models_dir: Path) -> CheckpointSpec | None:
    """The spec of the checkpoint `value` names (a model name, a file name or a path), or None
    when `value` names no checkpoint file."""
    bare = "/" not in value and "\\" not in value
    if bare and (models_dir / value / "model_index.json").is_file():
        return None  # a model folder keeps its name; its namesake file is `<name>.safetensors`
    path = checkpoint_path(value, models_dir) if bare else resolve_path(value)
    if path is None or not is_checkpoint_path(path) or (path.is_dir()):
        return None
    try:
        kind = inspect_checkpoint(path)
    except ModelFolderError:  # reported when it is loaded, naming the file
        return CheckpointSpec(model_name(path), path, Family.SD, FAMILY_DEFAULTS[Family.SD],
                              models_dir=models_dir)  # fmt: skip
    defaults = FAMILY_DEFAULTS[kind.family]
    spec = CheckpointSpec(model_name(path), path, kind.family, defaults, models_dir=models_dir)
    try:
        native = _native_size(find_config(spec, kind))
    except ModelFolderError:
        native = None
    if native:
        spec = replace(spec, defaults=replace(defaults, width=native, height=native))
    return spec


def inspect_single_file(spec: CheckpointSpec, drop_t5: bool = False) -> CheckpointFolder:
    """Check that `spec`'s checkpoint can be loaded, and find its config folder."""
    path = spec.folder
    if not path.is_file():
        raise ModelFolderError(f"Checkpoint file '{display_path(path)}' does not exist.")
    kind = inspect_checkpoint(path)
    config = find_config(spec, kind)
    absent: tuple[str, ...] = ()
    if kind.family is Family.SD3 and (
        drop_t5 or (not kind.has_t5 and not any((config / "text_encoder_3").glob("*.safetensors")))
    ):
        absent = SD3_T5_COMPONENTS  # T5 neither in the file nor beside the configs: without it
    return CheckpointFolder(path, kind.pipeline_class, kind.family, config, kind, absent=absent)


def find_config(spec: CheckpointSpec, kind: CheckpointKind) -> Path:
    """The config folder for `spec`'s checkpoint; ModelFolderError saying what to fetch."""
    root = spec.models_dir
    named = [root / CONFIGS / spec.name, root / CONFIGS / kind.kind]
    folders = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    tensors = read_header(spec.folder)
    misfits = []
    for candidate in [*named, *folders]:
        if _pipeline_class(candidate) != kind.pipeline_class:
            if candidate in named and candidate.is_dir():
                misfits.append(f"'{display_path(candidate)}' is not a {kind.kind} config folder")
            continue
        problem = _misfit(candidate, tensors)
        if problem is None:
            return candidate
        if candidate in named:
            misfits.append(f"'{display_path(candidate)}' does not fit it ({problem})")
    repo = CONFIG_REPOS[kind.kind]
    target = display_path(root / CONFIGS / kind.kind)
    includes = " ".join(f'--include "{pattern}"' for pattern in CONFIG_FILES)
    found = f" ({'; '.join(misfits)})" if misfits else ""
    return _raise(
        f"Checkpoint '{spec.folder.name}' is {kind.kind}, and no config folder for it was "
        f"found{found}. Fetch the family's small config files once (no weights, a few MB): "
        f"`hf download {repo} {includes} --local-dir {target}`."
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


def _native_size(folder: Path) -> int | None:
    """The size the config folder's model was trained at (latent sample size x VAE scale)."""
    vae = _read_json(folder / "vae" / "config.json")
    for denoiser in ("unet", "transformer"):
        config = _read_json(folder / denoiser / "config.json")
        try:
            return int(config["sample_size"]) * 2 ** (len(vae["block_out_channels"]) - 1)
        except (KeyError, TypeError, ValueError):
            continue
    return None
