"""POST /image/generate on the real demo pipeline, through the Flask test client."""

from __future__ import annotations

import base64

import pytest
from helpers import DEMO_SIZE, png_size

from backend.model.engine import MAX_SEED

URL = "/image/generate"


def test_png_of_the_requested_size_with_headers(client):
    body = {"prompt": "a sunset over mountains", "width": 768, "height": 512, "steps": 10}
    response = client.post(URL, json=body)
    assert response.status_code == 200
    assert response.mimetype == "image/png"
    assert png_size(response.data) == (768, 512)
    assert 0 <= int(response.headers["X-Seed"]) <= MAX_SEED
    assert response.headers["X-Model"] == "demo"
    assert float(response.headers["X-Generation-Time"]) > 0
    assert response.headers["X-Request-ID"]


def test_prompt_alone_gets_the_model_defaults(client):
    response = client.post(URL, json={"prompt": "a cat"}, headers={"Accept": "application/json"})
    assert response.status_code == 200
    parameters = response.get_json()["parameters"]
    assert parameters | {"seed": 0} == {
        "prompt": "a cat",
        "negative_prompt": "",
        "width": 64,
        "height": 64,
        "steps": 10,
        "guidance_scale": 5.0,
        "seed": 0,
        "num_images": 1,
        "scheduler": "euler",
        "model": "demo",
        "loras": [],
        "clip_skip": None,
        "vae": None,
    }


def test_json_when_the_client_accepts_json(client):
    body = {"prompt": "a cat", "seed": 7, "width": 128, "height": 192}
    response = client.post(URL, json=body, headers={"Accept": "application/json"})
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    payload = response.get_json()
    assert set(payload) >= {"image", "seed", "model", "parameters"}
    assert payload["seed"] == 7
    assert payload["model"] == "demo"
    assert payload["parameters"]["width"] == 128
    assert png_size(base64.b64decode(payload["image"])) == (128, 192)
    # The JSON image is the very PNG the binary answer carries.
    png = client.post(URL, json=body)
    assert base64.b64decode(payload["image"]) == png.data


@pytest.mark.parametrize(
    "accept", ["*/*", "image/png", "image/*", "image/png, application/json;q=0.5", ""]
)
def test_png_unless_json_is_preferred(client, accept):
    response = client.post(URL, json={"prompt": "x", "seed": 1}, headers={"Accept": accept})
    assert response.mimetype == "image/png"
    assert response.headers["Vary"] == "Accept"


def test_same_seed_same_bytes_and_different_seed_different_bytes(client):
    body = {"prompt": "a red fox", "negative_prompt": "blurry", "seed": 1234, "steps": 3}
    first, second = client.post(URL, json=body), client.post(URL, json=body)
    assert first.status_code == second.status_code == 200
    assert first.data == second.data
    assert first.headers["X-Seed"] == "1234"
    other = client.post(URL, json={**body, "seed": 1235})
    assert other.data != first.data


def test_same_seed_same_bytes_after_a_fresh_load(client, make_app):
    body = {"prompt": "a red fox", "seed": 99}
    fresh = make_app().test_client()
    assert fresh.post(URL, json=body).data == client.post(URL, json=body).data


@pytest.mark.parametrize("seed", [None, -1])
def test_random_seed_is_reported_and_reproduces_the_image(client, seed):
    body = {"prompt": "a lighthouse"} | ({} if seed is None else {"seed": seed})
    first, second = client.post(URL, json=body), client.post(URL, json=body)
    used = int(first.headers["X-Seed"])
    assert 0 <= used <= MAX_SEED
    assert first.headers["X-Seed"] != second.headers["X-Seed"]  # 1 in 2**32 to fail by chance
    again = client.post(URL, json={"prompt": "a lighthouse", "seed": used})
    assert again.data == first.data


@pytest.mark.parametrize("seed", [0, 1, MAX_SEED])
def test_seed_bounds_are_accepted(client, seed):
    response = client.post(URL, json={"prompt": "x", "seed": seed})
    assert response.status_code == 200
    assert response.headers["X-Seed"] == str(seed)


def test_aliases_of_steps_and_guidance(client):
    headers = {"Accept": "application/json"}
    body = {"prompt": "x", "num_inference_steps": 2, "cfg_scale": 3.5, "seed": 5}
    aliased = client.post(URL, json=body, headers=headers).get_json()
    assert aliased["parameters"]["steps"] == 2
    assert aliased["parameters"]["guidance_scale"] == 3.5
    canonical = client.post(
        URL, json={"prompt": "x", "steps": 2, "guidance_scale": 3.5, "seed": 5}, headers=headers
    ).get_json()
    assert canonical["image"] == aliased["image"]


def test_alias_and_name_may_agree(client):
    response = client.post(URL, json={"prompt": "x", "steps": 2, "num_inference_steps": 2})
    assert response.status_code == 200


def test_guidance_changes_the_image(client):
    body = {"prompt": "a tree", "seed": 3}
    unguided = client.post(URL, json={**body, "guidance_scale": 0})
    guided = client.post(URL, json={**body, "guidance_scale": 9})
    assert unguided.status_code == guided.status_code == 200
    assert unguided.data != guided.data


def test_negative_prompt_changes_the_image_when_guided(client):
    body = {"prompt": "a tree", "seed": 3, "guidance_scale": 7.5}
    plain = client.post(URL, json=body)
    negative = client.post(URL, json={**body, "negative_prompt": "leaves, green"})
    assert plain.data != negative.data


@pytest.mark.parametrize(
    "prompt",
    [
        "une forêt enneigée, 雪の森, заснеженный лес",
        "🌄🦊✨ a fox at dawn 🌅",
        "a" * 2000,  # the longest prompt allowed; far past CLIP's 77 tokens, so it is truncated
        "line one\nline two\ttabbed \u0000 nul",
    ],
)
def test_any_text_prompt_works(client, prompt):
    response = client.post(URL, json={"prompt": prompt, "seed": 11})
    assert response.status_code == 200
    assert png_size(response.data) == DEMO_SIZE


def test_nulls_in_optional_fields_mean_defaults(client):
    body = {
        "prompt": "x",
        "negative_prompt": None,
        "width": None,
        "height": None,
        "steps": None,
        "guidance_scale": None,
        "seed": None,
    }
    response = client.post(URL, json=body, headers={"Accept": "application/json"})
    assert response.status_code == 200
    assert response.get_json()["parameters"]["width"] == 64


def test_whole_numbers_written_loosely_are_accepted(client):
    body = {"prompt": "x", "width": 128.0, "height": "64", "steps": "2", "seed": 4.0}
    response = client.post(URL, json=body, headers={"Accept": "application/json"})
    assert response.status_code == 200
    parameters = response.get_json()["parameters"]
    assert (parameters["width"], parameters["height"], parameters["steps"]) == (128, 64, 2)
    assert parameters["seed"] == 4
