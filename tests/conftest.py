"""Shared fixtures: the demo model in a temp folder, apps on it, and real gunicorn servers."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

import backend  # noqa: F401  (hub offline before anything imports diffusers)
from backend.main import create_app
from backend.model.demo import save_demo_model
from backend.model.demo_trained import install_demo_loras, install_trained_demo
from bench.server import Server, server_env

LOAD_TIMEOUT = 120.0

# Every limit pinned, so a developer's own environment or .env cannot change what tests see.
LIMITS = {
    "MAX_WIDTH": 2048,
    "MAX_HEIGHT": 2048,
    "MAX_PIXELS": 1536 * 1024,
    "MAX_STEPS": 100,
    "MAX_PROMPT_LENGTH": 2000,
    "MAX_CONTENT_LENGTH": 65536,
}
# Serving and access settings at their defaults ("" means the default), for the same reason.
SERVING = {
    "MAX_QUEUE_SIZE": 8,
    "REQUEST_TIMEOUT_SECONDS": 300,
    "JOB_TIMEOUT_SECONDS": 1800,
    "JOB_TTL_SECONDS": 3600,
    "JOB_MAX_ATTEMPTS": 3,
    "MAX_BATCH_SIZE": 4,
    "BATCH_WAIT_MS": 0,
    "API_KEYS": "",
    "API_KEYS_FILE": "",
    "RATE_LIMIT": "",
    "CORS_ORIGINS": "",
    "LOG_PROMPTS": "false",
    "QUEUE_BACKEND": "local",  # the scale-out tests start their own cluster
}
# Speed settings at their defaults: on the CPU, the VAE channels_last and the prompt cache.
SPEED = {
    "CHANNELS_LAST": "auto",
    "FUSE_QKV": "auto",
    "COMPILE": "false",
    "COMPILE_MODE": "default",
    "PROMPT_CACHE_SIZE": 64,
    "TINY_VAE": "false",
}


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A MODELS_DIR holding the demo model, installed as `make demo-model` installs it, and
    its all-green LoRA in `loras/`."""
    folder = tmp_path_factory.mktemp("models")
    install_trained_demo(folder / "demo")
    install_demo_loras(folder / "loras")
    return folder


@pytest.fixture(scope="session")
def base_settings(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Overrides that make an app hermetic: the temp demo model, on the CPU, jobs in temp."""
    return {
        "MODELS_DIR": str(models_dir),
        "LORAS_DIR": str(models_dir / "loras"),
        "JOBS_DIR": str(tmp_path_factory.mktemp("jobs")),
        "DEFAULT_MODEL": "demo",
        "DEVICE": "cpu",
        "TORCH_DTYPE": "auto",
        "LOG_LEVEL": "info",
        **LIMITS,
        **SERVING,
        **SPEED,
    }


@pytest.fixture
def make_app(base_settings: dict[str, object], tmp_path: Path) -> Iterator[Callable[..., object]]:
    """Factory: an app with extra overrides, already done loading (successfully or not).

    Each app keeps its jobs in its own folder unless JOBS_DIR is given.
    """
    engines = []

    def factory(wait: bool = True, **overrides: object):
        jobs = {"JOBS_DIR": str(tmp_path / f"jobs-{len(engines)}")}
        app = create_app({**base_settings, **jobs, **overrides})
        engine = app.extensions["engine"]
        engines.append(engine)
        if wait:
            assert engine.wait_until_loaded(LOAD_TIMEOUT), "model did not finish loading"
        return app

    yield factory
    for engine in engines:
        engine.stop(timeout=30)


@pytest.fixture(scope="session")
def app(base_settings: dict[str, object]) -> Iterator[object]:
    """The demo-model app most tests share (it is stateless between requests)."""
    application = create_app(base_settings)
    engine = application.extensions["engine"]
    assert engine.wait_until_loaded(LOAD_TIMEOUT)
    assert engine.status().ready, engine.status().error
    yield application
    engine.stop(timeout=30)


@pytest.fixture
def client(app):
    """A Flask test client on the shared app."""
    return app.test_client()


class ServerProcess(Server):
    """A real server started as a subprocess, with the waits tests need."""

    def wait_for_ping(self, timeout: float = 60.0) -> None:
        """Return as soon as the server answers /ping."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"server exited early:\n{self.log()}"
            try:
                if requests.get(f"{self.url}/ping", timeout=1).text == "pong":
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"no pong within {timeout}s:\n{self.log()}")

    def wait_until_healthy(self, timeout: float = LOAD_TIMEOUT) -> list[int]:
        """Poll /health until 200; returns every status code seen on the way."""
        seen = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            seen.append(requests.get(f"{self.url}/health", timeout=5).status_code)
            if seen[-1] == 200:
                return seen
            time.sleep(0.05)
        raise AssertionError(f"not healthy within {timeout}s (saw {set(seen)}):\n{self.log()}")


def launch_server(
    settings: dict[str, object],
    log_path: Path,
    command: list[str] | None = None,
    **overrides: object,
) -> ServerProcess:
    """Start a real server (gunicorn with gunicorn.conf.py by default) on a free loopback port."""
    return ServerProcess(server_env(settings, **overrides), log_path, command)


@pytest.fixture
def start_server(
    base_settings: dict[str, object], tmp_path: Path
) -> Iterator[Callable[..., ServerProcess]]:
    """Factory: `launch_server` with the test settings; every server is stopped afterwards."""
    servers: list[ServerProcess] = []

    def factory(command: list[str] | None = None, **overrides: object) -> ServerProcess:
        log_path = tmp_path / f"server-{len(servers)}.log"
        jobs = {"JOBS_DIR": str(tmp_path / f"jobs-{len(servers)}")}
        servers.append(launch_server(base_settings, log_path, command, **{**jobs, **overrides}))
        return servers[-1]

    yield factory
    for server in servers:
        server.stop()


@pytest.fixture
def demo_copy(models_dir: Path, tmp_path: Path) -> Callable[[str], Path]:
    """Factory: a private copy of the demo model folder, to break in a test."""

    def factory(name: str = "broken") -> Path:
        return Path(shutil.copytree(models_dir / "demo", tmp_path / "models" / name))

    return factory


@pytest.fixture(scope="session")
def two_models_dir(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A MODELS_DIR with the demo and a second model, 'other' (the same weights)."""
    folder = tmp_path_factory.mktemp("two-models")
    shutil.copytree(models_dir / "demo", folder / "demo")
    shutil.copytree(models_dir / "demo", folder / "other")
    return folder


@pytest.fixture(scope="session")
def api_server(
    base_settings: dict[str, object], two_models_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A gunicorn server, shared by the client-library tests, serving two models."""
    log_path = tmp_path_factory.mktemp("api-server") / "server.log"
    server = launch_server(
        base_settings, log_path, MODELS_DIR=str(two_models_dir), MAX_LOADED_MODELS=2
    )
    try:
        server.wait_for_ping()
        server.wait_until_healthy()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def family_models_dir(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A MODELS_DIR with a demo model of every family: demo (SD), demo-sdxl, demo-sd3."""
    folder = tmp_path_factory.mktemp("families")
    shutil.copytree(models_dir / "demo", folder / "demo")
    save_demo_model(folder / "demo-sdxl", "sdxl")
    save_demo_model(folder / "demo-sd3", "sd3")
    return folder


@pytest.fixture(scope="module")
def family_client(family_models_dir: Path, base_settings: dict[str, object]) -> Iterator[object]:
    """A Flask client on an app serving every family's demo (one app per test module)."""
    app = create_app(
        {**base_settings, "MODELS_DIR": str(family_models_dir), "MAX_LOADED_MODELS": 3}
    )
    assert app.extensions["engine"].wait_until_loaded(LOAD_TIMEOUT)
    yield app.test_client()
    app.extensions["engine"].stop(timeout=30)
