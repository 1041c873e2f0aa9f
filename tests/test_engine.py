"""The model layer on its own: no Flask, the real demo pipeline."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from backend.model.errors import ModelUnavailableError
from backend.model.types import GenerationRequest


def request(seed: int) -> GenerationRequest:
    return GenerationRequest("a hill", "", 128, 128, 2, 5.0, seed)


def test_stop_finishes_queued_jobs_then_refuses_new_ones(make_app):
    engine = make_app().extensions["engine"]
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(engine.generate, request(seed)) for seed in range(4)]
        results = [future.result(timeout=120) for future in futures]
    engine.stop(timeout=60)
    assert [result.seed for result in results] == [0, 1, 2, 3]
    with pytest.raises(ModelUnavailableError):
        engine.generate(request(9))
    assert engine.status().state == "stopped"


def test_stopped_server_answers_503_not_a_hang(make_app):
    app = make_app()
    app.extensions["engine"].stop(timeout=60)
    client = app.test_client()
    response = client.post("/image/generate", json={"prompt": "x"})
    assert response.status_code == 503
    assert client.get("/health").get_json()["status"] == "stopping"
    assert client.get("/ping").data == b"pong"


def test_result_reports_timings_and_parameters(app):
    result = app.extensions["engine"].generate(request(5))
    assert result.generation_seconds > 0 and result.queue_seconds >= 0
    assert result.parameters() == {
        "prompt": "a hill",
        "negative_prompt": "",
        "width": 128,
        "height": 128,
        "steps": 2,
        "guidance_scale": 5.0,
        "seed": 5,
        "num_images": 1,
        "scheduler": "euler",  # the demo's own scheduler, described by our name
        "model": "demo",
        "loras": (),
        "clip_skip": None,
        "vae": None,
        "init_image": None,
        "hires": None,
        "refiner": None,
    }
