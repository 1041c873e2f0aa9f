"""Requests exactly as the servers users come from document them, and the shapes they expect."""

from __future__ import annotations

import base64
import io

import pytest
from helpers import DEMO_SIZE, png_size
from PIL import Image

PATHS = ["/image/generate", "/generate", "/generate-image"]


@pytest.mark.parametrize("path", PATHS)
def test_prompt_alone_works_on_every_path(client, path):
    response = client.post(path, json={"prompt": "a cinematic shot of 3 maneki neko"})
    assert response.status_code == 200
    assert png_size(response.data) == DEMO_SIZE


@pytest.mark.parametrize("path", PATHS)
def test_same_schema_and_errors_on_every_path(client, path):
    response = client.post(path, json={"prompt": "x", "widht": 512})
    assert response.status_code == 400
    assert "Did you mean 'width'" in response.get_json()["error"]


def test_seed_000_body_returns_png(client):
    body = {
        "prompt": "A futuristic city at sunset",
        "negative_prompt": "blurry, low quality",
        "num_inference_steps": 28,
        "guidance_scale": 7.0,
    }
    response = client.post("/generate", json=body)
    assert response.status_code == 200 and response.mimetype == "image/png"


def test_seed_003_body_returns_png_of_the_size(client):
    body = {"prompt": "a cat on a skateboard", "width": 512, "height": 512, "steps": 8}
    assert png_size(client.post("/image/generate", json=body).data) == (512, 512)


@pytest.fixture
def json_client(make_app):
    """A server whose deployment switched the default answer to JSON (RESPONSE_FORMAT=json)."""
    return make_app(RESPONSE_FORMAT="json").test_client()


def test_seed_001_request_gets_message_and_image_data(json_client):
    body = {
        "prompt": "A highly realistic and detailed teenage girl’s minimalist room",  # noqa: RUF001
        "seed": 42,
        "guidance_scale": 7.5,
    }
    payload = json_client.post("/image/generate", json=body).get_json()
    assert payload["message"] == "Image generated successfully"
    assert png_size(base64.b64decode(payload["image_data"])) == DEMO_SIZE


def test_seed_002_request_gets_image(json_client):
    body = {
        "prompt": "A serene mountain landscape at sunset",
        "negative_prompt": "low quality, blurry",
        "num_inference_steps": 30,
        "guidance_scale": 8.0,
    }
    payload = json_client.post("/generate", json=body).get_json()
    image = Image.open(io.BytesIO(base64.b64decode(payload["image"])))
    assert image.format == "PNG"


def test_json_default_still_yields_bytes_to_clients_that_ask(json_client):
    asked = json_client.post("/generate", json={"prompt": "x"}, headers={"Accept": "image/png"})
    assert asked.mimetype == "image/png"
    forced = json_client.post("/generate", json={"prompt": "x", "response_format": "image"})
    assert forced.mimetype == "image/png"


@pytest.mark.parametrize(
    ("body", "accept", "expected"),
    [
        ({}, None, "image/png"),
        ({}, "*/*", "image/png"),
        ({}, "application/json", "application/json"),
        ({}, "application/json, text/plain, */*", "application/json"),  # axios, fetch helpers
        ({}, "image/png;q=0.9, application/json;q=0.5", "image/png"),
        ({"response_format": "b64_json"}, None, "application/json"),
        ({"response_format": "json"}, "image/png", "application/json"),
        ({"response_format": "image"}, "application/json", "image/png"),
    ],
)
def test_response_format_negotiation(client, body, accept, expected):
    headers = {"Accept": accept} if accept else {}
    response = client.post("/generate", json={"prompt": "x", **body}, headers=headers)
    assert response.mimetype == expected


def test_json_carries_every_documented_key(client):
    payload = client.post(
        "/image/generate", json={"prompt": "x", "seed": 9, "response_format": "b64_json"}
    ).get_json()
    assert payload["image"] == payload["images"][0] == payload["image_data"]
    assert payload["seed"] == 9 and payload["seeds"] == [9]
    assert payload["model"] == "demo"
    assert payload["parameters"]["seed"] == 9


def test_url_response_format_is_refused_clearly(client):
    response = client.post("/generate", json={"prompt": "x", "response_format": "url"})
    assert response.status_code == 400
    assert "inline" in response.get_json()["error"]
