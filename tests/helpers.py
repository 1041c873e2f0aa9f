"""Small assertions shared by the test modules."""

from __future__ import annotations

import io

from PIL import Image

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes) -> tuple[int, int]:
    """The size of a PNG, after checking it really is a complete, decodable PNG."""
    assert data.startswith(PNG_SIGNATURE), data[:64]
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG"
        image.load()  # decodes every byte: a truncated file fails here
        return image.size


def assert_still_generates(client) -> None:
    """The server answers a plain request with a real image."""
    response = client.post("/image/generate", json={"prompt": "still alive", "seed": 1})
    assert response.status_code == 200, response.get_json()
    assert png_size(response.data) == (256, 256)
