"""Diffusers weights under the original (non-diffusers) names: LDM, OpenCLIP and SD3's MMDiT.

Each function inverts one of diffusers' single-file conversions
(`diffusers/loaders/single_file_utils.py`); `demo_model/single_file.py` puts them together.
"""

from __future__ import annotations

import torch

_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "time_emb_proj": "emb_layers.1",
    "conv_shortcut": "skip_connection",
}


def unet_to_ldm(weights: dict[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
    """A diffusers UNet2DConditionModel's weights under LDM names (without the prefix)."""
    if config.get("addition_embed_type") not in (None, "text_time"):
        raise ValueError(
            f"the UNet's addition_embed_type={config['addition_embed_type']!r} has no "
            "original-layout keys"
        )
    layers, blocks = config["layers_per_block"], len(config["block_out_channels"])
    if not isinstance(layers, int):
        raise ValueError("layers_per_block per block is not supported")
    prefixes = {
        "time_embedding.linear_1.": "time_embed.0.",
        "time_embedding.linear_2.": "time_embed.2.",
        "add_embedding.linear_1.": "label_emb.0.0.",
        "add_embedding.linear_2.": "label_emb.0.2.",
        "conv_in.": "input_blocks.0.0.",
        "conv_norm_out.": "out.0.",
        "conv_out.": "out.2.",
        "mid_block.resnets.0.": "middle_block.0.",
        "mid_block.attentions.0.": "middle_block.1.",
        "mid_block.resnets.1.": "middle_block.2.",
    }
    for i in range(blocks):
        for j in range(layers):
            index = 1 + i * (layers + 1) + j
            prefixes[f"down_blocks.{i}.resnets.{j}."] = f"input_blocks.{index}.0."
            prefixes[f"down_blocks.{i}.attentions.{j}."] = f"input_blocks.{index}.1."
        prefixes[f"down_blocks.{i}.downsamplers.0.conv."] = (
            f"input_blocks.{1 + i * (layers + 1) + layers}.0.op."
        )
        attends = "CrossAttn" in config["up_block_types"][i]
        for j in range(layers + 1):
            index = i * (layers + 1) + j
            prefixes[f"up_blocks.{i}.resnets.{j}."] = f"output_blocks.{index}.0."
            prefixes[f"up_blocks.{i}.attentions.{j}."] = f"output_blocks.{index}.1."
        prefixes[f"up_blocks.{i}.upsamplers.0."] = (
            f"output_blocks.{i * (layers + 1) + layers}.{2 if attends else 1}."
        )
    converted = {}
    for name, tensor in weights.items():
        prefix = next((p for p in prefixes if name.startswith(p)), None)
        if prefix is None:
            raise ValueError(f"no original-layout name for UNet weight {name}")
        rest = name[len(prefix) :]
        if ".resnets." in prefix:
            head, _, tail = rest.partition(".")
            rest = f"{_RESNET.get(head, head)}.{tail}"
        converted[prefixes[prefix] + rest] = tensor
    return converted


def vae_to_ldm(weights: dict[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
    """A diffusers AutoencoderKL's weights under LDM names (without the prefix)."""
    blocks = len(config["block_out_channels"])
    prefixes = {
        "encoder.conv_norm_out.": "encoder.norm_out.",
        "decoder.conv_norm_out.": "decoder.norm_out.",
    }
    for coder in ("encoder", "decoder"):
        prefixes[f"{coder}.mid_block.resnets.0."] = f"{coder}.mid.block_1."
        prefixes[f"{coder}.mid_block.resnets.1."] = f"{coder}.mid.block_2."
        prefixes[f"{coder}.mid_block.attentions.0."] = f"{coder}.mid.attn_1."
    for i in range(blocks):
        prefixes[f"encoder.down_blocks.{i}.resnets."] = f"encoder.down.{i}.block."
        prefixes[f"encoder.down_blocks.{i}.downsamplers.0."] = f"encoder.down.{i}.downsample."
        prefixes[f"decoder.up_blocks.{i}.resnets."] = f"decoder.up.{blocks - 1 - i}.block."
        prefixes[f"decoder.up_blocks.{i}.upsamplers.0."] = f"decoder.up.{blocks - 1 - i}.upsample."
    attention = {
        "group_norm": "norm",
        "to_q": "q",
        "to_k": "k",
        "to_v": "v",
        "to_out.0": "proj_out",
    }
    converted = {}
    for name, value in weights.items():
        tensor = value
        prefix = next((p for p in prefixes if name.startswith(p)), "")
        rest = name[len(prefix) :].replace("conv_shortcut", "nin_shortcut")
        if prefix.endswith("attentions.0."):
            layer, _, kind = rest.rpartition(".")
            rest = f"{attention[layer]}.{kind}"
            if tensor.ndim == 2:  # LDM's attention projections are 1x1 convolutions
                tensor = tensor[:, :, None, None]
        converted[prefixes.get(prefix, "") + rest] = tensor
    return converted


def clip_to_hf(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A CLIP text encoder's weights under transformers' `text_model.*` names."""
    return {
        name if name.startswith(("text_model.", "text_projection")) else f"text_model.{name}": t
        for name, t in weights.items()
    }


def clip_to_open_clip(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A CLIP text encoder's weights under OpenCLIP names (SD 2.x, SDXL's second encoder)."""
    weights = clip_to_hf(weights)
    converted = {
        "positional_embedding": weights.pop("text_model.embeddings.position_embedding.weight"),
        "token_embedding.weight": weights.pop("text_model.embeddings.token_embedding.weight"),
        "ln_final.weight": weights.pop("text_model.final_layer_norm.weight"),
        "ln_final.bias": weights.pop("text_model.final_layer_norm.bias"),
    }
    if "text_projection.weight" in weights:
        converted["text_projection"] = weights.pop("text_projection.weight").T.contiguous()
    renames = {
        "layer_norm1": "ln_1",
        "layer_norm2": "ln_2",
        "mlp.fc1": "mlp.c_fc",
        "mlp.fc2": "mlp.c_proj",
        "self_attn.out_proj": "attn.out_proj",
    }
    layers = {int(name.split(".")[3]) for name in weights if ".encoder.layers." in name}
    for i in layers:
        source, target = f"text_model.encoder.layers.{i}.", f"transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            converted[f"{target}attn.in_proj_{kind}"] = torch.cat(
                [weights.pop(f"{source}self_attn.{p}_proj.{kind}") for p in "qkv"]
            )
        for name in [n for n in weights if n.startswith(source)]:
            rest = name[len(source) :]
            for old, new in renames.items():
                rest = rest.replace(old, new)
            converted[target + rest] = weights.pop(name)
    if weights:
        raise ValueError(f"no OpenCLIP name for {sorted(weights)[:3]}")
    return converted


def _swap_halves(tensor: torch.Tensor) -> torch.Tensor:
    first, second = tensor.chunk(2, dim=0)
    return torch.cat([second, first])


def sd3_transformer_to_original(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """SD3Transformer2DModel weights under Stability's MMDiT names (without the prefix)."""
    w = dict(weights)
    out = {
        "pos_embed": w.pop("pos_embed.pos_embed"),
        "context_embedder.weight": w.pop("context_embedder.weight"),
        "context_embedder.bias": w.pop("context_embedder.bias"),
        "final_layer.linear.weight": w.pop("proj_out.weight"),
        "final_layer.linear.bias": w.pop("proj_out.bias"),
    }
    simple = {
        "pos_embed.proj.": "x_embedder.proj.",
        "time_text_embed.timestep_embedder.linear_1.": "t_embedder.mlp.0.",
        "time_text_embed.timestep_embedder.linear_2.": "t_embedder.mlp.2.",
        "time_text_embed.text_embedder.linear_1.": "y_embedder.mlp.0.",
        "time_text_embed.text_embedder.linear_2.": "y_embedder.mlp.2.",
    }
    for kind in ("weight", "bias"):
        for old, new in simple.items():
            out[new + kind] = w.pop(old + kind)
        out[f"final_layer.adaLN_modulation.1.{kind}"] = _swap_halves(
            w.pop(f"norm_out.linear.{kind}")
        )
    depth = 1 + max(int(n.split(".")[1]) for n in w if n.startswith("transformer_blocks."))
    for i in range(depth):
        b, x, c = (
            f"transformer_blocks.{i}.",
            f"joint_blocks.{i}.x_block.",
            f"joint_blocks.{i}.context_block.",
        )
        last = i == depth - 1
        for kind in ("weight", "bias"):
            out[f"{x}attn.qkv.{kind}"] = torch.cat([w.pop(f"{b}attn.to_{p}.{kind}") for p in "qkv"])
            out[f"{c}attn.qkv.{kind}"] = torch.cat(
                [w.pop(f"{b}attn.add_{p}_proj.{kind}") for p in "qkv"]
            )
            if f"{b}attn2.to_q.{kind}" in w:
                out[f"{x}attn2.qkv.{kind}"] = torch.cat(
                    [w.pop(f"{b}attn2.to_{p}.{kind}") for p in "qkv"]
                )
                out[f"{x}attn2.proj.{kind}"] = w.pop(f"{b}attn2.to_out.0.{kind}")
            out[f"{x}attn.proj.{kind}"] = w.pop(f"{b}attn.to_out.0.{kind}")
            out[f"{x}adaLN_modulation.1.{kind}"] = w.pop(f"{b}norm1.linear.{kind}")
            context_norm = w.pop(f"{b}norm1_context.linear.{kind}")
            out[f"{c}adaLN_modulation.1.{kind}"] = (
                _swap_halves(context_norm) if last else context_norm
            )
            out[f"{x}mlp.fc1.{kind}"] = w.pop(f"{b}ff.net.0.proj.{kind}")
            out[f"{x}mlp.fc2.{kind}"] = w.pop(f"{b}ff.net.2.{kind}")
            if not last:
                out[f"{c}attn.proj.{kind}"] = w.pop(f"{b}attn.to_add_out.{kind}")
                out[f"{c}mlp.fc1.{kind}"] = w.pop(f"{b}ff_context.net.0.proj.{kind}")
                out[f"{c}mlp.fc2.{kind}"] = w.pop(f"{b}ff_context.net.2.{kind}")
        norms = {"norm_q": f"{x}attn.ln_q", "norm_k": f"{x}attn.ln_k",
                 "norm_added_q": f"{c}attn.ln_q", "norm_added_k": f"{c}attn.ln_k"}  # fmt: skip
        for old, new in norms.items():
            if f"{b}attn.{old}.weight" in w:
                out[f"{new}.weight"] = w.pop(f"{b}attn.{old}.weight")
        for old in ("norm_q", "norm_k"):
            if f"{b}attn2.{old}.weight" in w:
                out[f"{x}attn2.ln_{old[-1]}.weight"] = w.pop(f"{b}attn2.{old}.weight")
    if w:
        raise ValueError(f"no MMDiT name for {sorted(w)[:3]}")
    return out
