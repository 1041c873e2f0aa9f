"""The settings, typed: one frozen dataclass per group, and `Settings` holding them all."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


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
class AssetSettings:
    """The files users add to a model per request: LoRAs, embeddings, VAEs (docs/models.md)."""

    loras_dir: Path  # LoRA .safetensors files, named by requests
    max_loras_loaded: int  # adapters kept loaded per model (least recently used out)
    embeddings_dir: Path  # textual-inversion .safetensors files, used by their token
    vaes_dir: Path  # VAE files or folders, named by requests' `vae`
    default_vae: str | None  # a VAE from VAES_DIR for requests that name none; None: the model's
    admin_keys: tuple[str, ...]  # keys that may change server state (POST /sdapi/v1/options)
    refiner_model: str | None  # an SDXL refiner folder in MODELS_DIR requests may name; None: none
    max_upload_length: int  # largest multipart or JSON body that carries images, in bytes


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
    # Live previews every N steps for AUTOMATIC1111's txt2img/img2img (its clients cannot ask
    # per request; /sdapi/v1/progress shows them); 0: none
    a1111_preview_every: int = 0


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
class StreamSettings:
    """Server-Sent Events streams (GET /jobs/<id>/events, OpenAI streaming): each holds an HTTP
    thread while open, so they are bounded (docs/progress.md)."""

    max_listeners: int  # streams open at once in this process; beyond: 503
    max_per_job: int  # streams open at once on one job; beyond: 503
    max_seconds: float  # a stream ends after this long; the client reconnects (Last-Event-ID)
    heartbeat_seconds: float  # a comment line this often when nothing else was sent


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
    assets: AssetSettings
    serving: ServingSettings
    access: AccessSettings
    scale_out: ScaleOutSettings
    streams: StreamSettings
