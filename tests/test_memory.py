"""Fitting models in memory: slicing, tiling, offload, out-of-memory recovery, idle unload."""

from __future__ import annotations

import base64
import logging
import threading
import time

import pytest
import torch
from diffusers.models.attention_processor import SlicedAttnProcessor
from helpers import DEMO_SIZE, png_size

URL = "/image/generate"


def test_slicing_settings_reach_the_pipeline(make_app):
    app = make_app(ATTENTION_SLICING="true", VAE_SLICING="true")
    pipeline = app.extensions["engine"].pipeline()
    assert all(isinstance(p, SlicedAttnProcessor) for p in pipeline.unet.attn_processors.values())
    assert pipeline.vae.use_slicing
    # Sliced, a batch still comes out whole.
    response = app.test_client().post(URL, json={"prompt": "x", "n": 2, "response_format": "json"})
    images = [base64.b64decode(image) for image in response.get_json()["images"]]
    assert [png_size(image) for image in images] == [DEMO_SIZE, DEMO_SIZE]


@pytest.mark.parametrize(("setting", "expected"), [("auto", True), ("false", False)])
def test_vae_slicing_is_on_by_default_on_the_cpu(make_app, setting, expected):
    app = make_app(VAE_SLICING=setting)
    assert app.extensions["engine"].pipeline().vae.use_slicing is expected


def test_vae_tiling_follows_the_image_size(make_app):
    app = make_app(VAE_TILING="auto", VAE_TILING_PIXELS=128 * 128)
    client, vae = app.test_client(), app.extensions["engine"].pipeline().vae
    client.post(URL, json={"prompt": "x", "width": 128, "height": 128})
    assert vae.use_tiling is False
    client.post(URL, json={"prompt": "x", "width": 192, "height": 128})
    assert vae.use_tiling is True
    client.post(URL, json={"prompt": "x", "width": 64, "height": 64})
    assert vae.use_tiling is False


@pytest.mark.parametrize(("setting", "expected"), [("true", True), ("false", False)])
def test_vae_tiling_forced(make_app, setting, expected):
    app = make_app(VAE_TILING=setting, VAE_TILING_PIXELS=64 * 64)
    app.test_client().post(URL, json={"prompt": "x", "width": 128, "height": 128})
    assert app.extensions["engine"].pipeline().vae.use_tiling is expected


def test_cpu_offload_is_ignored_on_the_cpu_with_a_warning(make_app, caplog):
    with caplog.at_level(logging.WARNING):
        app = make_app(CPU_OFFLOAD="model")
    assert "only applies to CUDA" in caplog.text
    assert app.test_client().post(URL, json={"prompt": "x"}).status_code == 200


@pytest.fixture
def oom_once(make_app):
    """An app whose next generation runs out of GPU memory at its second step."""
    app = make_app()
    worker = app.extensions["engine"].workers[0]

    def exhaust(step: int, _total: int) -> None:
        if step == 2:
            worker.step_hook = None  # only this once
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    worker.step_hook = exhaust
    return app


def test_out_of_memory_is_507_and_the_next_request_succeeds(oom_once, caplog):
    client = oom_once.test_client()
    with caplog.at_level(logging.WARNING, logger="backend"):
        response = client.post(URL, json={"prompt": "x", "width": 256, "height": 256})
    assert response.status_code == 507
    error = response.get_json()["error"]
    assert "ran out of memory" in error and "CPU_OFFLOAD=model" in error
    assert "20.00 GiB" not in error  # the device's own message stays in the server
    assert "memory released" in caplog.text
    assert client.get("/health").status_code == 200
    assert png_size(client.post(URL, json={"prompt": "x"}).data) == DEMO_SIZE


def test_out_of_memory_in_openai_shape_under_v1(oom_once):
    response = oom_once.test_client().post("/v1/images/generations", json={"prompt": "x"})
    assert response.status_code == 507
    assert response.get_json()["error"]["code"] == "out_of_memory"


def wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_idle_models_are_unloaded_and_come_back_on_the_next_request(make_app):
    # The idle clock starts when the run ends; encoding the PNG and answering come after it
    # (0.55 s on a busy 2-core machine), so the model must outlive them for the last assert.
    app = make_app(IDLE_UNLOAD_SECONDS="3")
    client = app.test_client()
    assert client.post(URL, json={"prompt": "x", "seed": 1}).status_code == 200
    assert wait_for(lambda: client.get("/health").get_json()["loaded_models"] == [])
    health = client.get("/health")
    assert health.status_code == 200  # it can be reloaded: still healthy
    assert health.get_json()["model_loaded"] is False
    listing = {m["name"]: m for m in client.get("/models").get_json()["models"]}
    assert listing["demo"]["loaded"] is False
    again = client.post(URL, json={"prompt": "x", "seed": 1})
    assert again.status_code == 200
    assert client.get("/health").get_json()["loaded_models"] == ["demo"]


def test_a_busy_model_is_not_unloaded_while_it_runs(make_app):
    app = make_app(IDLE_UNLOAD_SECONDS="0.2")
    worker = app.extensions["engine"].workers[0]
    worker.step_hook = lambda step, total: time.sleep(0.15)  # each run: 0.6 s, longer than 0.2 s
    client = app.test_client()
    assert client.post(URL, json={"prompt": "x", "steps": 4}).status_code == 200
    assert client.post(URL, json={"prompt": "x", "steps": 4}).status_code == 200


def test_two_devices_share_the_work(make_app):
    app = make_app(DEVICES="cpu,cpu")
    engine = app.extensions["engine"]
    assert [w.device_name for w in engine.workers] == ["cpu", "cpu"]
    for worker in engine.workers:  # slow enough that two requests overlap
        worker.step_hook = lambda step, total: time.sleep(0.1)
    results = []
    threads = [
        threading.Thread(
            target=lambda seed=seed: results.append(
                app.test_client().post(URL, json={"prompt": "x", "seed": seed}).status_code
            )
        )
        for seed in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert results == [200, 200]
    devices = app.test_client().get("/health").get_json()["devices"]
    assert [d["served"] for d in devices] == [1, 1]
    assert [d["loaded_models"] for d in devices] == [["demo"], ["demo"]]


def test_requests_go_where_their_model_is_loaded(make_app, two_models_dir):
    app = make_app(DEVICES="cpu,cpu", MODELS_DIR=str(two_models_dir), MAX_LOADED_MODELS=1)
    client = app.test_client()
    for _ in range(3):
        assert client.post(URL, json={"prompt": "x", "model": "other"}).status_code == 200
    devices = client.get("/health").get_json()["devices"]
    holding_other = [d for d in devices if d["loaded_models"] == ["other"]]
    assert len(holding_other) == 1 and holding_other[0]["served"] == 3
    # The default still lives on the other device, which serves it without a reload.
    assert client.post(URL, json={"prompt": "x"}).status_code == 200
    assert sorted(d["loaded_models"] for d in client.get("/health").get_json()["devices"]) == [
        ["demo"],
        ["other"],
    ]


def test_one_failed_device_leaves_the_others_serving(make_app):
    app = make_app(DEVICES="cpu,cuda:7")
    client = app.test_client()
    health = client.get("/health").get_json()
    assert [d["status"] for d in health["devices"]] == ["healthy", "error"]
    assert "cuda:7" in health["devices"][1]["error"]
    assert health["status"] == "healthy"
    assert client.post(URL, json={"prompt": "x"}).status_code == 200
