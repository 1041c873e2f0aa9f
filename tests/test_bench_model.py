"""The benchmark model has SD-Turbo's real architecture (checked without allocating it)."""

from __future__ import annotations

from accelerate import init_empty_weights

from bench.bench_model import build_components, parameter_counts


def test_the_benchmark_model_has_sd_turbo_sized_components():
    with init_empty_weights():  # meta tensors: the shapes, not the 5 GB
        components = build_components()
    counts = parameter_counts(components)
    # SD 2.1 / SD-Turbo: UNet 865.9 M, OpenCLIP ViT-H text tower 340.4 M, SD VAE 83.7 M.
    assert round(counts["unet"] / 1e6, 1) == 865.9
    assert round(counts["text_encoder"] / 1e6, 1) == 340.4
    assert round(counts["vae"] / 1e6, 1) == 83.7
    config = components["unet"].config
    assert config.cross_attention_dim == 1024 and config.use_linear_projection
    assert tuple(config.attention_head_dim) == (5, 10, 20, 20)
    text = components["text_encoder"].config
    assert (text.hidden_size, text.num_hidden_layers, text.num_attention_heads) == (1024, 23, 16)
