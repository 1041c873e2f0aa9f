"""Loading a single-file checkpoint with diffusers' single-file loader, from local files only."""

from __future__ import annotations

from typing import Any

from backend.model.catalogue import Family
from backend.model.single_file import CheckpointFolder


def load_checkpoint(folder: CheckpointFolder, dtype: Any) -> Any:
    """The pipeline of `folder`'s checkpoint, built from its config folder; never the network.

    `config=` a local folder makes diffusers read every config and tokenizer from it, and
    `local_files_only=True` forbids the hub for anything the file does not carry.
    """
    import diffusers

    if folder.family is Family.FLUX:
        from backend.model.single_file_flux import load_flux

        return load_flux(folder, dtype)
    pipeline_class = getattr(diffusers, folder.pipeline_class)
    pipeline = pipeline_class.from_single_file(
        str(folder.path),
        config=str(folder.config),
        local_files_only=True,
        dtype=dtype,
        # Components the checkpoint lacks and the configs cannot supply (SD3 without T5).
        **dict.fromkeys(folder.absent),
        **_second_encoder(folder, dtype),
    )
    kind = folder.kind
    overrides: dict[str, Any] = {}
    # The file's own marker beats the config folder's scheduler (an SD2 768-v, a v-pred SDXL).
    if kind.v_prediction:
        overrides["prediction_type"] = "v_prediction"
    if kind.zero_terminal_snr:
        overrides["rescale_betas_zero_snr"] = True
    if overrides and folder.family is not Family.SD3:  # SD3's flow matching has neither
        scheduler = pipeline.scheduler
        pipeline.scheduler = type(scheduler).from_config(scheduler.config, **overrides)
    return pipeline


# The second CLIP encoder's weights, by key prefix. diffusers tells SDXL's and SD3's two CLIP
# encoders apart by width alone, which fails when both have the same one (the demo models).
_SECOND_ENCODER = {
    Family.SDXL: "conditioner.embedders.1.model.",  # OpenCLIP's layout
    Family.SD3: "text_encoders.clip_g.transformer.",  # transformers' layout
}


def _second_encoder(folder: CheckpointFolder, dtype: Any) -> dict[str, Any]:
    """`text_encoder_2` of an SDXL or SD3 checkpoint, read by its prefix (else nothing)."""
    prefix = _SECOND_ENCODER.get(folder.family)
    if prefix is None:
        return {}
    from accelerate import init_empty_weights
    from diffusers.loaders.single_file_utils import (
        convert_ldm_clip_checkpoint,
        convert_open_clip_checkpoint,
    )
    from safetensors import safe_open
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    with safe_open(str(folder.path), "pt") as handle:
        names = [name for name in handle.keys() if name.startswith(prefix)]  # noqa: SIM118
        # Fresh copies: tensors read this way can sit unaligned, and some CPU kernels then round
        # differently (without the copy, an SD3 image's last bit differed from its folder's).
        weights = {name: handle.get_tensor(name).clone() for name in names}
    config = CLIPTextConfig.from_pretrained(
        str(folder.config), subfolder="text_encoder_2", local_files_only=True
    )
    with init_empty_weights():  # no random initialisation of weights about to be replaced
        model = CLIPTextModelWithProjection(config)
    if folder.family is Family.SDXL:
        state = convert_open_clip_checkpoint(model, weights, prefix=prefix)
    else:
        state = convert_ldm_clip_checkpoint(weights, prefix)
    model.load_state_dict(state, strict=False, assign=True)
    missing = [name for name, p in [*model.named_parameters(), *model.named_buffers()] if p.is_meta]
    if missing:
        raise ValueError(f"{folder.path.name}: no weights for text_encoder_2's {missing[:3]}")
    return {"text_encoder_2": model.to(dtype).eval()}
