"""Bad input never hurts the server: one JSON error shape, the right status, and it serves on."""

from __future__ import annotations

import json
import logging

import pytest
from helpers import assert_still_generates

URL = "/image/generate"


def assert_error_shape(response, status: int) -> dict:
    """The one error shape: JSON, an `error` string, `details` only as an object."""
    assert response.status_code == status, response.data[:300]
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert isinstance(body["error"], str) and body["error"]
    assert set(body) <= {"error", "details"}
    assert isinstance(body.get("details", {}), dict)
    text = response.get_data(as_text=True)
    assert "Traceback" not in text and "<html" not in text.lower()
    return body


BAD_FIELDS = [
    # (body, fields that must be named in details)
    ({}, ["prompt"]),
    ({"prompt": ""}, ["prompt"]),
    ({"prompt": "   \n\t"}, ["prompt"]),
    ({"prompt": None}, ["prompt"]),
    ({"prompt": 42}, ["prompt"]),
    ({"prompt": ["a", "b"]}, ["prompt"]),
    ({"prompt": {"text": "a"}}, ["prompt"]),
    ({"prompt": "x" * 2001}, ["prompt"]),
    ({"prompt": "x", "negative_prompt": "n" * 2001}, ["negative_prompt"]),
    ({"prompt": "x", "negative_prompt": 5}, ["negative_prompt"]),
    ({"prompt": "x", "width": 10**9}, ["width"]),
    ({"prompt": "x", "width": 2056}, ["width"]),
    ({"prompt": "x", "width": 0}, ["width"]),
    ({"prompt": "x", "width": -512}, ["width"]),
    ({"prompt": "x", "width": 56}, ["width"]),
    ({"prompt": "x", "width": 513}, ["width"]),
    ({"prompt": "x", "width": 512.5}, ["width"]),
    ({"prompt": "x", "width": "512px"}, ["width"]),
    ({"prompt": "x", "width": True}, ["width"]),
    ({"prompt": "x", "width": [512]}, ["width"]),
    ({"prompt": "x", "height": 1e308}, ["height"]),
    ({"prompt": "x", "width": 2048, "height": 2048}, ["width", "height"]),
    ({"prompt": "x", "steps": -3}, ["steps"]),
    ({"prompt": "x", "steps": 0}, ["steps"]),
    ({"prompt": "x", "steps": 101}, ["steps"]),
    ({"prompt": "x", "steps": 10**30}, ["steps"]),
    ({"prompt": "x", "num_inference_steps": -1}, ["num_inference_steps"]),
    ({"prompt": "x", "steps": 2, "num_inference_steps": 3}, ["num_inference_steps"]),
    ({"prompt": "x", "guidance_scale": float("nan")}, ["guidance_scale"]),
    ({"prompt": "x", "guidance_scale": float("inf")}, ["guidance_scale"]),
    ({"prompt": "x", "guidance_scale": "NaN"}, ["guidance_scale"]),
    ({"prompt": "x", "guidance_scale": -0.5}, ["guidance_scale"]),
    ({"prompt": "x", "guidance_scale": 30.5}, ["guidance_scale"]),
    ({"prompt": "x", "cfg_scale": 1e9}, ["cfg_scale"]),
    ({"prompt": "x", "guidance_scale": 2, "cfg_scale": 3}, ["cfg_scale"]),
    ({"prompt": "x", "seed": -2}, ["seed"]),
    ({"prompt": "x", "seed": 2**32}, ["seed"]),
    ({"prompt": "x", "seed": 2**64}, ["seed"]),
    ({"prompt": "x", "seed": "lucky"}, ["seed"]),
    ({"prompt": "x", "stpes": 3}, ["stpes"]),
    ({"prompt": "x", "sampler": "euler", "n_iter": 2}, ["sampler", "n_iter"]),
    ({"prompt": "x", "width": 0, "steps": 0, "seed": -5}, ["width", "steps", "seed"]),
]


@pytest.mark.parametrize(("body", "fields"), BAD_FIELDS, ids=lambda value: repr(value)[:40])
def test_invalid_fields_are_named(client, body, fields):
    error = assert_error_shape(client.post(URL, json=body), 400)
    assert set(fields) <= set(error["details"]), error
    for field in fields:
        assert field in error["error"]
    assert_still_generates(client)


def test_unknown_field_suggests_the_intended_one(client):
    error = assert_error_shape(client.post(URL, json={"prompt": "x", "stpes": 3}), 400)
    assert "Did you mean 'steps'?" in error["details"]["stpes"][0]


def test_limit_messages_tell_the_limit(client):
    error = assert_error_shape(client.post(URL, json={"prompt": "x", "steps": 500}), 400)
    assert error["details"]["steps"] == ["Must be between 1 and 100."]
    error = assert_error_shape(client.post(URL, json={"prompt": "x", "width": 100}), 400)
    assert error["details"]["width"] == ["Must be a multiple of 8."]


def test_a_broken_combination_reads_once(client):
    error = assert_error_shape(
        client.post(URL, json={"prompt": "x", "width": 2048, "height": 2048}), 400
    )
    assert error["error"].count("pixels") == 1


@pytest.mark.parametrize(
    ("data", "content_type", "status"),
    [
        ("{not json", "application/json", 400),
        ('{"prompt": "x",}', "application/json", 400),
        ("", "application/json", 400),
        (b"\xff\xfe\x00garbage", "application/json", 400),
        ("[1, 2]", "application/json", 400),
        ('"a prompt"', "application/json", 400),
        ("42", "application/json", 400),
        ("null", "application/json", 400),
        ('{"prompt": "x"}', "text/plain", 415),
        ("prompt=x", "application/x-www-form-urlencoded", 415),
        ('{"prompt": "x"}', None, 415),
    ],
)
def test_malformed_bodies(client, data, content_type, status):
    response = client.post(URL, data=data, content_type=content_type)
    error = assert_error_shape(response, status)
    if status == 415:
        assert "application/json" in error["error"]
    assert_still_generates(client)


def test_json_with_charset_is_json(client):
    response = client.post(
        URL, data=json.dumps({"prompt": "x"}), content_type="application/json; charset=utf-8"
    )
    assert response.status_code == 200


def test_body_over_the_limit_is_413(client):
    response = client.post(URL, json={"prompt": "x" * 1_000_000})
    error = assert_error_shape(response, 413)
    assert "65536 bytes" in error["error"]
    assert_still_generates(client)


def test_unknown_route_is_json_404(client):
    assert_error_shape(client.get("/no/such/route"), 404)
    assert_error_shape(client.post("/image/generate/extra", json={"prompt": "x"}), 404)


def test_wrong_method_is_json_405_with_allow(client):
    response = client.get(URL)
    error = assert_error_shape(response, 405)
    assert "POST" in response.headers["Allow"]
    assert "POST" in error["details"]["allowed_methods"]
    assert_error_shape(client.post("/ping"), 405)


def test_unexpected_failure_is_500_with_request_id_and_the_server_recovers(
    app, client, monkeypatch, caplog
):
    # Fault injection: the real pipeline runs, and its UNet fails mid-generation.
    def broken_forward(*args, **kwargs):
        raise RuntimeError("boom /secret/path")

    monkeypatch.setattr(app.extensions["engine"].pipeline().unet, "forward", broken_forward)
    with caplog.at_level(logging.ERROR, logger="backend"):
        response = client.post(URL, json={"prompt": "x"}, headers={"X-Request-ID": "req-42"})
    error = assert_error_shape(response, 500)
    assert error["details"] == {"request_id": "req-42"}
    assert "req-42" in error["error"]
    assert "boom" not in response.get_data(as_text=True)  # internals stay in the log
    assert "req-42" in caplog.text and "boom /secret/path" in caplog.text
    assert "Traceback" in caplog.text
    monkeypatch.undo()
    assert_still_generates(client)


@pytest.mark.parametrize("incoming", ["x" * 65, 'a" status=200 fake="', "spaces are odd"])
def test_insane_request_ids_are_replaced(client, incoming):
    response = client.get("/ping", headers={"X-Request-ID": incoming})
    assert response.headers["X-Request-ID"] != incoming
    assert len(response.headers["X-Request-ID"]) == 32
