"""The demo models: real diffusers classes, small, deterministic, safetensors only; `demo` is
the trained shapes model, installed from checksummed committed weights."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys

import pytest

from backend.config import ROOT
from backend.model.demo import TOKENIZER_MAX_LENGTH, save_demo_model
from backend.model.demo_trained import (
    TRAINED_WEIGHTS,
    DemoWeightsError,
    install_trained_demo,
    is_installed,
)
from demo_model.tokenizer import MAX_LENGTH


def digest(folder) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def assert_small_safetensors_sd_pipeline(folder, limit: int) -> None:
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < limit
    assert not [p for p in files if p.suffix in {".bin", ".pt", ".ckpt", ".pth"}]
    assert {p.parent.name for p in files if p.suffix == ".safetensors"} == {
        "unet",
        "vae",
        "text_encoder",
    }
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    assert index["unet"] == ["diffusers", "UNet2DConditionModel"]
    assert index["text_encoder"] == ["transformers", "CLIPTextModel"]
    assert index["tokenizer"] == ["transformers", "CLIPTokenizer"]


def test_random_build_is_deterministic_small_and_safetensors_only(tmp_path):
    first = save_demo_model(tmp_path / "first")
    assert digest(save_demo_model(tmp_path / "demo")) == digest(first)
    assert_small_safetensors_sd_pipeline(first, 8 * 1024 * 1024)
    assert not list(tmp_path.glob(".demo-*")), "staging folder left behind"


def test_the_trained_demo_is_the_committed_weights_under_3_mb(models_dir):
    installed = models_dir / "demo"
    assert is_installed(installed)
    assert digest(installed) == digest(TRAINED_WEIGHTS)
    assert_small_safetensors_sd_pipeline(TRAINED_WEIGHTS, 3 * 1000 * 1000)


def test_damaged_weights_are_refused_by_name(tmp_path):
    source = shutil.copytree(TRAINED_WEIGHTS, tmp_path / "weights")
    weights = source / "unet" / "diffusion_pytorch_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(DemoWeightsError, match=r"unet/diffusion_pytorch_model\.safetensors"):
        install_trained_demo(tmp_path / "demo", source)
    assert not (tmp_path / "demo").exists()
    shutil.copyfile(TRAINED_WEIGHTS / weights.relative_to(source), weights)
    (source / "vae" / "config.json").unlink()
    with pytest.raises(DemoWeightsError, match=r"vae/config\.json is missing"):
        install_trained_demo(tmp_path / "demo", source)


def test_tokenizers_truncate_and_take_any_text(app, tmp_path):
    trained = app.extensions["engine"].pipeline().tokenizer
    assert trained.model_max_length == MAX_LENGTH == 32
    random_sd = save_demo_model(tmp_path / "random")
    assert (
        json.loads((random_sd / "tokenizer" / "tokenizer_config.json").read_text())[
            "model_max_length"
        ]
        == TOKENIZER_MAX_LENGTH
        == 77
    )
    ids = trained("word " * 500, truncation=True, max_length=trained.model_max_length).input_ids
    assert len(ids) == 32
    assert trained("🦊 日本").input_ids  # any text tokenizes (byte-level)


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "backend.model.demo", *args],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_cli_if_default_builds_only_for_the_demo(tmp_path):
    skipped = run_cli("--if-default", MODELS_DIR=str(tmp_path), DEFAULT_MODEL="sd-turbo")
    assert skipped.returncode == 0 and not list(tmp_path.iterdir())
    built = run_cli("--if-default", MODELS_DIR=str(tmp_path), DEFAULT_MODEL="demo")
    assert built.returncode == 0, built.stderr
    assert (tmp_path / "demo" / "model_index.json").is_file()
    again = run_cli("--if-default", MODELS_DIR=str(tmp_path), DEFAULT_MODEL="demo")
    assert "already" in again.stdout
    assert is_installed(tmp_path / "demo")
    other_family = run_cli("--if-default", MODELS_DIR=str(tmp_path), DEFAULT_MODEL="demo-sd3")
    assert other_family.returncode == 0, other_family.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo", "demo-sd3"]


def test_cli_reports_bad_configuration(tmp_path):
    result = run_cli(MODELS_DIR=str(tmp_path), PORT="nope")
    assert result.returncode == 2
    assert "PORT" in result.stderr


def test_cli_replaces_a_demo_that_is_not_the_committed_one(tmp_path):
    save_demo_model(tmp_path / "demo")  # the random-weight demo an older checkout built
    replaced = run_cli("demo", MODELS_DIR=str(tmp_path))
    assert replaced.returncode == 0, replaced.stderr
    assert "written" in replaced.stdout
    assert digest(tmp_path / "demo") == digest(TRAINED_WEIGHTS)
    untrained = run_cli("demo", "--random", "--force", MODELS_DIR=str(tmp_path))
    assert untrained.returncode == 0, untrained.stderr
    assert not is_installed(tmp_path / "demo")
