"""Hostile text and JSON, in every dialect: served when it can be cleaned, else a 400 naming the
field; never a 5xx (see backend/view/text.py for the policy)."""

from __future__ import annotations

import json

import pytest
from helpers import assert_still_generates

# Each dialect's generating endpoint, a small valid body, and where its text fields live.
DIALECTS = {
    "ours": ("/image/generate", {"prompt": "a cat", "steps": 1, "seed": 3}),
    "jobs": ("/jobs", {"prompt": "a cat", "steps": 1, "seed": 3}),
    "openai": ("/v1/images/generations", {"prompt": "a cat", "steps": 1, "seed": 3}),
    "a1111": ("/sdapi/v1/txt2img", {"prompt": "a cat", "steps": 1, "seed": 3}),
}
# Name-like fields each dialect reads (besides prompt and negative_prompt).
NAME_FIELDS = {
    "ours": ["model", "scheduler", "output_format", "response_format"],
    "jobs": ["model", "scheduler", "output_format"],
    "openai": ["model", "scheduler", "size", "quality", "style", "output_format"],
    "a1111": ["sampler_name", "sampler_index", "scheduler", "sd_model_checkpoint"],
}
SURROGATE = "\ud800"


def post(client, dialect: str, **fields: object):
    path, body = DIALECTS[dialect]
    if "sd_model_checkpoint" in fields:  # A1111 names the model inside override_settings
        fields["override_settings"] = {"sd_model_checkpoint": fields.pop("sd_model_checkpoint")}
    return client.post(path, json={**body, **fields})


def error_text(response) -> str:
    """The error message in either shape (ours, or OpenAI's under /v1/)."""
    body = response.get_json()
    error = body["error"]
    return error["message"] if isinstance(error, dict) else error


def assert_refused(response, field: str, words: str) -> None:
    assert response.status_code == 400, response.data[:300]
    message = error_text(response)
    assert field in message and words in message, message
    assert "Traceback" not in response.get_data(as_text=True)


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("field", ["prompt", "negative_prompt"])
def test_a_lone_surrogate_in_prose_is_a_400_naming_the_field(client, dialect, field):
    response = post(client, dialect, **{field: f"\u0000{SURROGATE} x"})
    assert_refused(response, field, "surrogate")


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_lone_surrogate_in_a_name_field_is_a_400_naming_it(client, dialect):
    for field in NAME_FIELDS[dialect]:
        response = post(client, dialect, **{field: f"x{SURROGATE}"})
        assert_refused(response, field.replace("sd_model_checkpoint", "override_settings"), "")
        assert "surrogate" in error_text(response)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_control_characters_in_a_name_field_are_a_400(client, dialect):
    for field in NAME_FIELDS[dialect]:
        response = post(client, dialect, **{field: "euler\u0000"})
        assert_refused(response, field.replace("sd_model_checkpoint", "override_settings"), "")


def test_a_surrogate_in_a_field_name_or_a1111_styles_is_a_400(client):
    assert "surrogate" in error_text(post(client, "ours", **{f"x{SURROGATE}": 1}))
    # A1111 ignores unknown fields, but not text that is not text.
    assert_refused(post(client, "a1111", **{f"x{SURROGATE}": 1}), "\\ud800", "surrogate")
    assert_refused(post(client, "a1111", styles=[SURROGATE]), "styles", "surrogate")


@pytest.mark.parametrize("dialect", DIALECTS)
def test_control_characters_in_prose_are_cleaned_to_spaces(client, dialect):
    messy = post(client, dialect, prompt="a\u0000red\u0007cat\u009b", negative_prompt="\x1bblur")
    clean = post(client, dialect, prompt="a red cat ", negative_prompt=" blur")
    assert messy.status_code in (200, 202), messy.data[:300]
    if dialect == "ours":  # the same image: the control characters meant nothing
        assert messy.data == clean.data


def test_composed_and_decomposed_accents_draw_the_same_image(client):
    composed = post(client, "ours", prompt="caf\u00e9 au lait")
    decomposed = post(client, "ours", prompt="cafe\u0301 au lait")
    assert composed.status_code == 200
    assert composed.data == decomposed.data


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize(
    "prompt",
    [
        "\u202ecat\u200b\u200d\u2066dog\u2069\u200f",  # bidirectional and zero-width marks
        "c" + "\u0301" * 1900,  # combining characters, within the length limit
        "\U0001f600" * 1500,  # emoji (outside the BMP), within the length limit
        "\ufeff\ufffe\uffff a cat",  # a BOM and noncharacters are still characters
    ],
    ids=["marks", "combining", "emoji", "noncharacters"],
)
def test_unusual_but_real_text_is_served(client, dialect, prompt):
    response = post(client, dialect, prompt=prompt)
    assert response.status_code in (200, 202), response.data[:300]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_ten_thousand_emoji_are_over_the_length_limit(client, dialect):
    path, body = DIALECTS[dialect]
    data = json.dumps({**body, "prompt": "\U0001f600" * 10_000}, ensure_ascii=False).encode()
    assert len(data) < 65536  # under the body limit: the prompt's own limit refuses it
    response = client.post(path, data=data, content_type="application/json")
    assert_refused(response, "prompt", "2000")


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ('{"prompt": ' + "[" * 30_000 + "]" * 30_000 + "}", "nested"),
        ('{"prompt": "x", "extra": ' + '{"a": ' * 40 + "1" + "}" * 40 + "}", "nested"),
        ('{"prompt": "x", "seed": 1' + "0" * 5000 + "}", "digits"),
        ('{"prompt": "x",}', "line 1"),
    ],
    ids=["deep-array", "deep-object", "huge-int", "trailing-comma"],
)
def test_json_the_parser_would_choke_on_is_a_400(client, dialect, raw, words):
    response = client.post(DIALECTS[dialect][0], data=raw, content_type="application/json")
    assert response.status_code == 400, response.data[:300]
    assert "not valid JSON" in error_text(response) and words in error_text(response)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_numbers_out_of_range_are_400s_naming_the_field(client, dialect):
    path, body = DIALECTS[dialect]
    guidance = "cfg_scale" if dialect == "a1111" else "guidance_scale"
    cases = [(guidance, "1e400"), ("seed", "-1e400"), ("steps", "1e400"), (guidance, "NaN")]
    for field, number in [*cases, ("seed", "-Infinity"), ("width", "1" + "0" * 400)]:
        raw = json.dumps(body)[:-1] + f', "{field}": {number}}}'
        response = client.post(path, data=raw, content_type="application/json")
        assert_refused(response, field, "")


@pytest.mark.parametrize("dialect", DIALECTS)
def test_invalid_utf8_in_the_body_is_a_400(client, dialect):
    raw = b'{"prompt": "\xff\xfe a cat"}'
    response = client.post(DIALECTS[dialect][0], data=raw, content_type="application/json")
    assert response.status_code == 400
    assert "UTF-8" in error_text(response)
    assert_still_generates(client)


@pytest.mark.parametrize(
    "headers",
    [
        {"X-API-Key": "\xff\x00\x7f"},
        {"Authorization": "Bearer \xe9\xe9 \x01"},
        {"Authorization": "\u0000"},
        {"Accept": "image/png;q=nan, */*;q=1e400"},
        {"Accept": "\x7f,,;;;q="},
    ],
)
def test_odd_header_values_are_harmless(client, headers):
    response = client.post("/image/generate", json={"prompt": "a cat", "steps": 1}, headers=headers)
    assert response.status_code == 200


@pytest.mark.parametrize("key", ["\xff\x00\x7f", "é" * 40, "\x01" * 20])
def test_odd_api_keys_are_a_401_when_keys_are_on(make_app, key):
    client = make_app(API_KEYS="k" * 20).test_client()
    for headers in ({"X-API-Key": key}, {"Authorization": f"Bearer {key}"}):
        response = client.get("/models", headers=headers)
        assert response.status_code == 401, response.data[:300]


@pytest.mark.parametrize("job_id", ["..", "%00", "a" * 5000, "%ED%A0%80", "%F0%9F%98%80", "x%0A"])
def test_odd_job_ids_are_404s(client, job_id):
    for method in (client.get, client.delete):
        response = method(f"/jobs/{job_id}")
        assert response.status_code == 404, response.data[:300]
        assert response.mimetype == "application/json"


def test_every_answer_says_nosniff_and_private_ones_no_store(client):
    image = post(client, "ours")
    job = post(client, "jobs")
    for response in (image, job, client.get(job.headers["Location"]), client.get("/nope")):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Cache-Control"] == "no-store"
    document = client.get("/openapi.json")
    assert document.headers["X-Content-Type-Options"] == "nosniff"
    assert "no-store" not in document.headers.get("Cache-Control", "")


def test_max_steps_bounds_the_models_default_steps_too(make_app):
    client = make_app(MAX_STEPS=2).test_client()  # the demo's own default is 4 steps
    response = client.post("/image/generate", json={"prompt": "a cat", "response_format": "json"})
    assert response.status_code == 200
    assert response.get_json()["parameters"]["steps"] == 2


@pytest.mark.parametrize(
    "path", ["/jobs//image", "/v1//models", "/sdapi/v1//samplers", "/static//page.css"]
)
def test_doubled_slashes_are_json_404s_not_html_redirects(client, path):
    # As a server hands the path over (the test client would read "//x" as a host).
    response = client.get("/", environ_overrides={"PATH_INFO": path})
    assert response.status_code == 404
    assert response.mimetype == "application/json"


def test_leading_doubled_slashes_read_as_one(client):
    # werkzeug reads a path's leading slashes as one: `GET //health` is /health, not a redirect.
    response = client.get("/", environ_overrides={"PATH_INFO": "//health"})
    assert response.status_code == 200
    assert response.mimetype == "application/json"
