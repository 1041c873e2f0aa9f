"""Every family (SD, SDXL, SD3) through the server, via the same loading code as real folders."""

from __future__ import annotations

import io
import json
import shutil

import pytest
from helpers import png_size
from PIL import Image

URL = "/image/generate"
FAMILIES = {"demo": "sd", "demo-sdxl": "sdxl", "demo-sd3": "sd3"}


@pytest.mark.parametrize("model", FAMILIES)
def test_each_family_generates_with_and_without_guidance(family_client, model):
    body = {"prompt": "a lighthouse", "model": model, "seed": 3, "response_format": "json"}
    unguided = family_client.post(URL, json={**body, "guidance_scale": 0}).get_json()
    guided = family_client.post(
        URL, json={**body, "guidance_scale": 7.0, "negative_prompt": "fog, rain"}
    ).get_json()
    assert unguided["model"] == guided["model"] == model
    assert unguided["image"] != guided["image"]
    again = family_client.post(
        URL, json={**body, "guidance_scale": 7.0, "negative_prompt": "fog, rain"}
    ).get_json()
    assert again["image"] == guided["image"]


@pytest.mark.parametrize("model", FAMILIES)
def test_each_family_batches_and_reports_its_family(family_client, model):
    response = family_client.post(
        URL,
        json={"prompt": "x", "model": model, "num_images": 2, "seed": 1, "response_format": "json"},
    )
    assert response.get_json()["seeds"] == [1, 2]
    listing = {m["name"]: m for m in family_client.get("/models").get_json()["models"]}
    assert listing[model]["family"] == FAMILIES[model]
    assert listing[model]["loaded"]


def test_sd3_sides_are_multiples_of_16(family_client):
    response = family_client.post(URL, json={"prompt": "x", "model": "demo-sd3", "width": 264})
    assert response.status_code == 400
    assert response.get_json()["details"]["width"] == ["Must be a multiple of 16."]
    ok = family_client.post(URL, json={"prompt": "x", "model": "demo-sd3", "width": 272})
    assert png_size(ok.data) == (272, 256)


def test_sd3_only_takes_flow_matching_schedulers(family_client):
    bad = family_client.post(URL, json={"prompt": "x", "model": "demo-sd3", "scheduler": "ddim"})
    assert bad.status_code == 400
    assert "Known: euler." in bad.get_json()["error"]
    good = family_client.post(URL, json={"prompt": "x", "model": "demo-sd3", "scheduler": "euler"})
    text = Image.open(io.BytesIO(good.data)).text["parameters"]
    assert "Sampler: Euler" in text


def test_sdxl_takes_the_sd_schedulers(family_client):
    body = {"prompt": "x", "model": "demo-sdxl", "scheduler": "dpmpp_2m_karras", "seed": 2}
    assert family_client.post(URL, json=body).status_code == 200


@pytest.mark.parametrize("model", ["demo-sdxl", "demo-sd3"])
def test_a_demo_family_can_be_the_default(make_app, family_models_dir, model):
    client = make_app(MODELS_DIR=str(family_models_dir), DEFAULT_MODEL=model).test_client()
    assert client.get("/health").get_json()["model"] == model
    assert png_size(client.post(URL, json={"prompt": "x"}).data) == (256, 256)


@pytest.fixture
def sd3_without_t5_files(family_models_dir, tmp_path):
    """An SD3 folder whose index lists T5, downloaded without T5's files (a common case)."""
    folder = shutil.copytree(family_models_dir / "demo-sd3", tmp_path / "models" / "sd3-no-t5")
    index = json.loads((folder / "model_index.json").read_text())
    index["text_encoder_3"] = ["transformers", "T5EncoderModel"]
    index["tokenizer_3"] = ["transformers", "T5TokenizerFast"]
    (folder / "model_index.json").write_text(json.dumps(index))
    return folder


def test_sd3_without_t5_files_says_how_to_drop_t5(make_app, sd3_without_t5_files):
    app = make_app(DEFAULT_MODEL=str(sd3_without_t5_files))
    error = app.test_client().get("/health").get_json()["error"]
    assert "text_encoder_3" in error and "SD3_DROP_T5=true" in error


def test_sd3_drop_t5_loads_it_without_t5(make_app, sd3_without_t5_files):
    app = make_app(DEFAULT_MODEL=str(sd3_without_t5_files), SD3_DROP_T5="true")
    assert app.test_client().get("/health").status_code == 200
    assert app.extensions["engine"].pipeline().text_encoder_3 is None
    assert png_size(app.test_client().post(URL, json={"prompt": "x"}).data) == (256, 256)


def test_demo_cli_builds_every_family_and_one_on_request(tmp_path, monkeypatch):
    from backend.model.demo_install import main

    monkeypatch.setenv("MODELS_DIR", str(tmp_path / "all"))
    assert main([]) == 0
    for name, pipeline_class in (
        ("demo", "StableDiffusionPipeline"),
        ("demo-sdxl", "StableDiffusionXLPipeline"),
        ("demo-sd3", "StableDiffusion3Pipeline"),
        ("demo-inpaint", "StableDiffusionInpaintPipeline"),
        ("demo-sdxl-refiner", "StableDiffusionXLImg2ImgPipeline"),
    ):
        index = json.loads((tmp_path / "all" / name / "model_index.json").read_text())
        assert index["_class_name"] == pipeline_class
    assert main(["demo-sd3", "--output", str(tmp_path / "one")]) == 0
    assert json.loads((tmp_path / "one" / "model_index.json").read_text())["_class_name"] == (
        "StableDiffusion3Pipeline"
    )
