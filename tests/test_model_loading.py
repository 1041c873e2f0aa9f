"""Loading models: names and paths, broken folders, devices and dtypes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import DEMO_SIZE, png_size

URL = "/image/generate"


def failure(app) -> str:
    """The error /health reports, after checking /health and generate both answer 503 with it."""
    client = app.test_client()
    health = client.get("/health")
    assert health.status_code == 503
    body = health.get_json()
    assert body["status"] == "error" and body["model_loaded"] is False
    generate = client.post(URL, json={"prompt": "x"})
    assert generate.status_code == 503
    assert generate.get_json()["error"] == body["error"]
    assert client.get("/ping").data == b"pong"
    return body["error"]


def test_missing_catalogue_folder_says_where_and_how(make_app, tmp_path):
    message = failure(make_app(MODELS_DIR=str(tmp_path), DEFAULT_MODEL="sd-turbo"))
    assert str(tmp_path / "sd-turbo") in message
    assert "does not exist" in message
    assert "huggingface.co/stabilityai/sd-turbo" in message


def test_missing_demo_folder_says_how_to_build_it(make_app, tmp_path):
    message = failure(make_app(MODELS_DIR=str(tmp_path), DEFAULT_MODEL="demo"))
    assert "make demo-model" in message


def test_folder_without_model_index(make_app, demo_copy):
    folder = demo_copy("no-index")
    (folder / "model_index.json").unlink()
    message = failure(make_app(DEFAULT_MODEL=str(folder)))
    assert str(folder) in message
    assert "model_index.json" in message


def test_folder_with_only_pickle_weights(make_app, demo_copy):
    folder = demo_copy("pickled")
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    weights.rename(weights.with_suffix(".bin"))
    message = failure(make_app(DEFAULT_MODEL=str(folder)))
    assert str(folder) in message
    assert "pickle" in message and "diffusion_pytorch_model.bin" in message
    assert "safetensors" in message


def test_folder_with_no_weights_at_all(make_app, demo_copy):
    folder = demo_copy("empty-vae")
    (folder / "vae" / "diffusion_pytorch_model.safetensors").unlink()
    message = failure(make_app(DEFAULT_MODEL=str(folder)))
    assert "'vae'" in message and "incomplete" in message


def test_folder_of_another_kind_of_pipeline(make_app, demo_copy):
    folder = demo_copy("upscaler")
    index_path = folder / "model_index.json"
    index = json.loads(index_path.read_text())
    index["_class_name"] = "StableDiffusionUpscalePipeline"
    index_path.write_text(json.dumps(index))
    message = failure(make_app(DEFAULT_MODEL=str(folder)))
    assert "StableDiffusionUpscalePipeline" in message


def test_corrupt_weights_fail_cleanly_without_internals(make_app, demo_copy, caplog):
    folder = demo_copy("corrupt")
    (folder / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"\x00" * 64)
    message = failure(make_app(DEFAULT_MODEL=str(folder)))
    assert str(folder) in message and "server log" in message
    assert "Traceback" in caplog.text  # the details went to the log


def test_a_path_to_a_catalogue_named_folder_keeps_its_defaults(make_app, models_dir):
    app = make_app(DEFAULT_MODEL=str(models_dir / "demo"))
    response = app.test_client().post(URL, json={"prompt": "x"})
    assert response.status_code == 200
    assert response.headers["X-Model"] == "demo"
    assert png_size(response.data) == DEMO_SIZE


def test_an_unknown_folder_name_gets_its_family_defaults(make_app, demo_copy):
    folder = demo_copy("my-finetune")
    app = make_app(DEFAULT_MODEL=str(folder))
    body = app.test_client().post(URL, json={"prompt": "x"}, headers={"Accept": "application/json"})
    parameters = body.get_json()["parameters"]
    assert parameters["model"] == "my-finetune"
    # SD family defaults, at the model's native size read from its configs (8 latents x 8).
    assert (parameters["steps"], parameters["guidance_scale"]) == (50, 7.5)
    assert (parameters["width"], parameters["height"]) == DEMO_SIZE


def test_a_bare_folder_name_is_looked_up_in_models_dir(make_app, demo_copy):
    folder = demo_copy("custom")
    app = make_app(MODELS_DIR=str(folder.parent), DEFAULT_MODEL="custom")
    assert app.test_client().get("/health").get_json()["model"] == "custom"


def test_fp16_variant_only_folder_loads(make_app, demo_copy):
    folder = demo_copy("variant")
    for weights in folder.glob("*/*.safetensors"):
        weights.rename(weights.with_name(weights.name.replace(".safetensors", ".fp16.safetensors")))
    app = make_app(DEFAULT_MODEL=str(folder))
    assert app.test_client().post(URL, json={"prompt": "x"}).status_code == 200


def test_bfloat16_on_cpu(make_app):
    app = make_app(TORCH_DTYPE="bfloat16")
    assert app.extensions["engine"].pipeline().unet.dtype == torch.bfloat16
    response = app.test_client().post(URL, json={"prompt": "x", "steps": 1})
    assert response.status_code == 200


def test_float32_on_cpu_by_default(app):
    assert app.extensions["engine"].pipeline().unet.dtype == torch.float32


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_cuda_requested_without_a_gpu(make_app, device):
    message = failure(make_app(DEVICE=device))
    assert f"DEVICE={device}" in message and "CUDA" in message


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_auto_device_uses_the_gpu_in_float16(make_app):
    app = make_app(DEVICE="auto")
    assert app.test_client().get("/health").get_json()["device"] == "cuda:0"
    assert app.extensions["engine"].pipeline().unet.dtype == torch.float16
    body = {"prompt": "x", "width": 512, "height": 512, "seed": 3}
    first = app.test_client().post(URL, json=body)
    assert first.status_code == 200 and png_size(first.data) == (512, 512)
    assert app.test_client().post(URL, json=body).data == first.data


def test_model_folder_is_never_written_to(make_app, demo_copy):
    folder = demo_copy("read-only-check")
    before = {p: p.stat().st_mtime_ns for p in Path(folder).rglob("*")}
    app = make_app(DEFAULT_MODEL=str(folder))
    app.test_client().post(URL, json={"prompt": "x"})
    assert {p: p.stat().st_mtime_ns for p in Path(folder).rglob("*")} == before


def test_hub_style_tokenizer_files_load(make_app, demo_copy):
    # Folders downloaded from the hub carry vocab.json + merges.txt, not tokenizer.json.
    folder = demo_copy("hub-layout")
    tokenizer_dir = folder / "tokenizer"
    model = json.loads((tokenizer_dir / "tokenizer.json").read_text())["model"]
    (tokenizer_dir / "vocab.json").write_text(json.dumps(model["vocab"]))
    merges = ["#version: 0.2"] + [
        " ".join(m) if isinstance(m, list) else m for m in model["merges"]
    ]
    (tokenizer_dir / "merges.txt").write_text("\n".join(merges) + "\n")
    (tokenizer_dir / "tokenizer.json").unlink()
    app = make_app(DEFAULT_MODEL=str(folder))
    assert app.test_client().post(URL, json={"prompt": "a cat"}).status_code == 200
