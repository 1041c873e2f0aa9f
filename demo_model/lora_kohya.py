"""Write a diffusers-format LoRA in kohya/AUTOMATIC1111's key layout (for the LoRA tests).

    python -m demo_model.lora_kohya IN.safetensors OUT.safetensors

`unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_k.lora.down.weight` becomes
`lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_k.lora_down.weight`, with
an `.alpha` per layer equal to its rank (a scale of 1, as diffusers' own file has).
"""

from __future__ import annotations

import sys
from pathlib import Path

_PREFIXES = {"unet.": "lora_unet_", "text_encoder.": "lora_te_", "text_encoder_2.": "lora_te2_"}
_SUFFIXES = {
    ".lora.down.weight": ".lora_down.weight",
    ".lora.up.weight": ".lora_up.weight",
    ".lora_A.weight": ".lora_down.weight",
    ".lora_B.weight": ".lora_up.weight",
}


def kohya_key(key: str) -> tuple[str, str]:
    """(the kohya module name, the kohya tensor suffix) of one diffusers LoRA key."""
    suffix = next((each for each in _SUFFIXES if key.endswith(each)), None)
    if suffix is None:
        raise ValueError(f"not a LoRA weight: {key}")
    module, kohya_suffix = key[: -len(suffix)], _SUFFIXES[suffix]
    for prefix, kohya_prefix in sorted(_PREFIXES.items(), key=lambda item: -len(item[0])):
        if module.startswith(prefix):
            return kohya_prefix + module[len(prefix) :].replace(".", "_"), kohya_suffix
    raise ValueError(f"unknown component: {key}")


def to_kohya(source: Path, target: Path) -> None:
    """Convert the LoRA file `source` into kohya's layout at `target`."""
    import torch
    from safetensors.torch import load_file, save_file

    converted = {}
    for key, tensor in load_file(str(source)).items():
        module, suffix = kohya_key(key)
        converted[module + suffix] = tensor
        if suffix == ".lora_down.weight":
            converted[module + ".alpha"] = torch.tensor(float(tensor.shape[0]), dtype=tensor.dtype)
    save_file(converted, str(target))


if __name__ == "__main__":
    to_kohya(Path(sys.argv[1]), Path(sys.argv[2]))
