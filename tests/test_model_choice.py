"""Requests that name a model: loaded on demand, least recently used unloaded, names stay names."""

from __future__ import annotations

import io
import os
import shutil

import pytest
from PIL import Image

URL = "/image/generate"


def test_models_lists_present_and_absent_models(make_app, two_models_dir):
    listing = make_app(MODELS_DIR=str(two_models_dir)).test_client().get("/models").get_json()
    assert listing["default"] == "demo"
    by_name = {model["name"]: model for model in listing["models"]}
    assert by_name["demo"] | {"folder": None} == {
        "name": "demo",
        "folder": None,
        "exists": True,
        "loaded": True,
        "loaded_on": ["cpu"],
        "default": True,
        "family": "sd",
        "defaults": {"steps": 10, "guidance_scale": 5.0, "width": 64, "height": 64},
        "error": None,
    }
    assert by_name["demo"]["folder"].endswith("demo")
    assert by_name["other"]["exists"] and not by_name["other"]["loaded"]
    assert not by_name["other"]["default"]
    # Catalogue names are listed even without their folder, with their family defaults.
    assert by_name["sd-turbo"]["exists"] is False
    assert by_name["sd-turbo"]["defaults"] == {
        "steps": 1,
        "guidance_scale": 0.0,
        "width": 512,
        "height": 512,
    }
    assert by_name["sd3-medium"]["family"] == "sd3"


def test_a_named_model_loads_on_demand_and_evicts_the_least_recently_used(make_app, two_models_dir):
    client = make_app(MODELS_DIR=str(two_models_dir), MAX_LOADED_MODELS=1).test_client()
    response = client.post(URL, json={"prompt": "x", "model": "other", "seed": 4})
    assert response.status_code == 200
    assert response.headers["X-Model"] == "other"
    health = client.get("/health")
    assert health.status_code == 200  # the default can be reloaded: still healthy
    assert health.get_json()["model_loaded"] is False
    assert health.get_json()["loaded_models"] == ["other"]
    # Back to the default: it is loaded again, and gives the same image as before.
    again = client.post(URL, json={"prompt": "x", "seed": 4})
    assert again.headers["X-Model"] == "demo"
    assert again.data != b""
    assert client.get("/health").get_json()["loaded_models"] == ["demo"]


def test_two_models_dir_stay_loaded_when_allowed(make_app, two_models_dir):
    client = make_app(MODELS_DIR=str(two_models_dir), MAX_LOADED_MODELS=2).test_client()
    body = {"prompt": "x", "seed": 4, "steps": 3, "guidance_scale": 5.0}
    default_image = client.post(URL, json=body).data
    other_image = client.post(URL, json={**body, "model": "other"}).data
    # Same weights, same seed: the same pixels (the embedded metadata names each model).
    assert Image.open(io.BytesIO(default_image)).tobytes() == (
        Image.open(io.BytesIO(other_image)).tobytes()
    )
    assert sorted(client.get("/health").get_json()["loaded_models"]) == ["demo", "other"]


@pytest.mark.parametrize(
    "name", ["nope", "../demo", "/etc", "..", ".", "demo/../demo", "other/", "a" * 300, "", " "]
)
def test_unknown_or_unsafe_names_are_404_with_the_available_ones(make_app, two_models_dir, name):
    client = make_app(MODELS_DIR=str(two_models_dir)).test_client()
    response = client.post(URL, json={"prompt": "x", "model": name})
    assert response.status_code == 404, response.get_json()
    error = response.get_json()
    assert error["details"]["available"] == ["demo", "other"]
    assert str(two_models_dir) not in error["error"]


def test_a_symlink_out_of_models_dir_is_not_a_model(make_app, two_models_dir, tmp_path, models_dir):
    outside = tmp_path / "elsewhere"
    shutil.copytree(models_dir / "demo", outside)
    os.symlink(outside, two_models_dir / "escape")
    try:
        client = make_app(MODELS_DIR=str(two_models_dir)).test_client()
        assert client.post(URL, json={"prompt": "x", "model": "escape"}).status_code == 404
        names = [m["name"] for m in client.get("/models").get_json()["models"]]
        assert "escape" not in names
    finally:
        (two_models_dir / "escape").unlink()


def test_a_broken_named_model_fails_alone(make_app, two_models_dir, tmp_path):
    broken = two_models_dir / "broken"
    shutil.copytree(two_models_dir / "demo", broken)
    (broken / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"junk")
    try:
        client = make_app(MODELS_DIR=str(two_models_dir)).test_client()
        response = client.post(URL, json={"prompt": "x", "model": "broken"})
        assert response.status_code == 503
        assert "failed to load" in response.get_json()["error"]
        listing = {m["name"]: m for m in client.get("/models").get_json()["models"]}
        assert "failed to load" in listing["broken"]["error"]
        # The default model is unaffected, and the broken one is not reloaded on every request.
        assert client.post(URL, json={"prompt": "x"}).status_code == 200
        assert client.get("/health").status_code == 200
        assert client.post(URL, json={"prompt": "x", "model": "broken"}).status_code == 503
    finally:
        shutil.rmtree(broken)


def test_other_models_serve_when_the_default_is_missing(make_app, two_models_dir, tmp_path):
    client = make_app(MODELS_DIR=str(two_models_dir), DEFAULT_MODEL="sd-turbo").test_client()
    assert client.get("/health").status_code == 503
    assert client.post(URL, json={"prompt": "x"}).status_code == 503
    assert client.post(URL, json={"prompt": "x", "model": "other"}).status_code == 200


def test_each_model_brings_its_own_defaults(make_app, two_models_dir):
    client = make_app(MODELS_DIR=str(two_models_dir), MAX_LOADED_MODELS=2).test_client()

    def parameters(**body):
        response = client.post(URL, json={"prompt": "x", "response_format": "json", **body})
        return response.get_json()["parameters"]

    # 'other' is not a catalogue name: SD family defaults, at the size its configs give.
    assert (parameters()["steps"], parameters(model="other")["steps"]) == (10, 50)
    assert parameters(model="other")["width"] == 64
