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
    }
