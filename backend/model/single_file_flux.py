"""Loading a FLUX.1 single file: the parts it holds from it, the rest from its diffusers folder.

Each part the file holds is built empty from the folder's config and given the file's tensors
(read by key prefix and cast one part at a time, so an all-in-one file is never held whole);
the parts it lacks (a transformer-only file: the VAE and both text encoders) load from the
folder's weights.
"""

from __future__ import annotations

from typing import Any

from backend.model.checkpoint_flux import CLIP_PREFIX, T5_PREFIX, VAE_PREFIXES, transformer_prefix
from backend.model.single_file import CheckpointFolder


def load_flux(folder: CheckpointFolder, dtype: Any) -> Any:
    """The FluxPipeline of `folder`'s FLUX.1 file, local files only."""
    from diffusers import AutoencoderKL, FluxPipeline, FluxTransformer2DModel
    from diffusers.loaders.single_file_utils import (
        convert_ldm_clip_checkpoint,
        convert_ldm_vae_checkpoint,
    )
    from safetensors import safe_open
    from transformers import CLIPTextModel, T5EncoderModel

    from backend.model.flux_layout import to_diffusers

    config = str(folder.config)
    with safe_open(str(folder.path), "pt") as handle:
        names = list(handle.keys())

        def read(prefixes: tuple[str, ...], strip: str | None = None) -> dict[str, Any]:
            # Fresh copies: tensors read this way can sit unaligned (see single_file_loader).
            return {
                (n[len(strip) :] if strip else n): handle.get_tensor(n).clone()
                for n in names
                if n.startswith(prefixes)
            }

        prefix = transformer_prefix(names)
        blocks = ("double_blocks.", "single_blocks.", "final_layer.")
        alone = ("img_in.", "txt_in.", "time_in.", "vector_in.", "guidance_in.")
        parts: dict[str, Any] = {
            "transformer": _build(
                FluxTransformer2DModel,
                FluxTransformer2DModel.load_config(config, subfolder="transformer"),
                to_diffusers(read(tuple(prefix + p for p in (*blocks, *alone)), prefix)),
                dtype,
                diffusers_model=True,
            )
        }
        if "vae" not in folder.kind.missing:
            vae_config = AutoencoderKL.load_config(config, subfolder="vae")
            state = convert_ldm_vae_checkpoint(read(VAE_PREFIXES), vae_config)
            parts["vae"] = _build(AutoencoderKL, vae_config, state, dtype, diffusers_model=True)
        if "text_encoder" not in folder.kind.missing:
            state = convert_ldm_clip_checkpoint(read((CLIP_PREFIX,)), CLIP_PREFIX)
            parts["text_encoder"] = _build(
                CLIPTextModel, _hf_config(config, "text_encoder"), state, dtype
            )
        if "text_encoder_2" not in folder.kind.missing:
            t5_config = _hf_config(config, "text_encoder_2", t5=True)
            parts["text_encoder_2"] = _build(
                T5EncoderModel, t5_config, read((T5_PREFIX,), T5_PREFIX), dtype
            )
    return FluxPipeline.from_pretrained(config, local_files_only=True, dtype=dtype, **parts)


def _cast(model: Any, dtype: Any) -> Any:
    """`model` in `dtype`, but for the modules it keeps in float32 under float16 (T5's `wo`,
    whose activations overflow float16), as diffusers' and transformers' loaders do."""
    import torch

    keep = getattr(model, "_keep_in_fp32_modules", None) or []
    kept = {}
    if dtype == torch.float16 and keep:  # from the file's precision, not float16's
        kept = {
            name: param.data.float()
            for name, param in model.named_parameters()
            if any(module in name.split(".") for module in keep)
        }
    model = model.to(dtype).eval()
    for name, param in model.named_parameters():
        if name in kept:
            param.data = kept[name]
    return model


def _hf_config(folder: str, subfolder: str, t5: bool = False) -> Any:
    from transformers import CLIPTextConfig, T5Config

    config_class = T5Config if t5 else CLIPTextConfig
    return config_class.from_pretrained(folder, subfolder=subfolder, local_files_only=True)


def _build(
    cls: Any, config: Any, state: dict[str, Any], dtype: Any, diffusers_model: bool = False
) -> Any:
    """`cls` made empty from `config`, given `state` and cast to `dtype` (one part at a time, so
    the file's precision is held for one part only); ValueError naming what is absent."""
    from accelerate import init_empty_weights

    with init_empty_weights():  # no random initialisation of weights about to be replaced
        model = cls.from_config(config) if diffusers_model else cls(config)
    state = {name: tensor.contiguous() for name, tensor in state.items()}  # split views
    own = set(model.state_dict())
    # transformers 5's CLIPTextModel names its weights without the `text_model.` of the files.
    state = {
        (n.removeprefix("text_model.") if n not in own and n.startswith("text_model.") else n): t
        for n, t in state.items()
    }
    model.load_state_dict(state, strict=False, assign=True)
    if hasattr(model, "tie_weights"):
        model.tie_weights()  # T5: the encoder's embedding is the shared one
    missing = [n for n, p in [*model.named_parameters(), *model.named_buffers()] if p.is_meta]
    if missing:
        raise ValueError(f"no weights in the file for {cls.__name__}'s {missing[:3]}")
    return _cast(model, dtype)
