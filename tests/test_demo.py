"""The demo model: real diffusers classes, small, deterministic, safetensors only."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

from backend.config import ROOT
from backend.model.demo import TOKENIZER_MAX_LENGTH, save_demo_model


def digest(folder) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_build_is_deterministic_small_and_safetensors_only(tmp_path, models_dir):
    rebuilt = save_demo_model(tmp_path / "demo")
    assert digest(rebuilt) == digest(models_dir / "demo")
    files = [p for p in rebuilt.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 8 * 1024 * 1024
    assert not [p for p in files if p.suffix in {".bin", ".pt", ".ckpt", ".pth"}]
    assert {p.parent.name for p in files if p.suffix == ".safetensors"} == {
        "unet",
        "vae",
        "text_encoder",
    }
    index = json.loads((rebuilt / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    assert index["unet"] == ["diffusers", "UNet2DConditionModel"]
    assert index["text_encoder"] == ["transformers", "CLIPTextModel"]
    assert index["tokenizer"] == ["transformers", "CLIPTokenizer"]
    assert not list(tmp_path.glob(".demo-*")), "staging folder left behind"


def test_tokenizer_is_clip_limited_to_77_tokens(app):
    tokenizer = app.extensions["engine"].pipeline().tokenizer
    assert tokenizer.model_max_length == TOKENIZER_MAX_LENGTH == 77
    ids = tokenizer("word " * 500, truncation=True, max_length=tokenizer.model_max_length).input_ids
    assert len(ids) == 77
    assert tokenizer("🦊 日本").input_ids  # any text tokenizes (byte-level)


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
    other_family = run_cli("--if-default", MODELS_DIR=str(tmp_path), DEFAULT_MODEL="demo-sd3")
    assert other_family.returncode == 0, other_family.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo", "demo-sd3"]


def test_cli_reports_bad_configuration(tmp_path):
    result = run_cli(MODELS_DIR=str(tmp_path), PORT="nope")
    assert result.returncode == 2
    assert "PORT" in result.stderr
