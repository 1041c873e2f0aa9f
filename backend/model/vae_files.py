"""VAEs in VAES_DIR, found, named and checked against a model without torch.

A VAE is either a single `.safetensors` file (original or diffusers layout; loaded with the
model's own VAE config) or a diffusers folder (config.json and safetensors weights). Requests
name one by its file or folder name, or by its file's stem.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from backend.model import asset_files
from backend.model.catalogue import ModelSpec

# What requests send for "no VAE of VAES_DIR": AUTOMATIC1111's "None" always means the model's
# own; "Automatic" (and null) means the server's choice, DEFAULT_VAE where one is set.
OWN_VAE = "none"
AUTOMATIC_VAE = "automatic"
FOLDER_CLASSES = ("AutoencoderKL",)


@dataclass(frozen=True)
class VaeFile:
    """One VAE of VAES_DIR."""

    name: str  # the file or folder name, relative to VAES_DIR: what listings show
    path: Path
    is_folder: bool
    latent_channels: int | None  # None: unreadable
    scale_levels: int | None = (
        None  # a folder's own len(block_out_channels); a file uses the model's
    )

    @property
    def model_name(self) -> str:
        """The name without `.safetensors`, as AUTOMATIC1111 lists it."""
        return self.name.removesuffix(".safetensors")


def vae_files(folder: Path) -> list[VaeFile]:
    """Every usable VAE in `folder` (pickle files are left out: they are never loaded)."""
    found = []
    for path in asset_files.entries(folder):
        if path.is_dir():
            config = asset_files.read_json(path / "config.json")
            if config is None or not any(path.glob("*.safetensors")):
                continue
            if config.get("_class_name") not in FOLDER_CLASSES:
                continue
            blocks = config.get("block_out_channels")
            levels = len(blocks) if isinstance(blocks, list) else None
            channels = config.get("latent_channels", 4)
            found.append(VaeFile(path.name, path, True, _int(channels), levels))
        elif path.suffix == ".safetensors" and path.is_file():
            found.append(VaeFile(path.name, path, False, _file_channels(path)))
    return found


def _int(value: object) -> int | None:
    return value if isinstance(value, int) else None


def _file_channels(path: Path) -> int | None:
    """Latent channels of a single-file VAE: its decoder's first convolution takes them."""
    try:
        shapes = asset_files.tensors(asset_files.read_header(path))
    except asset_files.HeaderError:
        return None
    for name, shape in shapes.items():
        # The same key in both layouts, with a prefix when cut from a whole checkpoint.
        if name.endswith("decoder.conv_in.weight") and len(shape) == 4:
            return shape[1]
    return None


def find(folder: Path, name: str) -> VaeFile | None:
    """The VAE a request names: by its file or folder name, or a file's name without suffix."""
    for vae in vae_files(folder):
        if name in (vae.name, vae.model_name):
            return vae
    return None


def names(folder: Path) -> list[str]:
    """What requests may name (for error messages)."""
    return [vae.name for vae in vae_files(folder)]


def model_vae_config(spec: ModelSpec) -> dict:
    """The model's own VAE config (empty if unreadable)."""
    return asset_files.read_json(spec.folder / "vae" / "config.json") or {}


def misfit(vae: VaeFile, spec: ModelSpec) -> str | None:
    """Why `vae` cannot decode `spec`'s latents, or None if it can."""
    own = model_vae_config(spec)
    channels = own.get("latent_channels", 4)
    if vae.latent_channels is None:
        return f"VAE '{vae.name}' has no readable decoder weights."
    if vae.latent_channels != channels:
        return (
            f"VAE '{vae.name}' decodes {vae.latent_channels}-channel latents; model "
            f"'{spec.name}' ({spec.family.value}) makes {channels}-channel ones."
        )
    blocks = own.get("block_out_channels")
    if (
        vae.scale_levels is not None
        and isinstance(blocks, list)
        and vae.scale_levels != len(blocks)
    ):
        return f"VAE '{vae.name}' scales images differently from model '{spec.name}''s own VAE."
    return None


def choose(folder: Path, default: str | None, spec: ModelSpec, given: str | None) -> str | None:
    """The VAE a request gets (its canonical name; None: the model's own); ValueError says why
    a named one cannot be used. DEFAULT_VAE applies where it fits, and only when none is named."""
    wanted = (given or "").strip()
    if wanted.lower() == OWN_VAE:
        return None
    if not wanted or wanted.lower() == AUTOMATIC_VAE:
        found = find(folder, default) if default else None
        return found.name if found is not None and misfit(found, spec) is None else None
    found = find(folder, wanted)
    if found is None:
        if any(p.name == wanted and asset_files.is_pickle(p) for p in asset_files.entries(folder)):
            raise ValueError(
                f"VAE '{wanted}' is a pickle file, which can run code when loaded; this server "
                "loads .safetensors only."
            )
        known = ", ".join(["None", "Automatic", *names(folder)])
        raise ValueError(f"Unknown VAE '{wanted[:64]}'. Known: {known}.")
    problem = misfit(found, spec)
    if problem is not None:
        raise ValueError(problem)
    return found.name
