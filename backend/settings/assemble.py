"""Turning the schema's flat, parsed fields into `Settings` and its groups."""

from __future__ import annotations

from typing import Any

from backend.settings.groups import (
    AccessSettings,
    AssetSettings,
    Limits,
    MemorySettings,
    ScaleOutSettings,
    ServingSettings,
    Settings,
    SpeedSettings,
    StreamSettings,
)
from backend.settings.paths import resolve_path
from backend.settings.values import api_keys, components, split


def build_settings(data: dict[str, Any]) -> Settings:
    """`Settings` from the schema's loaded fields (`data` is emptied on the way)."""
    limit_names = (
        "max_width",
        "max_height",
        "max_pixels",
        "max_steps",
        "max_prompt_length",
        "max_images",
    )
    limits = Limits(**{name: data.pop(name) for name in limit_names})
    memory_names = (
        "attention_slicing",
        "vae_slicing",
        "vae_tiling",
        "vae_tiling_pixels",
        "cpu_offload",
        "sd3_drop_t5",
        "idle_unload_seconds",
    )
    memory = MemorySettings(**{name: data.pop(name) for name in memory_names})
    speed = SpeedSettings(
        channels_last=components(data.pop("channels_last"), "CHANNELS_LAST", True),
        fuse_qkv=data.pop("fuse_qkv"),
        compile=components(data.pop("compile"), "COMPILE", False) or (),
        compile_mode=data.pop("compile_mode"),
        prompt_cache_size=data.pop("prompt_cache_size"),
        tiny_vae=data.pop("tiny_vae"),
    )
    serving_names = (
        "max_queue_size",
        "request_timeout_seconds",
        "job_timeout_seconds",
        "job_ttl_seconds",
        "max_stored_jobs",
        "job_max_attempts",
        "max_batch_size",
        "batch_wait_ms",
        "a1111_preview_every",
    )
    jobs_dir = data.pop("jobs_dir")
    serving = ServingSettings(
        **{name: data.pop(name) for name in serving_names},
        jobs_dir=None if jobs_dir.lower() == "off" else resolve_path(jobs_dir),
    )
    access = AccessSettings(
        api_keys=api_keys(data.pop("api_keys"), data.pop("api_keys_file")),
        rate_limit=data.pop("rate_limit"),
        cors_origins=split(data.pop("cors_origins")),
        log_prompts=data.pop("log_prompts"),
    )
    scale_out = ScaleOutSettings(
        queue_backend=data.pop("queue_backend"),
        broker_url=data.pop("broker_url"),
        redis_prefix=data.pop("redis_prefix"),
        results_dir=resolve_path(data.pop("results_dir")),
        worker_port=data.pop("worker_port"),
        lease_seconds=data.pop("lease_seconds"),
        heartbeat_seconds=data.pop("heartbeat_seconds"),
    )
    assets = AssetSettings(
        loras_dir=resolve_path(data.pop("loras_dir")),
        max_loras_loaded=data.pop("max_loras_loaded"),
        embeddings_dir=resolve_path(data.pop("embeddings_dir")),
        vaes_dir=resolve_path(data.pop("vaes_dir")),
        default_vae=data.pop("default_vae") or None,
        admin_keys=api_keys(data.pop("admin_api_keys"), None, "ADMIN_API_KEYS"),
        refiner_model=data.pop("refiner_model") or None,
        max_upload_length=data.pop("max_upload_length"),
    )
    streams = StreamSettings(
        max_listeners=data.pop("sse_max_listeners"),
        max_per_job=data.pop("sse_max_per_job"),
        max_seconds=data.pop("sse_max_seconds"),
        heartbeat_seconds=data.pop("sse_heartbeat_seconds"),
    )
    data["log_level"] = data["log_level"].lower()
    devices = data.pop("devices")
    return Settings(
        models_dir=resolve_path(data.pop("models_dir")),
        devices=tuple(d.strip() for d in devices.split(",")) if devices else None,
        limits=limits,
        assets=assets,
        memory=memory,
        speed=speed,
        serving=serving,
        access=access,
        scale_out=scale_out,
        streams=streams,
        **data,
    )
