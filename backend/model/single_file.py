"""Single-file checkpoints as models: their names, their specs, and the config folder each needs.

Torch-free, like the registry: the API process of the scale-out mode lists and checks them too.
A checkpoint holds weights only; diffusers builds the pipeline from a folder of the family's
small config files (model_index.json, */config.json, scheduler and tokenizer files). That folder
is, in order: `MODELS_DIR/configs/<model name>/`, `MODELS_DIR/configs/<kind>/`, or any diffusers
model folder in MODELS_DIR of the same pipeline class whose shapes fit the checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from backend.config import resolve_path
from backend.model.catalogue import FAMILY_DEFAULTS, Family, ModelName, ModelSpec
from backend.model.checkpoint_file import PICKLE_SUFFIXES, CheckpointKind, inspect_checkpoint
from backend.model.errors import ModelFolderError
from backend.model.single_file_configs import display_path, find_config, native_size

SUFFIX = ".safetensors"
SD3_T5_COMPONENTS = ("text_encoder_3", "tokenizer_3")
_VARIANT_MODELS = {"flux-dev": ModelName.FLUX_DEV, "flux-schnell": ModelName.FLUX_SCHNELL}


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
    # A variant with a catalogue entry (FLUX schnell: 4 steps, no guidance) has its defaults.
    variant = _VARIANT_MODELS.get(kind.kind)
    defaults = variant.spec(models_dir).defaults if variant else FAMILY_DEFAULTS[kind.family]
    spec = CheckpointSpec(model_name(path), path, kind.family, defaults, models_dir=models_dir)
    try:
        native = native_size(find_config(path, spec.name, models_dir, kind))
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
    config = find_config(path, spec.name, spec.models_dir, kind)
    absent: tuple[str, ...] = ()
    if kind.family is Family.SD3 and (
        drop_t5 or (not kind.has_t5 and not any((config / "text_encoder_3").glob("*.safetensors")))
    ):
        absent = SD3_T5_COMPONENTS  # T5 neither in the file nor beside the configs: without it
    return CheckpointFolder(path, kind.pipeline_class, kind.family, config, kind, absent=absent)
