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
    assert response.get_json() == {
        "status": "healthy",
        "model_loaded": True,
        "model": "demo",
        "device": "cpu",
        "loaded_models": ["demo"],
    }
