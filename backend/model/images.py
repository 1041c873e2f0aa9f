"""Encoding generated images for the wire."""

from __future__ import annotations

import io

from PIL import Image

PNG_MEDIA_TYPE = "image/png"


def encode_png(image: Image.Image) -> bytes:
    """PNG bytes of `image`; the same pixels always give the same bytes."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
