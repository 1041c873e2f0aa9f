"""Random-weight demos of the image tasks' own models: a 9-channel inpainting SD and an SDXL
refiner, built like `demo.py`'s so tests and `make demo-model` can try them offline."""

from __future__ import annotations

from typing import Any

# The demo refiner pairs with demo-sdxl: its second text encoder and VAE are demo-sdxl's
# (same seeds), so the refiner loads sharing them, as the official refiner shares the base's.
_SDXL_TEXT_ENCODER_2_SEED = 3
_SDXL_VAE_SEED = 1


def build_sd_inpaint(seed: int) -> Any:
    """SD's inpainting shape: a UNet taking latents + mask + masked-image latents (9 channels)."""
    from diffusers import StableDiffusionInpaintPipeline
    from transformers import CLIPTextModel

    from backend.model import demo

    tokenizer = demo.build_tokenizer()
    return StableDiffusionInpaintPipeline(
        unet=demo._build_unet(seed, cross_attention_dim=demo._CLIP_WIDTH, in_channels=9),
        vae=demo._build_vae(seed + 1),
        text_encoder=demo._build_text_encoder(CLIPTextModel, tokenizer, seed + 2),
        tokenizer=tokenizer,
        scheduler=demo.euler_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def build_sdxl_refiner(seed: int) -> Any:
    """SDXL's refiner shape: only the second text encoder, and an aesthetic score among the
    `text_time` numbers (five, not six)."""
    from diffusers import StableDiffusionXLImg2ImgPipeline
    from transformers import CLIPTextModelWithProjection

    from backend.model import demo

    tokenizer = demo.build_tokenizer()
    time_embed_dim = 8
    unet = demo._build_unet(
        seed + 10,  # its own weights, not demo-sdxl's
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=time_embed_dim,
        # original size (2), crop (2), aesthetic score (1), plus the pooled projection.
        projection_class_embeddings_input_dim=5 * time_embed_dim + demo._CLIP_WIDTH,
        cross_attention_dim=demo._CLIP_WIDTH,
    )
    text_encoder_2 = demo._build_text_encoder(
        CLIPTextModelWithProjection, tokenizer, seed + _SDXL_TEXT_ENCODER_2_SEED
    )
    return StableDiffusionXLImg2ImgPipeline(
        unet=unet,
        vae=demo._build_vae(seed + _SDXL_VAE_SEED, scaling_factor=0.13025),
        text_encoder=None,
        text_encoder_2=text_encoder_2,
        tokenizer=None,
        tokenizer_2=tokenizer,
        scheduler=demo.euler_scheduler(),
        requires_aesthetics_score=True,
        force_zeros_for_empty_prompt=False,
    )


BUILDERS = {"sd-inpaint": build_sd_inpaint, "sdxl-refiner": build_sdxl_refiner}
