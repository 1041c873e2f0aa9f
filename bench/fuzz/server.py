"""The server under fuzzing: real gunicorn on a free loopback port, hermetic, cheap to feed."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import backend  # noqa: F401  (hub offline before anything imports diffusers)
from backend.model.demo_trained import install_trained_demo, is_installed
from bench.server import Server, server_env

API_KEY = "fuzz-key-0123456789abcdef"
ORIGIN = "https://fuzz.example"
# Small limits, so that what the fuzzer gets accepted stays cheap: at most 128x64 pixels, 2 steps
# and 2 images (well under 0.1 s on a CPU; the demo model's own 64x64 fits, and its 10 default
# steps are cut to the limit). A queue the fuzzers do not fill (a full
# queue's 503 with Retry-After is documented: no failure for the hostile part). API keys, CORS
# and LOG_PROMPTS are on: their handling of headers and bodies is fuzzed too. Every other
# setting is pinned, so that a developer's .env cannot change what is fuzzed.
SETTINGS: dict[str, object] = {
    "DEFAULT_MODEL": "demo",
    "DEVICE": "cpu",
    "TORCH_DTYPE": "auto",
    "LOG_LEVEL": "warning",
    "MAX_WIDTH": 128,
    "MAX_HEIGHT": 128,
    "MAX_PIXELS": 128 * 64,
    "MAX_STEPS": 2,
    "MAX_PROMPT_LENGTH": 2000,
    "MAX_IMAGES": 2,
    "MAX_CONTENT_LENGTH": 65536,
    # schemathesis submits jobs in bursts (202s in milliseconds, 24 filled a queue): a deep one
    # (the engine warns at start that HTTP_THREADS cannot hold as many synchronous waiters).
    "MAX_QUEUE_SIZE": 1000,
    "MAX_STORED_JOBS": 200,
    "REQUEST_TIMEOUT_SECONDS": 120,
    "JOB_TIMEOUT_SECONDS": 600,
    "JOB_TTL_SECONDS": 3600,
    "MAX_BATCH_SIZE": 4,
    "BATCH_WAIT_MS": 0,
    "HTTP_THREADS": 32,
    "API_KEYS": API_KEY,
    "API_KEYS_FILE": "",
    "RATE_LIMIT": "",
    "CORS_ORIGINS": ORIGIN,
    "LOG_PROMPTS": "true",
    "PROMPT_CACHE_SIZE": 64,
    "COMPILE": "false",
    "TINY_VAE": "false",
}
AUTH = {"Authorization": f"Bearer {API_KEY}"}


@contextmanager
def fuzz_server(workdir: Path, models: Path | None = None) -> Iterator[Server]:
    """A healthy server on the demo model of `models` (default: built in `workdir`)."""
    workdir.mkdir(parents=True, exist_ok=True)
    models = models or workdir / "models"
    if not is_installed(models / "demo"):
        install_trained_demo(models / "demo")
    env = server_env(SETTINGS, MODELS_DIR=models, JOBS_DIR=workdir / "jobs")
    server = Server(env, workdir / "server.log")
    try:
        server.seconds_until_healthy(timeout=300)
        yield server
    finally:
        server.stop()
