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

from demo_model.data import captions, pixels, scenes, token_ids

CAPTION_DROP = 0.1  # empty captions: the unconditional model that guidance pushes away from
MIN_SNR_GAMMA = 5.0  # min-SNR weighting: converges several times faster on few steps
LOW_RES_SHARE = 0.2  # batches drawn at 64x64, so that size works too


def _schedule(optimizer: torch.optim.Optimizer, steps: int, warmup: int) -> Any:
    """Linear warm-up, then cosine decay to a tenth."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, steps - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def train_vae(vae: Any, rng: random.Random, steps: int, log: Callable[[str], None]) -> None:
    """Reconstruction (L1 + MSE) and a whisper of KL, on 64x64 crops of 128x128 scenes."""
    generator = torch.Generator().manual_seed(rng.randrange(2**31))
    optimizer = torch.optim.AdamW(vae.parameters(), lr=2e-3, weight_decay=0.0)
    schedule = _schedule(optimizer, steps, warmup=50)
    started = time.monotonic()
    for step in range(steps):
        full = pixels(scenes(rng, 32), 128)
        top, left = rng.randrange(0, 65, 8), rng.randrange(0, 65, 8)
        batch = full[:, :, top : top + 64, left : left + 64]
        posterior = vae.encode(batch).latent_dist
        rebuilt = vae.decode(posterior.sample(generator)).sample
        loss = F.l1_loss(rebuilt, batch) + F.mse_loss(rebuilt, batch)
        loss = loss + 1e-6 * posterior.kl().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        if step % 100 == 0 or step == steps - 1:
            log(
                f"vae {step:5d}/{steps} loss {loss.item():.4f} ({time.monotonic() - started:.0f} s)"
            )


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
        for shadow, param in zip(self.shadow, self.parameters, strict=True):
            shadow.lerp_(param.detach(), 1 - decay)

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
    pools: dict[int, tuple[list, torch.Tensor]],
    rng: random.Random,
    steps: int,
    log: Callable[[str], None],
) -> None:
    """v-prediction on the scaled latents in `pools` (latent side -> scenes, latents)."""
    generator = torch.Generator().manual_seed(rng.randrange(2**31))
    params = [*unet.parameters(), *text_encoder.parameters()]
    optimizer = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.01, betas=(0.9, 0.99))
    schedule = _schedule(optimizer, steps, warmup=100)
    ema = Ema(params)
    alphas = noise_schedule.alphas_cumprod
    snr = alphas / (1 - alphas)
    weights = torch.clamp(snr, max=MIN_SNR_GAMMA) / (snr + 1)  # min-SNR, for v-prediction
    sides = sorted(pools)
    started = time.monotonic()
    for step in range(steps):
        side = sides[0] if rng.random() < LOW_RES_SHARE else sides[-1]
        pool_scenes, latents = pools[side]
        picks = [rng.randrange(len(pool_scenes)) for _ in range(64)]
        clean = latents[picks]
        ids = token_ids(tokenizer, captions(rng, [pool_scenes[i] for i in picks], CAPTION_DROP))
        noise = torch.randn(clean.shape, generator=generator)
        timesteps = torch.randint(0, len(alphas), (len(picks),), generator=generator)
        noisy = noise_schedule.add_noise(clean, noise, timesteps)
        states = text_encoder(ids)[0]
        predicted = unet(noisy, timesteps, states).sample
        target = noise_schedule.get_velocity(clean, noise, timesteps)
        per_sample = F.mse_loss(predicted, target, reduction="none").mean(dim=(1, 2, 3))
        loss = (per_sample * weights[timesteps]).mean()
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
