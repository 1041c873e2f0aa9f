"""The official `openai` package, pointed at this server, works unchanged."""

from __future__ import annotations

import base64
import io

import openai
import pytest
from helpers import png_size
from PIL import Image

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client(api_server):
    # Any key: the server ignores it unless API keys are configured.
    return openai.OpenAI(base_url=f"{api_server.url}/v1", api_key="sk-local", max_retries=0)


def test_generate_b64_images(client):
    response = client.images.generate(
        prompt="a watercolor fox", n=2, size="256x256", response_format="b64_json"
    )
    assert response.created > 0
    assert len(response.data) == 2
    images = [base64.b64decode(item.b64_json) for item in response.data]
    assert [png_size(image) for image in images] == [(256, 256), (256, 256)]
    assert images[0] != images[1]


def test_openai_model_names_and_quality_are_accepted(client):
    response = client.images.generate(
        model="dall-e-3", prompt="a lighthouse", size="128x128", quality="hd", style="vivid"
    )
    assert png_size(base64.b64decode(response.data[0].b64_json)) == (128, 128)


def test_our_knobs_ride_in_extra_body_and_reproduce(client):
    knobs = {"seed": 1234, "negative_prompt": "blurry", "steps": 3, "guidance_scale": 6.0}
    first = client.images.generate(prompt="a red barn", size="128x128", extra_body=knobs)
    second = client.images.generate(prompt="a red barn", size="128x128", extra_body=knobs)
    assert first.data[0].b64_json == second.data[0].b64_json
    text = Image.open(io.BytesIO(base64.b64decode(first.data[0].b64_json))).text["parameters"]
    assert "Seed: 1234" in text and "Negative prompt: blurry" in text


def test_output_format_jpeg(client):
    response = client.images.generate(
        prompt="x", size="128x128", output_format="jpeg", output_compression=50
    )
    image = Image.open(io.BytesIO(base64.b64decode(response.data[0].b64_json)))
    assert image.format == "JPEG"


def test_choosing_a_model_by_name(client):
    response = client.images.generate(model="other", prompt="x", size="128x128")
    assert response.data[0].b64_json


def test_list_and_retrieve_models(client):
    ids = [model.id for model in client.models.list()]
    assert ids == ["demo", "other"]
    assert client.models.retrieve("other").id == "other"


def test_errors_arrive_as_openai_errors(client):
    with pytest.raises(openai.BadRequestError) as bad_size:
        client.images.generate(prompt="x", size="100x100")
    assert bad_size.value.status_code == 400
    assert bad_size.value.param == "size"
    assert "multiple of 8" in bad_size.value.message
    with pytest.raises(openai.BadRequestError) as url_format:
        client.images.generate(prompt="x", response_format="url")
    assert url_format.value.param == "response_format"
    with pytest.raises(openai.NotFoundError) as unknown:
        client.images.generate(model="no-such-model", prompt="x")
    assert unknown.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")
