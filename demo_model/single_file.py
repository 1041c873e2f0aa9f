"""Write a diffusers folder as one checkpoint file in the original (non-diffusers) key layout.

The layouts are those community checkpoints use: LDM for SD 1.x/2.x, SGM for SDXL, and
Stability's SD3 layout; the key mapping inverts diffusers' single-file conversion (see
`diffusers/loaders/single_file_utils.py` and the repository's `scripts/convert_diffusers_to_
original_*.py`); FLUX.1 is written in ComfyUI's all-in-one layout, or (`--layout transformer`)
as Black Forest Labs' transformer-only file. Tests use it to check that a single file serves
the same images as its folder.

    python -m demo_model.single_file <diffusers folder> <out.safetensors> [--layout sd2|transformer]
        [--v-pred]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from backend.model.flux_layout import to_original
from demo_model.original_layout import (
    clip_to_hf,
    clip_to_open_clip,
    sd3_transformer_to_original,
    unet_to_ldm,
    vae_to_ldm,
)


def _weights(folder: Path, component: str) -> dict[str, torch.Tensor]:
    files = sorted((folder / component).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{folder / component} has no *.safetensors weights")
    weights: dict[str, torch.Tensor] = {}
    for path in files:
        weights.update(load_file(path))
    return weights


def _config(folder: Path, component: str) -> dict:
    return json.loads((folder / component / "config.json").read_text())


def _prefixed(prefix: str, weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {prefix + name: tensor for name, tensor in weights.items()}


def convert(folder: Path, layout: str | None = None) -> dict[str, torch.Tensor]:
    """The weights of diffusers `folder` in its family's original single-file layout."""
    index = json.loads((folder / "model_index.json").read_text())
    pipeline = index["_class_name"]
    vae = _prefixed(
        "first_stage_model.", vae_to_ldm(_weights(folder, "vae"), _config(folder, "vae"))
    )
    if pipeline == "FluxPipeline":
        return _flux(folder, vae, transformer_only=layout == "transformer")
    if pipeline == "StableDiffusion3Pipeline":
        out = {
            **vae,
            **_prefixed(
                "model.diffusion_model.",
                sd3_transformer_to_original(_weights(folder, "transformer")),
            ),
        }
        for component, name in (("text_encoder", "clip_l"), ("text_encoder_2", "clip_g")):
            out.update(
                _prefixed(
                    f"text_encoders.{name}.transformer.", clip_to_hf(_weights(folder, component))
                )
            )
        if (folder / "text_encoder_3").is_dir() and (index.get("text_encoder_3") or [None])[0]:
            out.update(
                _prefixed("text_encoders.t5xxl.transformer.", _weights(folder, "text_encoder_3"))
            )
        return out
    unet = _prefixed(
        "model.diffusion_model.", unet_to_ldm(_weights(folder, "unet"), _config(folder, "unet"))
    )
    text = _weights(folder, "text_encoder")
    if pipeline == "StableDiffusionXLPipeline":
        return {
            **unet,
            **vae,
            **_prefixed("conditioner.embedders.0.transformer.", clip_to_hf(text)),
            **_prefixed(
                "conditioner.embedders.1.model.",
                clip_to_open_clip(_weights(folder, "text_encoder_2")),
            ),
        }
    if pipeline != "StableDiffusionPipeline":
        raise ValueError(f"{folder} holds a {pipeline}, which has no single-file layout here")
    if layout == "sd2":  # SD 2.x: the text encoder in OpenCLIP's layout
        return {**unet, **vae, **_prefixed("cond_stage_model.model.", clip_to_open_clip(text))}
    return {**unet, **vae, **_prefixed("cond_stage_model.transformer.", clip_to_hf(text))}


def _flux(folder: Path, vae: dict, transformer_only: bool) -> dict[str, torch.Tensor]:
    """BFL's transformer alone, or ComfyUI's all-in-one layout (transformer, VAE, CLIP-L, T5)."""
    transformer = to_original(_weights(folder, "transformer"))
    if transformer_only:
        return transformer
    return {
        **_prefixed("model.diffusion_model.", transformer),
        **vae,
        **_prefixed(
            "text_encoders.clip_l.transformer.", clip_to_hf(_weights(folder, "text_encoder"))
        ),
        **_prefixed("text_encoders.t5xxl.transformer.", _weights(folder, "text_encoder_2")),
    }


def write(folder: Path, output: Path, layout: str | None = None, v_pred: bool = False) -> Path:
    """Convert `folder` and save it as one safetensors file at `output`."""
    weights = {name: tensor.contiguous() for name, tensor in convert(folder, layout).items()}
    if v_pred:
        weights["v_pred"] = torch.zeros(0)  # the marker A1111 and ComfyUI read
    output.parent.mkdir(parents=True, exist_ok=True)
    save_file(weights, str(output), metadata={"format": "pt"})
    return output


def main(argv: list[str] | None = None) -> int:
    """The command line: python -m demo_model.single_file <folder> <out.safetensors>."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "folder", type=Path, help="a diffusers model folder (SD, SDXL, SD3 or FLUX)"
    )
    parser.add_argument("output", type=Path, help="the .safetensors file to write")
    parser.add_argument(
        "--layout",
        choices=["sd2", "transformer"],
        help="sd2: an SD folder in SD 2.x's layout; transformer: a FLUX folder's transformer alone",
    )
    parser.add_argument("--v-pred", action="store_true", help="add the `v_pred` marker key")
    args = parser.parse_args(argv)
    write(args.folder, args.output, args.layout, args.v_pred)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
