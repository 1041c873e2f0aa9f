"""Several images per call, image formats, and the parameters embedded in PNGs."""

from __future__ import annotations

import base64
import io
import zipfile

import numpy as np
import pytest
from helpers import DEMO_SIZE, pixels, png_size
from PIL import Image

URL = "/image/generate"


def test_several_images_come_as_a_zip_named_by_seed(client):
    response = client.post(URL, json={"prompt": "a fox", "num_images": 3, "seed": 100})
    assert response.status_code == 200
    assert response.mimetype == "application/zip"
    assert response.headers["X-Seeds"] == "100,101,102"
    with zipfile.ZipFile(io.BytesIO(response.data)) as archive:
        names = archive.namelist()
        assert names == ["01-100.png", "02-101.png", "03-102.png"]
        images = [archive.read(name) for name in names]
    assert all(png_size(image) == DEMO_SIZE for image in images)
    assert len(set(images)) == 3


def test_n_is_an_alias_and_json_lists_every_image(client):
    payload = client.post(
        URL, json={"prompt": "a fox", "n": 2, "seed": 7}, headers={"Accept": "application/json"}
    ).get_json()
    assert payload["seeds"] == [7, 8]
    assert len(payload["images"]) == 2
    assert payload["image"] == payload["images"][0]
    assert payload["parameters"]["num_images"] == 2


def test_a_batch_is_reproducible_and_each_image_alone_matches(client):
    body = {"prompt": "a fox", "num_images": 3, "seed": 40, "response_format": "json"}
    batch = client.post(URL, json=body).get_json()
    assert client.post(URL, json=body).get_json()["images"] == batch["images"]  # byte-identical
    for image, seed in zip(batch["images"], batch["seeds"], strict=True):
        alone = client.post(URL, json={"prompt": "a fox", "seed": seed}).data
        difference = np.abs(pixels(base64.b64decode(image)) - pixels(alone))
        # Batched matrix products round differently: at most a level or two on a few pixels.
        assert difference.max() <= 2
        assert (difference > 0).mean() < 0.01


def test_seeds_wrap_below_two_to_the_32(client):
    response = client.post(URL, json={"prompt": "x", "n": 2, "seed": 2**32 - 1})
    assert response.headers["X-Seeds"] == "4294967295,0"


def test_batch_size_is_limited(client):
    response = client.post(URL, json={"prompt": "x", "num_images": 5})
    assert response.status_code == 400
    assert response.get_json()["details"]["num_images"] == ["Must be between 1 and 4."]


@pytest.mark.parametrize(
    ("output_format", "media_type", "pil_format"),
    [("png", "image/png", "PNG"), ("jpeg", "image/jpeg", "JPEG"), ("webp", "image/webp", "WEBP")],
)
def test_output_formats(client, output_format, media_type, pil_format):
    body = {"prompt": "x", "seed": 3, "width": 128, "height": 64, "output_format": output_format}
    response = client.post(URL, json=body)
    assert response.mimetype == media_type
    image = Image.open(io.BytesIO(response.data))
    assert (image.format, image.size) == (pil_format, (128, 64))
    assert client.post(URL, json=body).data == response.data


@pytest.mark.parametrize("output_format", ["jpeg", "webp"])
def test_output_compression_trades_size_for_quality(client, output_format):
    body = {"prompt": "x", "seed": 3, "output_format": output_format}
    small = client.post(URL, json={**body, "output_compression": 10}).data
    large = client.post(URL, json={**body, "output_compression": 95}).data
    assert len(small) < len(large)


def test_several_jpegs_zip_with_jpeg_names(client):
    response = client.post(URL, json={"prompt": "x", "n": 2, "seed": 1, "output_format": "jpeg"})
    with zipfile.ZipFile(io.BytesIO(response.data)) as archive:
        assert archive.namelist() == ["01-1.jpeg", "02-2.jpeg"]


def test_png_embeds_parameters_in_automatic1111_layout(client):
    body = {
        "prompt": "a red fox, snow",
        "negative_prompt": "blurry",
        "seed": 77,
        "steps": 3,
        "guidance_scale": 6.5,
        "width": 128,
        "height": 192,
        "scheduler": "euler_a",
    }
    text = Image.open(io.BytesIO(client.post(URL, json=body).data)).text["parameters"]
    assert text == (
        "a red fox, snow\n"
        "Negative prompt: blurry\n"
        "Steps: 3, Sampler: Euler a, CFG scale: 6.5, Seed: 77, Size: 128x192, Model: demo"
    )


def test_png_metadata_names_the_model_own_scheduler_and_each_seed(client):
    response = client.post(URL, json={"prompt": "x", "n": 2, "seed": 5, "guidance_scale": 7})
    with zipfile.ZipFile(io.BytesIO(response.data)) as archive:
        texts = [
            Image.open(io.BytesIO(archive.read(n))).text["parameters"] for n in archive.namelist()
        ]
    assert texts == [
        "x\nSteps: 10, Sampler: Euler, CFG scale: 7, Seed: 5, Size: 64x64, Model: demo",
        "x\nSteps: 10, Sampler: Euler, CFG scale: 7, Seed: 6, Size: 64x64, Model: demo",
    ]


def test_metadata_can_be_turned_off(make_app):
    client = make_app(EMBED_METADATA="false").test_client()
    image = Image.open(io.BytesIO(client.post(URL, json={"prompt": "secret"}).data))
    assert "parameters" not in image.text


@pytest.mark.parametrize(
    "scheduler",
    ["euler", "euler_a", "dpmpp_2m", "dpmpp_2m_karras", "ddim", "unipc", "heun", "pndm", "lcm"],
)
def test_every_scheduler_runs_and_is_reproducible(client, scheduler):
    body = {"prompt": "x", "seed": 2, "steps": 3, "width": 64, "height": 64, "scheduler": scheduler}
    first = client.post(URL, json=body)
    assert first.status_code == 200, first.get_json()
    assert client.post(URL, json=body).data == first.data


def test_a_scheduler_request_leaves_the_model_default_untouched(client):
    body = {"prompt": "x", "seed": 2, "steps": 3, "width": 64, "height": 64}
    before = client.post(URL, json=body).data
    client.post(URL, json={**body, "scheduler": "dpmpp_2m"})
    assert client.post(URL, json=body).data == before


def test_unknown_scheduler_lists_the_known(client):
    error = client.post(URL, json={"prompt": "x", "scheduler": "warp"}).get_json()
    assert "euler_a" in error["error"]
