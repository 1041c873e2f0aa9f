"""Docker files cannot run here (no engine), so guard what would silently break them."""

from __future__ import annotations

import fnmatch
import re

import yaml

from backend.config import ROOT


def dockerfile_copies() -> list[str]:
    sources = []
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            sources += line.split()[1:-1]
    return sources


def test_every_copied_file_exists_and_is_not_docker_ignored():
    patterns = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip()]
    for source in dockerfile_copies():
        assert (ROOT / source).exists(), source
        ignored = False
        for pattern in patterns:  # last match wins, as in Docker
            negated = pattern.startswith("!")
            if fnmatch.fnmatch(source.rstrip("/"), pattern.lstrip("!")):
                ignored = not negated
        assert not ignored, f"{source} is excluded by .dockerignore"


def test_compose_serves_the_image_with_gpu_models_and_env():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    (service,) = compose["services"].values()
    assert service["env_file"] == ".env"
    assert "./models:/app/models" in service["volumes"]
    assert "jobs:/app/.jobs" in service["volumes"] and "jobs" in compose["volumes"]
    # The container gets SIGTERM, then this long to drain before SIGKILL.
    assert int(service["stop_grace_period"].rstrip("s")) > 60
    assert service["ports"] == ["${PORT:-5000}:5000"]
    assert service["environment"]["PORT"] == "5000"
    (device,) = service["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert "/health" in " ".join(service["healthcheck"]["test"])


def test_image_runs_gunicorn_with_the_repository_config():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"gunicorn -c gunicorn\.conf\.py", dockerfile)
    assert "WORKDIR /app" in dockerfile  # MODELS_DIR=models then resolves to /app/models
    assert "requirements.txt" in dockerfile
