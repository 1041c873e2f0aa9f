"""Server settings: from `.env`, overridden by the environment, typed and validated.

This module must stay cheap to import: gunicorn's master reads it for `bind`, and it must never
pull in torch or diffusers.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dotenv import dotenv_values
from marshmallow import EXCLUDE, Schema, ValidationError, fields, post_load, validate

ROOT = Path(__file__).resolve().parent.parent
"""The repository root: relative paths in settings are resolved against it, not the CWD."""


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


@dataclass(frozen=True)
class Limits:
    """Bounds on what one request may ask for; they protect memory and latency."""

    max_width: int
    max_height: int
    max_pixels: int
    max_steps: int
    max_prompt_length: int
    max_images: int


@dataclass(frozen=True)
class MemorySettings:
    """How pipelines are fitted into device memory (see README, "Memory")."""

    attention_slicing: bool
    vae_slicing: str  # auto (on for CPU devices) | true | false
    vae_tiling: str  # auto | true | false
    vae_tiling_pixels: int  # with auto: tile the VAE for images larger than this
    cpu_offload: str  # none | model | sequential
    sd3_drop_t5: bool
    idle_unload_seconds: float  # 0: never


# Components the speed settings name: the denoiser (a UNet, or SD3's transformer) and the VAE.
SPEED_COMPONENTS = ("unet", "transformer", "vae")


@dataclass(frozen=True)
class SpeedSettings:
    """What is done to a pipeline to make it faster (see README, "Performance")."""

    channels_last: tuple[str, ...] | None  # components stored channels_last; None: per device
    fuse_qkv: str  # auto | true | false
    compile: tuple[str, ...]  # components given to torch.compile; empty: none
    compile_mode: str  # torch.compile's mode
    prompt_cache_size: int  # text embeddings kept per loaded model; 0: off
    tiny_vae: bool  # decode with the family's AutoencoderTiny from MODELS_DIR


@dataclass(frozen=True)
class ServingSettings:
    """Admission control, deadlines, jobs and micro-batching (see README, "Serving under load")."""

    max_queue_size: int  # jobs waiting per device, besides the batch it runs
    request_timeout_seconds: float  # synchronous requests: wait + run; 0: no deadline
    job_timeout_seconds: float  # jobs (POST /jobs): wait + run; 0: no deadline
    job_ttl_seconds: float  # how long a finished job and its images are kept
    max_stored_jobs: int  # finished jobs kept at most (the oldest go first)
    job_max_attempts: int  # runs a job gets when server crashes cut it off; then it fails
    jobs_dir: Path | None  # where jobs are saved to outlive restarts; None (off): memory only
    max_batch_size: int  # images one pipeline call may serve; 1: no micro-batching
    batch_wait_ms: float  # how long a lone job waits for company


@dataclass(frozen=True)
class AccessSettings:
    """Who may call the server, how often, from which web origins, and what is logged."""

    api_keys: tuple[str, ...]  # empty: no authentication
    rate_limit: str | None  # flask-limiter notation, e.g. "30/minute"; None: unlimited
    cors_origins: tuple[str, ...]  # empty: CORS off
    log_prompts: bool


@dataclass(frozen=True)
class ScaleOutSettings:
    """The Celery mode: API processes and worker processes meeting in Redis."""

    queue_backend: str  # local: one process runs everything | celery: API and workers apart
    broker_url: str  # the Redis that carries Celery's messages and the job records
    redis_prefix: str  # of every key and queue name, so several servers can share one Redis
    results_dir: Path  # images of finished jobs, shared by API processes and workers
    worker_port: int  # a worker's own /health and /metrics
    lease_seconds: float  # a running job whose worker stops renewing this long is taken over
    heartbeat_seconds: float  # how often a worker says it is alive (3 missed: it is gone)


@dataclass(frozen=True)
class Settings:
    """Every setting of the server, typed and validated."""

    host: str
    port: int
    http_threads: int
    header_timeout_seconds: float  # a request head must arrive within this (see http_worker)
    body_min_bytes_per_second: int  # bodies slower than this, after the grace, are cut off
    body_grace_seconds: float
    send_timeout_seconds: float  # a response write making no progress this long is abandoned
    graceful_timeout: int
    log_level: str
    default_model: str
    models_dir: Path
    device: str  # DEVICE: one device; auto = the first GPU, else the CPU
    devices: tuple[str, ...] | None  # DEVICES, when set: several; auto = every visible GPU
    torch_dtype: str
    memory: MemorySettings
    speed: SpeedSettings
    max_content_length: int
    response_format: str
    embed_metadata: bool
    max_loaded_models: int
    limits: Limits
    serving: ServingSettings
    access: AccessSettings
    scale_out: ScaleOutSettings


def resolve_path(value: str | os.PathLike[str]) -> Path:
    """A path from the settings, relative ones taken from the repository root."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else ROOT / path


_DEVICE_PATTERN = r"^(auto|cpu|cuda(:\d+)?)$"
_DEVICES_PATTERN = r"^(auto|(cpu|cuda(:\d+)?)(\s*,\s*(cpu|cuda(:\d+)?))*)$"


def _components(value: str, name: str, allow_auto: bool) -> tuple[str, ...] | None:
    """A component list setting: auto (None), none/false, true (all), or unet,transformer,vae."""
    value = value.strip().lower()
    if allow_auto and value == "auto":
        return None
    if value in ("none", "false"):
        return ()
    if value == "true":
        return SPEED_COMPONENTS
    items = _split(value)
    unknown = [item for item in items if item not in SPEED_COMPONENTS]
    if unknown or not items:
        choices = "auto, " if allow_auto else ""
        raise ValidationError(
            f"must be {choices}true, none, or a comma-separated list of "
            f"{', '.join(SPEED_COMPONENTS)} (got {', '.join(unknown) or 'nothing'})",
            name,
        )
    return items


def _check_rate_limit(value: str) -> None:
    # `limits` is flask-limiter's own parser: what passes here is what the limiter enforces.
    from limits import parse_many

    try:
        parse_many(value)
    except ValueError:
        raise ValidationError(
            "must be flask-limiter notation such as 30/minute or 10/second;100/hour"
        ) from None


class _SettingsSchema(Schema):
    """Parses the raw string settings; each error is keyed by the variable's name."""

    class Meta:
        unknown = EXCLUDE  # the environment holds many unrelated variables

    host = fields.String(data_key="HOST", load_default="0.0.0.0", validate=validate.Length(min=1))
    port = fields.Integer(data_key="PORT", load_default=5000, validate=validate.Range(1, 65535))
    http_threads = fields.Integer(
        data_key="HTTP_THREADS", load_default=32, validate=validate.Range(1, 1024)
    )
    header_timeout_seconds = fields.Float(
        data_key="HEADER_TIMEOUT_SECONDS", load_default=10.0, validate=validate.Range(1, 3600)
    )
    body_min_bytes_per_second = fields.Integer(
        data_key="BODY_MIN_BYTES_PER_SECOND", load_default=1024, validate=validate.Range(1)
    )
    body_grace_seconds = fields.Float(
        data_key="BODY_GRACE_SECONDS", load_default=5.0, validate=validate.Range(1, 3600)
    )
    send_timeout_seconds = fields.Float(
        data_key="SEND_TIMEOUT_SECONDS", load_default=30.0, validate=validate.Range(1, 3600)
    )
    graceful_timeout = fields.Integer(
        data_key="GRACEFUL_TIMEOUT", load_default=60, validate=validate.Range(0, 3600)
    )
    log_level = fields.String(
        data_key="LOG_LEVEL",
        load_default="info",
        validate=validate.OneOf(["debug", "info", "warning", "error", "critical"]),
    )
    default_model = fields.String(
        data_key="DEFAULT_MODEL", load_default="demo", validate=validate.Length(min=1)
    )
    models_dir = fields.String(data_key="MODELS_DIR", load_default="models")
    device = fields.String(
        data_key="DEVICE",
        load_default="auto",
        validate=validate.Regexp(_DEVICE_PATTERN, error="must be auto, cpu, cuda or cuda:N"),
    )
    devices = fields.String(
        data_key="DEVICES",
        load_default=None,
        validate=validate.Regexp(
            _DEVICES_PATTERN, error="must be auto, or a comma-separated list of cpu, cuda, cuda:N"
        ),
    )
    torch_dtype = fields.String(
        data_key="TORCH_DTYPE",
        load_default="auto",
        validate=validate.OneOf(["auto", "float16", "bfloat16", "float32"]),
    )
    max_content_length = fields.Integer(
        data_key="MAX_CONTENT_LENGTH", load_default=65536, validate=validate.Range(1024)
    )
    max_width = fields.Integer(data_key="MAX_WIDTH", load_default=2048, validate=validate.Range(64))
    max_height = fields.Integer(
        data_key="MAX_HEIGHT", load_default=2048, validate=validate.Range(64)
    )
    max_pixels = fields.Integer(
        data_key="MAX_PIXELS", load_default=1536 * 1024, validate=validate.Range(64 * 64)
    )
    max_steps = fields.Integer(data_key="MAX_STEPS", load_default=100, validate=validate.Range(1))
    max_prompt_length = fields.Integer(
        data_key="MAX_PROMPT_LENGTH", load_default=2000, validate=validate.Range(1)
    )
    max_images = fields.Integer(
        data_key="MAX_IMAGES", load_default=4, validate=validate.Range(1, 100)
    )
    response_format = fields.String(
        data_key="RESPONSE_FORMAT", load_default="png", validate=validate.OneOf(["png", "json"])
    )
    embed_metadata = fields.Boolean(data_key="EMBED_METADATA", load_default=True)
    max_loaded_models = fields.Integer(
        data_key="MAX_LOADED_MODELS", load_default=1, validate=validate.Range(1, 64)
    )
    attention_slicing = fields.Boolean(data_key="ATTENTION_SLICING", load_default=False)
    vae_slicing = fields.String(
        data_key="VAE_SLICING",
        load_default="auto",
        validate=validate.OneOf(["auto", "true", "false"]),
    )
    vae_tiling = fields.String(
        data_key="VAE_TILING",
        load_default="auto",
        validate=validate.OneOf(["auto", "true", "false"]),
    )
    vae_tiling_pixels = fields.Integer(
        data_key="VAE_TILING_PIXELS", load_default=1024 * 1024, validate=validate.Range(64 * 64)
    )
    cpu_offload = fields.String(
        data_key="CPU_OFFLOAD",
        load_default="none",
        validate=validate.OneOf(["none", "model", "sequential"]),
    )
    sd3_drop_t5 = fields.Boolean(data_key="SD3_DROP_T5", load_default=False)
    idle_unload_seconds = fields.Float(
        data_key="IDLE_UNLOAD_SECONDS", load_default=0.0, validate=validate.Range(0)
    )
    channels_last = fields.String(data_key="CHANNELS_LAST", load_default="auto")
    fuse_qkv = fields.String(
        data_key="FUSE_QKV", load_default="auto", validate=validate.OneOf(["auto", "true", "false"])
    )
    compile = fields.String(data_key="COMPILE", load_default="false")
    compile_mode = fields.String(
        data_key="COMPILE_MODE",
        load_default="default",
        validate=validate.OneOf(
            ["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]
        ),
    )
    prompt_cache_size = fields.Integer(
        data_key="PROMPT_CACHE_SIZE", load_default=64, validate=validate.Range(0, 100_000)
    )
    tiny_vae = fields.Boolean(data_key="TINY_VAE", load_default=False)
    max_queue_size = fields.Integer(
        data_key="MAX_QUEUE_SIZE", load_default=8, validate=validate.Range(0, 100_000)
    )
    request_timeout_seconds = fields.Float(
        data_key="REQUEST_TIMEOUT_SECONDS", load_default=300.0, validate=validate.Range(0)
    )
    job_timeout_seconds = fields.Float(
        data_key="JOB_TIMEOUT_SECONDS", load_default=1800.0, validate=validate.Range(0)
    )
    job_ttl_seconds = fields.Float(
        data_key="JOB_TTL_SECONDS", load_default=3600.0, validate=validate.Range(1)
    )
    max_stored_jobs = fields.Integer(
        data_key="MAX_STORED_JOBS", load_default=1000, validate=validate.Range(1, 1_000_000)
    )
    job_max_attempts = fields.Integer(
        data_key="JOB_MAX_ATTEMPTS", load_default=3, validate=validate.Range(1, 100)
    )
    jobs_dir = fields.String(data_key="JOBS_DIR", load_default=".jobs")
    max_batch_size = fields.Integer(
        data_key="MAX_BATCH_SIZE", load_default=4, validate=validate.Range(1, 64)
    )
    batch_wait_ms = fields.Float(
        data_key="BATCH_WAIT_MS", load_default=0.0, validate=validate.Range(0, 10_000)
    )
    api_keys = fields.String(data_key="API_KEYS", load_default=None)
    api_keys_file = fields.String(data_key="API_KEYS_FILE", load_default=None)
    rate_limit = fields.String(data_key="RATE_LIMIT", load_default=None, validate=_check_rate_limit)
    cors_origins = fields.String(
        data_key="CORS_ORIGINS",
        load_default=None,
        validate=validate.Regexp(
            r"^(\*|https?://[^\s,/]+(\s*,\s*https?://[^\s,/]+)*)$",
            error="must be * or a comma-separated list of origins such as https://app.example.com",
        ),
    )
    log_prompts = fields.Boolean(data_key="LOG_PROMPTS", load_default=False)
    queue_backend = fields.String(
        data_key="QUEUE_BACKEND", load_default="local", validate=validate.OneOf(["local", "celery"])
    )
    broker_url = fields.String(
        data_key="BROKER_URL",
        load_default="redis://localhost:6379/0",
        validate=validate.Regexp(r"^rediss?://\S+$", error="must be a redis:// or rediss:// URL"),
    )
    redis_prefix = fields.String(
        data_key="REDIS_PREFIX",
        load_default="t2i",
        validate=validate.Regexp(
            r"^[A-Za-z0-9_-]{1,32}$", error="must be 1-32 letters, digits, _ or -"
        ),
    )
    results_dir = fields.String(data_key="RESULTS_DIR", load_default=".results")
    worker_port = fields.Integer(
        data_key="WORKER_PORT", load_default=9200, validate=validate.Range(1, 65535)
    )
    lease_seconds = fields.Float(
        data_key="LEASE_SECONDS", load_default=10.0, validate=validate.Range(1, 3600)
    )
    heartbeat_seconds = fields.Float(
        data_key="HEARTBEAT_SECONDS", load_default=2.0, validate=validate.Range(0.1, 600)
    )

    @post_load
    def _build(self, data: dict[str, Any], **_: Any) -> Settings:
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
            channels_last=_components(data.pop("channels_last"), "CHANNELS_LAST", True),
            fuse_qkv=data.pop("fuse_qkv"),
            compile=_components(data.pop("compile"), "COMPILE", False) or (),
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
        )
        jobs_dir = data.pop("jobs_dir")
        serving = ServingSettings(
            **{name: data.pop(name) for name in serving_names},
            jobs_dir=None if jobs_dir.lower() == "off" else resolve_path(jobs_dir),
        )
        access = AccessSettings(
            api_keys=_api_keys(data.pop("api_keys"), data.pop("api_keys_file")),
            rate_limit=data.pop("rate_limit"),
            cors_origins=_split(data.pop("cors_origins")),
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
        data["log_level"] = data["log_level"].lower()
        devices = data.pop("devices")
        return Settings(
            models_dir=resolve_path(data.pop("models_dir")),
            devices=tuple(d.strip() for d in devices.split(",")) if devices else None,
            limits=limits,
            memory=memory,
            speed=speed,
            serving=serving,
            access=access,
            scale_out=scale_out,
            **data,
        )


def _split(value: str | None) -> tuple[str, ...]:
    return tuple(item.strip() for item in (value or "").split(",") if item.strip())


def _api_keys(listed: str | None, file: str | None) -> tuple[str, ...]:
    """Keys from API_KEYS (comma-separated) and API_KEYS_FILE (one per line, # comments)."""
    keys = list(_split(listed))
    if file:
        path = resolve_path(file)
        try:
            lines = path.read_text().splitlines()
        except OSError as error:
            raise ValidationError(
                f"cannot read {path}: {error.strerror or error}", "API_KEYS_FILE"
            ) from None
        keys += [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    if any(len(key) < 16 for key in keys):
        # A short key can be guessed; refusing it is kinder than a breach.
        raise ValidationError("every API key must be at least 16 characters long", "API_KEYS")
    return tuple(dict.fromkeys(keys))


def setting_names() -> list[str]:
    """Every variable the settings read (each is documented in README.md and .env)."""
    return [field.data_key or name for name, field in _SettingsSchema().fields.items()]


def env_file() -> Path:
    """The `.env` file read for defaults (`ENV_FILE` may point elsewhere)."""
    return Path(os.environ.get("ENV_FILE", ROOT / ".env"))


def load_settings(overrides: Mapping[str, Any] | None = None) -> Settings:
    """Settings from `.env`, then the environment, then `overrides` (each wins over the last)."""
    raw: dict[str, Any] = {
        key: value for key, value in dotenv_values(env_file()).items() if value is not None
    }
    raw.update(os.environ)
    raw.update({key: str(value) for key, value in (overrides or {}).items()})
    # An empty variable (`DEVICE=`) means "use the default", as it does in most .env tooling.
    raw = {key: value for key, value in raw.items() if value != ""}
    try:
        settings: Settings = _SettingsSchema().load(raw)
    except ValidationError as error:
        problems = "; ".join(
            f"{name}: {' '.join(map(str, messages))}"
            for name, messages in sorted(error.normalized_messages().items())
        )
        raise ConfigError(f"Invalid configuration: {problems}") from None
    return settings
