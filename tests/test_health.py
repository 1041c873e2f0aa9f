"""GET /ping and GET /health through the Flask test client."""

from __future__ import annotations


def test_ping_is_plain_pong(client):
    response = client.get("/ping")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    assert response.data == b"pong"


def test_health_when_loaded(client):
    response = client.get("/health")
    assert response.status_code == 200
    body = response.get_json()
    devices = body.pop("devices")
    assert body == {
        "status": "healthy",
        "model_loaded": True,
        "model": "demo",
        "device": "cpu",
        "loaded_models": ["demo"],
    }
    (device,) = devices
    # The shared app may have generated already: when its latest step ended is a timestamp.
    assert device.pop("last_step_at") is None or device["served"] > 0
    assert device | {"served": 0} == {
        "index": 0,
        "device": "cpu",
        "description": "CPU",
        "status": "healthy",
        "loaded_models": ["demo"],
        "queue_depth": 0,
        "running": 0,
        "served": 0,
        "memory": None,  # reported for CUDA devices
        "error": None,
        "worker": None,  # a worker process's id in the scale-out mode
    }


def test_a_missing_default_model_is_reported_at_once_before_torch_loads(make_app, demo_copy):
    broken = demo_copy("no-unet")
    for path in (broken / "unet").glob("*.safetensors"):
        path.unlink()
    for folder, words in [("nowhere", "does not exist"), (str(broken), "no weights for 'unet'")]:
        app = make_app(wait=False, DEFAULT_MODEL=folder)
        # The first probe, right after start-up: the device thread is still importing torch.
        response = app.test_client().get("/health")
        assert response.status_code == 503
        body = response.get_json()
        assert body["status"] == "error", body
        assert words in body["error"]
