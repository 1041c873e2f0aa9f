"""The marshmallow schema that reads the raw string settings, one field per variable."""

from __future__ import annotations

from typing import Any

from marshmallow import EXCLUDE, Schema, fields, post_load, validate

from backend.settings.assemble import build_settings
from backend.settings.groups import Settings
from backend.settings.values import DEVICE_PATTERN, DEVICES_PATTERN, check_rate_limit


class SettingsSchema(Schema):
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
        validate=validate.Regexp(DEVICE_PATTERN, error="must be auto, cpu, cuda or cuda:N"),
    )
    devices = fields.String(
        data_key="DEVICES",
        load_default=None,
        validate=validate.Regexp(
            DEVICES_PATTERN, error="must be auto, or a comma-separated list of cpu, cuda, cuda:N"
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
    loras_dir = fields.String(data_key="LORAS_DIR", load_default="models/loras")
    max_loras_loaded = fields.Integer(
        data_key="MAX_LORAS_LOADED", load_default=8, validate=validate.Range(1, 1000)
    )
    embeddings_dir = fields.String(data_key="EMBEDDINGS_DIR", load_default="models/embeddings")
    vaes_dir = fields.String(data_key="VAES_DIR", load_default="models/vaes")
    default_vae = fields.String(data_key="DEFAULT_VAE", load_default=None)
    admin_api_keys = fields.String(data_key="ADMIN_API_KEYS", load_default=None)
    refiner_model = fields.String(data_key="REFINER_MODEL", load_default=None)
    max_upload_length = fields.Integer(
        data_key="MAX_UPLOAD_LENGTH", load_default=32 * 2**20, validate=validate.Range(65536)
    )
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
    a1111_preview_every = fields.Integer(
        data_key="A1111_PREVIEW_EVERY", load_default=0, validate=validate.Range(0, 1000)
    )
    api_keys = fields.String(data_key="API_KEYS", load_default=None)
    api_keys_file = fields.String(data_key="API_KEYS_FILE", load_default=None)
    rate_limit = fields.String(data_key="RATE_LIMIT", load_default=None, validate=check_rate_limit)
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
    sse_max_listeners = fields.Integer(
        data_key="SSE_MAX_LISTENERS", load_default=8, validate=validate.Range(0, 10_000)
    )
    sse_max_per_job = fields.Integer(
        data_key="SSE_MAX_PER_JOB", load_default=4, validate=validate.Range(1, 10_000)
    )
    sse_max_seconds = fields.Float(
        data_key="SSE_MAX_SECONDS", load_default=300.0, validate=validate.Range(1, 86_400)
    )
    sse_heartbeat_seconds = fields.Float(
        data_key="SSE_HEARTBEAT_SECONDS", load_default=15.0, validate=validate.Range(0.1, 3600)
    )

    @post_load
    def _build(self, data: dict[str, Any], **_: Any) -> Settings:
        return build_settings(data)
