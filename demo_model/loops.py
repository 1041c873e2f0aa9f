"""The two training loops: the VAE as an autoencoder, then the UNet and text encoder as a
latent diffusion model with classifier-free guidance dropout."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812 (torch's own convention)

from demo_model.caption_targets import targets
from demo_model.data import captions, pixels, scenes, token_ids

CAPTION_DROP = 0.1  # empty captions: the unconditional model that guidance pushes away from
# The loss weight of a timestep, in terms of the clean image's error: min(SNR + 1, GAMMA + 1).
# Min-SNR proper (min(SNR, GAMMA)) weights the noisiest timesteps by SNR, about 0.005: there the
# model must draw the layout from the prompt alone, and a model trained so ignores the position
# and the shape it is asked for. The +1 keeps them at weight one.
MIN_SNR_GAMMA = 5.0
VAE_BATCH, VAE_CROP = 32, 32  # small crops: four times the updates of whole 64x64 scenes
OBJECT_WEIGHT = 3.0
DIFFUSION_OBJECT_WEIGHT = 3.0
TEXT_LOSS = 0.05  # the weight of the caption heads' loss beside the denoising one


def _schedule(optimizer: torch.optim.Optimizer, steps: int, warmup: int) -> Any:
    """Linear warm-up, then cosine decay to a tenth."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, steps - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def train_vae(vae: Any, rng: random.Random, steps: int, log: Callable[[str], None]) -> None:
    """Reconstruction (L1 + MSE, objects weighted up) and a whisper of KL, on 32x32 crops of
    64x64 scenes and, a quarter of the time, of 128x128 ones: both scales the UNet draws at."""
    generator = torch.Generator().manual_seed(rng.randrange(2**31))
    _start_nearly_deterministic(vae)
    # Scenes drawn once and cropped afresh at every step: drawing costs more than a step.
    count = min(3000, VAE_BATCH * steps)  # a short trial run draws only what it uses
    pools = [pixels(scenes(rng, count), 64), pixels(scenes(rng, count // 4), 128)]
    optimizer = torch.optim.AdamW(vae.parameters(), lr=2e-3, weight_decay=0.0, foreach=True)
    schedule = _schedule(optimizer, steps, warmup=50)
    started = time.monotonic()
    for step in range(steps):
        pool = pools[step % 4 == 3]
        picks = torch.tensor([rng.randrange(len(pool)) for _ in range(VAE_BATCH)])
        top, left = (rng.randrange(0, pool.shape[-1] - VAE_CROP + 1, 8) for _ in range(2))
        batch = pool[picks, :, top : top + VAE_CROP, left : left + VAE_CROP]
        # Objects are a fifth of the pixels and all of the meaning: their errors count more.
        background = pool[picks, :, :1, :1]  # objects never touch the corner
        is_object = (batch - background).abs().amax(dim=1, keepdim=True) > 0.1
        weight = 1.0 + OBJECT_WEIGHT * is_object.float()
        posterior = vae.encode(batch).latent_dist
        rebuilt = vae.decode(posterior.sample(generator)).sample
        error = rebuilt - batch
        loss = ((error.abs() + error.square()) * weight).mean()
        loss = loss + 1e-6 * posterior.kl().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        if step % 200 == 0 or step == steps - 1:
            log(
                f"vae {step:5d}/{steps} loss {loss.item():.4f} ({time.monotonic() - started:.0f} s)"
            )


@torch.no_grad()
def _start_nearly_deterministic(vae: Any) -> None:
    """Start the posterior's log-variance at -12 (a spread of 0.0025), not at about 0.

    A fresh AutoencoderKL samples its latents with a spread of one: noise that drowns the
    still-small means, so the decoder learns blobs for a long time before the encoder learns to
    shout over it. The KL term is too faint to matter either way; img2img still samples."""
    channels = vae.config.latent_channels
    vae.quant_conv.weight[channels:].zero_()
    vae.quant_conv.bias[channels:].fill_(-12.0)


@torch.no_grad()
def object_masks(batch: list, size: int, scale: int) -> torch.Tensor:
    """Where `batch`'s objects are, drawn at `size`, as a 0/1 mask at the latent side."""
    chunks = []
    for i in range(0, len(batch), 256):
        drawn = pixels(batch[i : i + 256], size)
        is_object = (drawn - drawn[..., :1, :1]).abs().amax(dim=1, keepdim=True) > 0.1
        chunks.append(F.max_pool2d(is_object.float(), scale))
    return torch.cat(chunks)


@torch.no_grad()
def encode_scenes(vae: Any, batch: list, size: int) -> torch.Tensor:
    """The latents (posterior means) of `batch` drawn at `size`, unscaled."""
    chunks = [
        vae.encode(pixels(batch[i : i + 256], size)).latent_dist.mean
        for i in range(0, len(batch), 256)
    ]
    return torch.cat(chunks)


class Ema:
    """An exponential moving average of parameters: what gets saved, smoother than the last step."""

    def __init__(self, parameters: list[torch.nn.Parameter], decay: float = 0.999) -> None:
        self.parameters, self.decay = parameters, decay
        self.shadow = [p.detach().clone() for p in parameters]
        self.updates = 0

    @torch.no_grad()
    def update(self) -> None:
        """Blend the current parameters in (with a warm-up, so early ones do not linger)."""
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        torch._foreach_lerp_(self.shadow, [p.detach() for p in self.parameters], 1 - decay)

    @torch.no_grad()
    def copy_to(self) -> None:
        """Put the averages into the model."""
        for shadow, param in zip(self.shadow, self.parameters, strict=True):
            param.copy_(shadow)


def train_diffusion(  # noqa: PLR0917 (the loop's inputs, all of them needed)
    unet: Any,
    text_encoder: Any,
    tokenizer: Any,
    noise_schedule: Any,
    pools: dict[int, tuple[float, list, torch.Tensor, torch.Tensor]],
    rng: random.Random,
    steps: int,
    log: Callable[[str], None],
    heads: Any = None,
    batch_size: int = 64,
) -> None:
    """v-prediction on the scaled latents in `pools` (latent side -> share of the batches,
    scenes, latents, object masks)."""
    generator = torch.Generator().manual_seed(rng.randrange(2**31))
    params = [*unet.parameters(), *text_encoder.parameters()]
    optimizer = torch.optim.AdamW(
        [*params, *([] if heads is None else heads.parameters())],
        lr=1e-3,
        weight_decay=0.01,
        betas=(0.9, 0.99),
        foreach=True,  # one fused update over all tensors: a tenth of a CPU step otherwise
    )
    schedule = _schedule(optimizer, steps, warmup=100)
    ema = Ema(params)
    alphas = noise_schedule.alphas_cumprod
    snr = alphas / (1 - alphas)
    weights = torch.clamp(snr + 1, max=MIN_SNR_GAMMA + 1) / (snr + 1)  # for v-prediction
    sides = sorted(pools)
    shares = [pools[side][0] for side in sides]
    started = time.monotonic()
    for step in range(steps):
        side = rng.choices(sides, shares)[0]
        _, pool_scenes, latents, masks = pools[side]
        # As many latent pixels in every batch: a batch at twice the side holds a quarter.
        count = max(4, batch_size * sides[0] ** 2 // side**2)
        picks = [rng.randrange(len(pool_scenes)) for _ in range(count)]
        clean = latents[picks]
        weight = 1.0 + DIFFUSION_OBJECT_WEIGHT * masks[picks]
        texts = captions(rng, [pool_scenes[i] for i in picks], CAPTION_DROP)
        noise = torch.randn(clean.shape, generator=generator)
        timesteps = torch.randint(0, len(alphas), (len(picks),), generator=generator)
        noisy = noise_schedule.add_noise(clean, noise, timesteps)
        encoded = text_encoder(token_ids(tokenizer, texts))
        states = encoded.last_hidden_state
        predicted = unet(noisy, timesteps, states).sample
        target = noise_schedule.get_velocity(clean, noise, timesteps)
        # Objects are a fifth of the latent pixels and all of the shape: their errors count more.
        error = F.mse_loss(predicted, target, reduction="none") * weight
        per_sample = error.mean(dim=(1, 2, 3))
        loss = (per_sample * weights[timesteps]).mean()
        if heads is not None:  # the text encoder keeps saying what captions say
            loss = loss + TEXT_LOSS * heads.loss(encoded.pooler_output, targets(texts))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        ema.update()
        if step % 100 == 0 or step == steps - 1:
            elapsed = time.monotonic() - started
            log(f"diffusion {step:5d}/{steps} loss {loss.item():.4f} ({elapsed:.0f} s)")
    ema.copy_to()
