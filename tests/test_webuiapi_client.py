"""The `webuiapi` package (an AUTOMATIC1111 client), pointed at this server, works unchanged."""

from __future__ import annotations

import pytest
import webuiapi
from PIL import Image

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def api(api_server):
    return webuiapi.WebUIApi(baseurl=f"{api_server.url}/sdapi/v1", steps=3)


def test_txt2img_batches_with_consecutive_seeds(api):
    result = api.txt2img(
        prompt="a cute cat",
        negative_prompt="ugly",
        seed=1000,
        batch_size=2,
        n_iter=2,
        width=128,
        height=128,
        cfg_scale=6,
        sampler_name="DPM++ 2M",
    )
    assert len(result.images) == 4
    assert all(isinstance(image, Image.Image) for image in result.images)
    assert {image.size for image in result.images} == {(128, 128)}
    assert result.info["all_seeds"] == [1000, 1001, 1002, 1003]
    assert result.info["seed"] == 1000
    assert result.info["sampler_name"] == "DPM++ 2M"
    assert result.parameters["batch_size"] == 2 and result.parameters["n_iter"] == 2
    # The images carry AUTOMATIC1111's infotext, as they do from AUTOMATIC1111 itself.
    assert "Seed: 1003" in result.images[3].info["parameters"]
    assert result.info["infotexts"][0] == result.images[0].info["parameters"]


def test_random_seed_is_reported(api):
    result = api.txt2img(prompt="a dog", width=64, height=64)
    assert result.info["seed"] >= 0
    assert result.info["all_seeds"] == [result.info["seed"]]


def test_same_seed_same_image(api):
    first = api.txt2img(prompt="a boat", seed=7, width=64, height=64)
    second = api.txt2img(prompt="a boat", seed=7, width=64, height=64)
    assert first.image.tobytes() == second.image.tobytes()


def test_karras_schedule_type_and_model_override(api):
    result = api.txt2img(
        prompt="x",
        seed=3,
        width=64,
        height=64,
        sampler_name="Euler",
        scheduler="Karras",
        override_settings={"sd_model_checkpoint": "other"},
    )
    assert result.info["sampler_name"] == "Euler Karras"
    assert result.info["sd_model_name"] == "other"


def test_models_and_samplers(api):
    assert api.util_get_model_names() == ["demo", "other"]
    samplers = api.util_get_sampler_names()
    assert {"Euler a", "DPM++ 2M", "DDIM"} <= set(samplers)
    assert api.util_get_current_model() == "demo"


def test_unknown_sampler_is_a_clear_error(api):
    with pytest.raises(RuntimeError) as error:
        api.txt2img(prompt="x", sampler_name="Warp Drive", width=64, height=64)
    status, body = error.value.args
    assert status == 400
    assert "Euler a" in body  # the known samplers are listed
