"""The trained demo's components: real diffusers and transformers classes, small enough that the
float16 weights of all of them fit in under 3 MB."""

from __future__ import annotations

from typing import Any

TEXT_WIDTH = 64
# v-prediction: few-step sampling and flat colours (backgrounds) come out right where epsilon
# prediction leaves the overall colour to the starting noise.
PREDICTION = "v_prediction"
NATIVE_SIZE = 64  # pixels; the VAE's 4x makes 16x16 latents, the size the UNet mostly learns at
# 4x, not SD's 8x: at 8x a 64x64 image is 8x8 latents, an object one or two of them, and its
# shape must be packed into their channels, which the UNet drew as blobs. At 4x it is laid out
# in latent pixels, as a convolution draws.
VAE_SCALE = 4
# latent side -> the share of the UNet's training batches drawn at it: 128x128 works too.
TRAIN_SIDES = {16: 0.8, 32: 0.2}
# Eight channels: with four, small errors in the UNet's latents turned blue into cyan and green
# into black; with eight they came out right (the runs in docs/demo-model.md).
LATENT_CHANNELS = 8


def text_encoder(tokenizer: Any):  # noqa: ANN201 (transformers is imported lazily)
    """A two-layer CLIP text encoder, 64 wide."""
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=TEXT_WIDTH,
            intermediate_size=2 * TEXT_WIDTH,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=tokenizer.model_max_length,
            projection_dim=TEXT_WIDTH,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )


def vae():  # noqa: ANN201
    """An AutoencoderKL at 4x scale, with 8 latent channels and no attention.

    Four channels per norm group at every level: a group of one channel normalizes a flat
    colour away, and the images here are mostly flat colour."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(16, 32, 32),
        layers_per_block=1,
        latent_channels=LATENT_CHANNELS,
        norm_num_groups=4,
        sample_size=NATIVE_SIZE,
        mid_block_add_attention=False,
    )


def unet():  # noqa: ANN201
    """A three-level UNet2DConditionModel: cross-attention at 8x8 and 4x4 latent pixels, where
    layout, colour and shape are decided, and the pooled prompt in every block."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=NATIVE_SIZE // VAE_SCALE,
        in_channels=LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        layers_per_block=1,
        block_out_channels=(32, 48, 48),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=8,
        norm_num_groups=8,
        cross_attention_dim=TEXT_WIDTH,
        # The prompt, attention-pooled, joins the timestep embedding: every ResNet block hears
        # the colours, shapes and places, not only the two cross-attention levels.
        addition_embed_type="text",
        addition_embed_type_num_heads=4,
    )


def training_scheduler():  # noqa: ANN201
    """The noise schedule of training: SD's, so that any SD sampler fits."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type=PREDICTION,
    )
