"""Settings: `.env`, then the environment, then overrides; clear errors; the model catalogue."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from backend.config import ROOT, ConfigError, load_settings, setting_names
from backend.model.catalogue import Family, ModelName
from backend.model.registry import resolve_model


@pytest.fixture
def env_file(tmp_path, monkeypatch) -> Path:
    """A private .env, so the repository's own file and the caller's environment do not leak in."""
    path = tmp_path / ".env"
    monkeypatch.setenv("ENV_FILE", str(path))
    for name in ("HOST", "PORT", "DEFAULT_MODEL", "MODELS_DIR", "DEVICE", "TORCH_DTYPE"):
        monkeypatch.delenv(name, raising=False)
    return path


def test_defaults_without_any_file(env_file):
    settings = load_settings()
    assert (settings.host, settings.port) == ("0.0.0.0", 5000)
    assert settings.default_model == "demo"
    assert settings.models_dir == ROOT / "models"
    assert (settings.device, settings.torch_dtype) == ("auto", "auto")


def test_env_file_then_environment_then_overrides(env_file, monkeypatch):
    env_file.write_text("PORT=6000\nDEFAULT_MODEL=sd-turbo\nDEVICE=cpu\n")
    settings = load_settings()
    assert (settings.port, settings.default_model, settings.device) == (6000, "sd-turbo", "cpu")
    monkeypatch.setenv("PORT", "5055")
    assert load_settings().port == 5055
    assert load_settings().default_model == "sd-turbo"
    assert load_settings({"PORT": 7000}).port == 7000


def test_empty_value_means_default(env_file):
    env_file.write_text("DEVICE=\nPORT=\n")
    settings = load_settings()
    assert (settings.device, settings.port) == ("auto", 5000)


def test_repository_env_file_is_valid_and_documents_the_defaults(monkeypatch):
    monkeypatch.delenv("ENV_FILE", raising=False)
    documented = {}
    for line in (ROOT / ".env").read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            documented[key] = value
    monkeypatch.setattr("os.environ", {})
    settings = load_settings()
    assert documented["DEFAULT_MODEL"] == settings.default_model == "demo"
    assert int(documented["PORT"]) == settings.port


@pytest.mark.parametrize(
    ("content", "variable"),
    [
        ("PORT=abc", "PORT"),
        ("PORT=70000", "PORT"),
        ("DEVICE=gpu", "DEVICE"),
        ("DEVICE=cuda:x", "DEVICE"),
        ("TORCH_DTYPE=float8", "TORCH_DTYPE"),
        ("MAX_STEPS=0", "MAX_STEPS"),
        ("LOG_LEVEL=loud", "LOG_LEVEL"),
        ("VAE_SLICING=yes", "VAE_SLICING"),
    ],
)
def test_bad_values_name_the_variable(env_file, content, variable):
    env_file.write_text(content + "\n")
    with pytest.raises(ConfigError, match=variable):
        load_settings()


def test_relative_models_dir_is_taken_from_the_repository(env_file, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert load_settings({"MODELS_DIR": "weights"}).models_dir == ROOT / "weights"
    assert load_settings({"MODELS_DIR": "/srv/models"}).models_dir == Path("/srv/models")


@pytest.mark.parametrize(
    ("name", "family", "steps", "guidance", "size"),
    [
        ("sd-turbo", Family.SD, 1, 0.0, 512),
        ("sdxl-turbo", Family.SDXL, 1, 0.0, 512),
        ("sd-1.5", Family.SD, 50, 7.5, 512),
        ("sd-2.1", Family.SD, 50, 7.5, 768),
        ("sd3-medium", Family.SD3, 28, 7.0, 1024),
        ("demo", Family.SD, 10, 5.0, 64),
    ],
)
def test_catalogue_defaults(name, family, steps, guidance, size):
    spec = resolve_model(name, Path("/models"))
    assert spec.folder == Path("/models") / name
    assert spec.family is family
    defaults = spec.defaults
    assert (defaults.steps, defaults.guidance_scale, defaults.width, defaults.height) == (
        steps,
        guidance,
        size,
        size,
    )


def test_every_catalogue_name_resolves():
    for name in ModelName:
        assert resolve_model(name.value, Path("/m")).name == name.value


def test_docker_style_path_keeps_the_catalogue_defaults():
    spec = resolve_model("/app/models/sd-turbo", Path("/elsewhere"))
    assert spec.folder == Path("/app/models/sd-turbo")
    assert spec.name == "sd-turbo"
    assert spec.defaults.steps == 1


def test_every_setting_is_documented_in_the_docs_and_env_file():
    variables = setting_names()
    assert "DEFAULT_MODEL" in variables
    table = (ROOT / "docs" / "configuration.md").read_text()
    env_text = (ROOT / ".env").read_text()
    for variable in variables:
        rows = re.findall(rf"^\| `{variable}` \|", table, re.MULTILINE)
        assert len(rows) == 1, f"{variable}: {len(rows)} rows in docs/configuration.md's table"
        assert f"\n{variable}=" in env_text, f"{variable} missing from .env"
    documented = re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \|", table, re.MULTILINE)
    unknown = sorted(set(documented) - set(variables))
    assert not unknown, f"docs/configuration.md documents settings nothing reads: {unknown}"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("auto", ("auto",)),
        ("cuda:0,cuda:1", ("cuda:0", "cuda:1")),
        ("cpu, cpu", ("cpu", "cpu")),
    ],
)
def test_devices_list(env_file, value, expected):
    overrides = {} if value is None else {"DEVICES": value}
    settings = load_settings(overrides)
    assert settings.devices == expected
    assert settings.device == "auto"


@pytest.mark.parametrize("value", ["gpu", "cuda:0;cuda:1", "cuda:0,,cuda:1", "auto,cpu"])
def test_bad_devices_name_the_variable(env_file, value):
    with pytest.raises(ConfigError, match="DEVICES"):
        load_settings({"DEVICES": value})


def test_memory_settings(env_file):
    memory = load_settings(
        {"CPU_OFFLOAD": "model", "VAE_TILING": "false", "IDLE_UNLOAD_SECONDS": "90"}
    ).memory
    assert (memory.cpu_offload, memory.vae_tiling, memory.idle_unload_seconds) == (
        "model",
        "false",
        90.0,
    )
    with pytest.raises(ConfigError, match="CPU_OFFLOAD"):
        load_settings({"CPU_OFFLOAD": "always"})
