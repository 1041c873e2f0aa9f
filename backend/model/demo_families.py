"""Tiny random-weight demos of the newer families: FLUX.1, SD3.5, PixArt-Σ and Sana.

The same real diffusers and transformers classes as the full models, shrunk to a few hundred
thousand weights, so each family loads and generates through the server's own code in well
under a second. The T5 and Gemma tokenizers are built offline with the `tokenizers` library
(one token per character), as `demo.build_tokenizer` builds CLIP's.
"""

from __future__ import annotations

from typing import Any

from backend.model.demo import _CLIP_WIDTH, _build_sd3, _build_text_encoder, _build_vae
from backend.model.demo import build_tokenizer as build_clip_tokenizer

_T5_WIDTH = 32
_GEMMA_WIDTH = 32
# Every printable ASCII character is a token (spaces become "▁", as SentencePiece does).
_CHARACTERS = [chr(code) for code in range(33, 127)]


def build_t5_tokenizer():  # noqa: ANN201 (transformers is imported lazily)
    """T5's tokenizer class on a one-token-per-character Unigram vocabulary."""
    from transformers import T5TokenizerFast

    # T5's special tokens and ids: <pad> 0, </s> 1, <unk> 2.
    pieces = ["<pad>", "</s>", "<unk>", "▁", *_CHARACTERS, *(f"▁{c}" for c in _CHARACTERS)]
    return T5TokenizerFast(vocab=[(piece, -1.0) for piece in pieces], extra_ids=0)


def build_gemma_tokenizer():  # noqa: ANN201
    """Gemma's tokenizer class on a one-token-per-character BPE vocabulary (no merges)."""
    from transformers import GemmaTokenizerFast

    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]
    vocab = {token: index for index, token in enumerate([*specials, "▁", *_CHARACTERS])}
    return GemmaTokenizerFast(vocab=vocab, merges=[])


def _build_t5(tokenizer: Any, seed: int):  # noqa: ANN202
    import torch
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(seed)
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=_T5_WIDTH,
        d_kv=8,
        d_ff=37,
        num_layers=2,
        num_heads=4,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    return T5EncoderModel(config)


def build_flux(seed: int, guidance_embeds: bool = True):  # noqa: ANN201
    """FLUX.1's shape in miniature: CLIP pooled + T5 states into a double/single-stream
    transformer, latents packed 2x2; with `guidance_embeds` it is dev-like (guidance is an
    input of the transformer), without it schnell-like."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextModel

    clip_tokenizer, t5_tokenizer = build_clip_tokenizer(), build_t5_tokenizer()
    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=16,  # 4 latent channels x the 2x2 packing
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=8,
        num_attention_heads=2,
        joint_attention_dim=_T5_WIDTH,
        pooled_projection_dim=_CLIP_WIDTH,
        guidance_embeds=guidance_embeds,
        axes_dims_rope=(4, 2, 2),  # sums to attention_head_dim
    )
    return FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(
            use_dynamic_shifting=guidance_embeds,  # as dev (resolution-dependent shift)
            base_shift=0.5,
            max_shift=1.15,
            shift=3.0 if guidance_embeds else 1.0,
        ),
        vae=_build_vae(seed + 1, scaling_factor=0.3611, shift_factor=0.1159),
        text_encoder=_build_text_encoder(CLIPTextModel, clip_tokenizer, seed + 2),
        tokenizer=clip_tokenizer,
        text_encoder_2=_build_t5(t5_tokenizer, seed + 3),
        tokenizer_2=t5_tokenizer,
        transformer=transformer,
    )


def build_sd35(seed: int):  # noqa: ANN201
    """SD3.5's shape in miniature: SD3's with RMS-normed attention and a dual-attention layer
    (what SD3.5 Medium adds); the same pipeline class as SD3."""
    import torch
    from diffusers import SD3Transformer2DModel

    pipeline = _build_sd3(seed)
    config = {k: v for k, v in pipeline.transformer.config.items() if not k.startswith("_")}
    torch.manual_seed(seed)
    # Assigning a registered component updates the pipeline's config (model_index.json) too.
    pipeline.transformer = SD3Transformer2DModel(
        **{**config, "qk_norm": "rms_norm", "dual_attention_layers": (0,)}
    )
    return pipeline


def build_pixart(seed: int):  # noqa: ANN201
    """PixArt-Σ's shape in miniature: T5 states into a DiT with learned sigma, SD's VAE."""
    import torch
    from diffusers import DPMSolverMultistepScheduler, PixArtSigmaPipeline, PixArtTransformer2DModel

    tokenizer = build_t5_tokenizer()
    torch.manual_seed(seed)
    transformer = PixArtTransformer2DModel(
        num_attention_heads=2,
        attention_head_dim=8,
        in_channels=4,
        out_channels=8,  # learned sigma, as PixArt-Σ
        num_layers=2,
        cross_attention_dim=16,
        sample_size=32,  # 32 x 8 = 256: the pipeline's 256 aspect-ratio bins
        patch_size=2,
        norm_num_groups=8,
        caption_channels=_T5_WIDTH,
        use_additional_conditions=False,
    )
    return PixArtSigmaPipeline(
        tokenizer=tokenizer,
        text_encoder=_build_t5(tokenizer, seed + 2),
        vae=_build_vae(seed + 1),
        transformer=transformer,
        scheduler=DPMSolverMultistepScheduler(
            beta_schedule="linear", beta_start=0.0001, beta_end=0.02
        ),
    )


def build_sana(seed: int):  # noqa: ANN201
    """Sana's shape in miniature: a Gemma2 encoder, a linear-attention DiT, a 32x DC-AE."""
    import torch
    from diffusers import (
        AutoencoderDC,
        DPMSolverMultistepScheduler,
        SanaPipeline,
        SanaTransformer2DModel,
    )
    from transformers import Gemma2Config, Gemma2Model

    tokenizer = build_gemma_tokenizer()
    torch.manual_seed(seed + 2)
    text_encoder = Gemma2Model(
        Gemma2Config(
            vocab_size=len(tokenizer),
            hidden_size=_GEMMA_WIDTH,
            intermediate_size=37,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=16,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    )
    torch.manual_seed(seed + 1)
    levels = 6  # six levels: the real 32x scale, so sizes behave as with the real model
    vae = AutoencoderDC(
        latent_channels=4,
        attention_head_dim=4,
        encoder_block_types="ResBlock",
        decoder_block_types="ResBlock",
        encoder_block_out_channels=(8,) * levels,
        decoder_block_out_channels=(8,) * levels,
        encoder_layers_per_block=(1,) * levels,
        decoder_layers_per_block=(1,) * levels,
        encoder_qkv_multiscales=((),) * levels,
        decoder_qkv_multiscales=((),) * levels,
        scaling_factor=0.41407,
    )
    torch.manual_seed(seed)
    transformer = SanaTransformer2DModel(
        in_channels=4,
        out_channels=4,
        num_attention_heads=2,
        attention_head_dim=8,
        num_layers=1,
        num_cross_attention_heads=2,
        cross_attention_head_dim=8,
        cross_attention_dim=16,
        caption_channels=_GEMMA_WIDTH,
        sample_size=16,  # the smallest the pipeline bins for: 16 x 32 = 512
        patch_size=1,
    )
    return SanaPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae,
        transformer=transformer,
        # Sana's own: DPM-Solver++ on flow-matching sigmas.
        scheduler=DPMSolverMultistepScheduler(
            use_flow_sigmas=True, prediction_type="flow_prediction", flow_shift=3.0
        ),
    )


BUILDERS = {
    "flux": build_flux,
    "flux-schnell": lambda seed: build_flux(seed, guidance_embeds=False),
    "sd35": build_sd35,
    "pixart": build_pixart,
    "sana": build_sana,
}
