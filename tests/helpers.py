"""Small assertions shared by the test modules."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DEMO_SIZE = (64, 64)  # the trained demo's default size (the catalogue's)


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
    assert png_size(response.data) == DEMO_SIZE


def pixels(data: bytes) -> np.ndarray:
    """An encoded image's RGB pixels, as signed integers ready to subtract."""
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)


def assert_nearly_identical(first: bytes, second: bytes) -> None:
    """The same picture up to batched rounding: a level or two on under 1% of the pixels.

    Micro-batched matrix products round differently from a lone request's (see docs/serving.md,
    "Micro-batching"); anything more than this is a different image.
    """
    difference = np.abs(pixels(first) - pixels(second))
    assert difference.max() <= 2, difference.max()
    assert (difference > 0).mean() < 0.01, (difference > 0).mean()
