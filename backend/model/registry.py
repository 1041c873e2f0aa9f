"""Which model a setting names, and whether its folder is one the server can load.

Pure Python on purpose: a broken folder is reported within milliseconds of start-up, before
torch is even imported, and nothing here can reach the network.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from backend.config import ROOT, resolve_path
from backend.model import single_file
from backend.model.catalogue import FAMILY_DEFAULTS, Family, ModelName, ModelSpec
from backend.model.errors import ModelFolderError

PIPELINE_FAMILIES: dict[str, Family] = {
    "StableDiffusionPipeline": Family.SD,
    "StableDiffusionXLPipeline": Family.SDXL,
    "StableDiffusion3Pipeline": Family.SD3,  # SD3.5 too
    "FluxPipeline": Family.FLUX,
    "PixArtSigmaPipeline": Family.PIXART,
    "SanaPipeline": Family.SANA,
    # Dedicated inpainting checkpoints (9-channel UNets): loaded like their family's txt2img
    # pipeline, they serve inpainting requests (task_pipelines.py).
    "StableDiffusionInpaintPipeline": Family.SD,
    "StableDiffusionXLInpaintPipeline": Family.SDXL,
}
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
# Components that carry no weights; every other component folder with a config must have some.
_WEIGHTLESS_MARKERS = ("Tokenizer", "Scheduler", "FeatureExtractor", "ImageProcessor")


@dataclass(frozen=True)
class ModelFolder:
    """What inspecting a model folder found: enough to load it without guessing."""

    path: Path
    pipeline_class: str
    family: Family
    variant: str | None  # "fp16" when only `*.fp16.safetensors` files are present
    absent: tuple[str, ...] = ()  # components to load as None: null in the index, or dropped


def display_path(path: Path) -> str:
    """A folder as operators know it: relative to the repository when inside it."""
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def resolve_model(value: str, models_dir: Path) -> ModelSpec:
    """The spec `value` names: a catalogue name, a folder or file in `models_dir`, or a path."""
    checkpoint = single_file.resolve_checkpoint(value, models_dir)
    if checkpoint is not None:
        return checkpoint
    try:
        return ModelName(value).spec(models_dir)
    except ValueError:
        pass
    is_bare_name = "/" not in value and "\\" not in value and value not in (".", "..")
    folder = models_dir / value if is_bare_name else resolve_path(value)
    try:
        # `/app/models/sd-turbo` is the catalogue's sd-turbo in another place: same defaults.
        return replace(ModelName(folder.name).spec(models_dir), folder=folder)
    except ValueError:
        pass
    family = _family_from_index(folder) or Family.SD
    defaults = FAMILY_DEFAULTS[family]
    native = _native_size(folder)
    if native:
        defaults = replace(defaults, width=native, height=native)
    return ModelSpec(folder.name, folder, family, defaults)


# SD3's T5 encoder is optional: without it SD3 needs ~10 GB less and prompts lose some detail.
SD3_T5_COMPONENTS = ("text_encoder_3", "tokenizer_3")


def inspect_folder(spec: ModelSpec, drop_t5: bool = False) -> ModelFolder:
    """Check that `spec.folder` is a loadable diffusers folder with safetensors weights (or
    `spec` a loadable single-file checkpoint: a CheckpointFolder, ModelFolder's duck twin)."""
    if isinstance(spec, single_file.CheckpointSpec):
        return single_file.inspect_single_file(spec, drop_t5)  # type: ignore[return-value]
    path, shown = spec.folder, display_path(spec.folder)
    if not path.is_dir():
        what = "is not a folder" if path.exists() else "does not exist"
        raise ModelFolderError(f"Model folder '{shown}' {what}. {_how_to_get(spec)}")
    index = _read_index(path)
    if index is None:
        raise ModelFolderError(
            f"Model folder '{shown}' has no readable model_index.json, so it is not a diffusers "
            f"model folder. {_how_to_get(spec)}"
        )
    pipeline_class = str(index.get("_class_name", ""))
    family = PIPELINE_FAMILIES.get(pipeline_class)
    if family is None:
        supported = ", ".join(PIPELINE_FAMILIES)
        raise ModelFolderError(
            f"Model folder '{shown}' holds a '{pipeline_class or 'unknown'}' pipeline, which is "
            f"not a text-to-image pipeline this server serves (supported: {supported})."
        )
    dropped = SD3_T5_COMPONENTS if drop_t5 and family is Family.SD3 else ()
    absent = tuple(
        name
        for name, entry in index.items()
        if name in dropped or (isinstance(entry, list) and entry and entry[0] is None)
    )
    variant = _check_weights(path, index, shown, skip=absent)
    return ModelFolder(path, pipeline_class, family, variant, absent)


# The AutoencoderTiny (TAESD) folder in MODELS_DIR each family decodes with when TINY_VAE=true.
# PixArt-Σ decodes with SDXL's VAE; Sana's DC-AE has no tiny twin.
TINY_VAE_FOLDERS = {
    Family.SD: "taesd",
    Family.SDXL: "taesdxl",
    Family.SD3: "taesd3",
    Family.FLUX: "taef1",
    Family.PIXART: "taesdxl",
}


def check_tiny_vae(family: Family, models_dir: Path) -> Path:
    """The family's tiny VAE folder, if it holds safetensors weights; ModelFolderError if not."""
    if family not in TINY_VAE_FOLDERS:
        raise ModelFolderError(
            f"TINY_VAE=true, but there is no tiny VAE for {family.value} models. "
            "Set TINY_VAE=false."
        )
    folder = models_dir / TINY_VAE_FOLDERS[family]
    if not (folder / "config.json").is_file() or not any(folder.glob("*.safetensors")):
        raise ModelFolderError(
            f"TINY_VAE=true, but '{display_path(folder)}' has no tiny VAE (config.json and "
            f"*.safetensors of an AutoencoderTiny). Put the {family.value} one there (for "
            f"example madebyollin/{TINY_VAE_FOLDERS[family]}), or set TINY_VAE=false."
        )
    return folder


def _how_to_get(spec: ModelSpec) -> str:
    if spec.name == ModelName.DEMO.value:
        return "Generate the demo model with `make demo-model`."
    source = f" (for example from {spec.source})" if spec.source else ""
    return (
        "Put a diffusers model folder there, with model_index.json and *.safetensors weights"
        f"{source}, or set DEFAULT_MODEL to a folder that has one."
    )


def _read_index(path: Path) -> dict | None:
    try:
        index = json.loads((path / "model_index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return index if isinstance(index, dict) else None


# The SDXL refiner's pipeline: it only finishes what a base model began (`refiner`), so its
# folder is not a model requests may name.
REFINER_CLASS = "StableDiffusionXLImg2ImgPipeline"


def is_refiner_folder(path: Path) -> bool:
    """Whether `path` holds an SDXL refiner (model_index.json of a REFINER_CLASS)."""
    index = _read_index(path)
    return index is not None and index.get("_class_name") == REFINER_CLASS


def _family_from_index(path: Path) -> Family | None:
    index = _read_index(path)
    return PIPELINE_FAMILIES.get(str(index.get("_class_name"))) if index else None


def _native_size(path: Path) -> int | None:
    """The size a model was trained at: its denoiser's sample size times the VAE's scale."""
    try:
        vae = json.loads((path / "vae" / "config.json").read_text(encoding="utf-8"))
        for denoiser in ("unet", "transformer"):
            config_path = path / denoiser / "config.json"
            if config_path.is_file():
                sample_size = json.loads(config_path.read_text(encoding="utf-8"))["sample_size"]
                # Sana's DC-AE names its levels per half: the encoder's count as well.
                levels = vae.get("block_out_channels") or vae["encoder_block_out_channels"]
                return int(sample_size) * 2 ** (len(levels) - 1)
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def _check_weights(path: Path, index: dict, shown: str, skip: tuple[str, ...]) -> str | None:
    """Every weight-bearing component must have safetensors; returns the variant to load."""
    variant = None
    for component, entry in index.items():
        if component.startswith("_") or not isinstance(entry, list) or component in skip:
            continue
        folder = path / component
        if not folder.is_dir():
            hint = (
                " For SD3 without T5, set SD3_DROP_T5=true."
                if component in SD3_T5_COMPONENTS
                else ""
            )
            raise ModelFolderError(
                f"Model folder '{shown}' has no '{component}' folder, which model_index.json "
                f"lists. The download looks incomplete.{hint}"
            )
        if not (folder / "config.json").is_file() or any(
            marker in str(entry[-1]) for marker in _WEIGHTLESS_MARKERS
        ):
            continue
        files = [f.name for f in folder.iterdir() if f.is_file()]
        safetensors = [name for name in files if name.endswith(".safetensors")]
        if not safetensors:
            pickles = [name for name in files if name.endswith(PICKLE_SUFFIXES)]
            if pickles:
                raise ModelFolderError(
                    f"Model folder '{shown}' has only pickle weights for '{component}' "
                    f"({', '.join(sorted(pickles))}). This server loads safetensors only, because "
                    "pickle files can run code when loaded: download the .safetensors files of "
                    "the model instead."
                )
            raise ModelFolderError(
                f"Model folder '{shown}' has no weights for '{component}': expected "
                f"{component}/*.safetensors. The download looks incomplete."
            )
        if all(".fp16." in name for name in safetensors):
            variant = "fp16"
    return variant
