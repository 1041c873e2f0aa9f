"""FLUX.1's transformer weights between Black Forest Labs' names and diffusers' names.

diffusers' own conversion (`convert_flux_transformer_checkpoint_to_diffusers`) assumes FLUX.1's
full width (3072) when it splits the single blocks' fused projection; this one reads the width
from the weights, so it serves any FLUX.1-shaped model (the tiny demo too). Its inverse writes
the demo as BFL's layout. BFL fuse q, k and v (and, in single blocks, the MLP input) into one
matrix, and order the final modulation shift-then-scale where diffusers has scale-then-shift.
"""

from __future__ import annotations

from typing import Any

_FIXED = {
    "time_text_embed.timestep_embedder.linear_1": "time_in.in_layer",
    "time_text_embed.timestep_embedder.linear_2": "time_in.out_layer",
    "time_text_embed.text_embedder.linear_1": "vector_in.in_layer",
    "time_text_embed.text_embedder.linear_2": "vector_in.out_layer",
    "time_text_embed.guidance_embedder.linear_1": "guidance_in.in_layer",
    "time_text_embed.guidance_embedder.linear_2": "guidance_in.out_layer",
    "context_embedder": "txt_in",
    "x_embedder": "img_in",
    "proj_out": "final_layer.linear",
}
_DOUBLE = {
    "norm1.linear": "img_mod.lin",
    "norm1_context.linear": "txt_mod.lin",
    "ff.net.0.proj": "img_mlp.0",
    "ff.net.2": "img_mlp.2",
    "ff_context.net.0.proj": "txt_mlp.0",
    "ff_context.net.2": "txt_mlp.2",
    "attn.to_out.0": "img_attn.proj",
    "attn.to_add_out": "txt_attn.proj",
}
_DOUBLE_NORMS = {
    "attn.norm_q": "img_attn.norm.query_norm",
    "attn.norm_k": "img_attn.norm.key_norm",
    "attn.norm_added_q": "txt_attn.norm.query_norm",
    "attn.norm_added_k": "txt_attn.norm.key_norm",
}
_SINGLE = {"norm.linear": "modulation.lin", "proj_out": "linear2"}
_SINGLE_NORMS = {"attn.norm_q": "norm.query_norm", "attn.norm_k": "norm.key_norm"}
# Fused in BFL's layout: (original name, diffusers parts in order).
_DOUBLE_FUSED = {
    "img_attn.qkv": ("attn.to_q", "attn.to_k", "attn.to_v"),
    "txt_attn.qkv": ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"),
}
_SINGLE_FUSED = {"linear1": ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp")}


def _depth(names: list[str], prefix: str) -> int:
    return len({name.split(".")[1] for name in names if name.startswith(prefix)})


def _pairs(double: int, single: int) -> list[tuple[str, str]]:
    """(diffusers name, BFL name) of every tensor that is renamed alone."""
    pairs = [(f"{d}.{k}", f"{o}.{k}") for d, o in _FIXED.items() for k in ("weight", "bias")]
    for blocks, (diffusers, bfl, plain, norms) in (
        (double, ("transformer_blocks", "double_blocks", _DOUBLE, _DOUBLE_NORMS)),
        (single, ("single_transformer_blocks", "single_blocks", _SINGLE, _SINGLE_NORMS)),
    ):
        for i in range(blocks):
            for d, o in plain.items():
                pairs += [
                    (f"{diffusers}.{i}.{d}.{k}", f"{bfl}.{i}.{o}.{k}") for k in ("weight", "bias")
                ]
            pairs += [
                (f"{diffusers}.{i}.{d}.weight", f"{bfl}.{i}.{o}.scale") for d, o in norms.items()
            ]
    return pairs


def _swap(tensor: Any) -> Any:
    import torch

    first, second = tensor.chunk(2, dim=0)
    return torch.cat([second, first])


def to_original(weights: dict[str, Any]) -> dict[str, Any]:
    """A diffusers FluxTransformer2DModel's weights under BFL's names."""
    import torch

    w = dict(weights)
    double = _depth(list(w), "transformer_blocks.")
    single = _depth(list(w), "single_transformer_blocks.")
    out = {o: w.pop(d) for d, o in _pairs(double, single) if d in w}
    for blocks, diffusers, bfl, fused in (
        (double, "transformer_blocks", "double_blocks", _DOUBLE_FUSED),
        (single, "single_transformer_blocks", "single_blocks", _SINGLE_FUSED),
    ):
        for i in range(blocks):
            for name, parts in fused.items():
                for k in ("weight", "bias"):
                    out[f"{bfl}.{i}.{name}.{k}"] = torch.cat(
                        [w.pop(f"{diffusers}.{i}.{p}.{k}") for p in parts]
                    )
    for k in ("weight", "bias"):
        out[f"final_layer.adaLN_modulation.1.{k}"] = _swap(w.pop(f"norm_out.linear.{k}"))
    if w:
        raise ValueError(f"no FLUX.1 name for {sorted(w)[:3]}")
    return out


def to_diffusers(weights: dict[str, Any]) -> dict[str, Any]:
    """BFL-named FLUX.1 transformer weights (no prefix) under diffusers' names."""
    w = dict(weights)
    double = _depth(list(w), "double_blocks.")
    single = _depth(list(w), "single_blocks.")
    width = w["img_in.weight"].shape[0]
    out = {d: w.pop(o) for d, o in _pairs(double, single) if o in w}
    for i in range(double):
        for name, parts in _DOUBLE_FUSED.items():
            for k in ("weight", "bias"):
                chunks = w.pop(f"double_blocks.{i}.{name}.{k}").chunk(3, dim=0)
                out.update(
                    {
                        f"transformer_blocks.{i}.{p}.{k}": c
                        for p, c in zip(parts, chunks, strict=True)
                    }
                )
    for i in range(single):
        for name, parts in _SINGLE_FUSED.items():
            for k in ("weight", "bias"):
                fused = w.pop(f"single_blocks.{i}.{name}.{k}")
                sizes = (width, width, width, fused.shape[0] - 3 * width)
                chunks = fused.split(sizes, dim=0)
                out.update(
                    {
                        f"single_transformer_blocks.{i}.{p}.{k}": c
                        for p, c in zip(parts, chunks, strict=True)
                    }
                )
    for k in ("weight", "bias"):
        out[f"norm_out.linear.{k}"] = _swap(w.pop(f"final_layer.adaLN_modulation.1.{k}"))
    if w:
        raise ValueError(f"not a FLUX.1 transformer name: {sorted(w)[:3]}")
    return out
