"""Several images in one response: a ZIP archive, byte-reproducible."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterable

from backend.model.types import EncodedImage

_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # a fixed timestamp keeps archives byte-reproducible


def zip_images(images: Iterable[EncodedImage]) -> bytes:
    """A ZIP of `images` (stored, not recompressed), named `<index>-<seed>.<ext>` in order."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for index, image in enumerate(images, start=1):
            entry = zipfile.ZipInfo(f"{index:02d}-{image.seed}.{image.extension}", _ZIP_EPOCH)
            archive.writestr(entry, image.data)
    return buffer.getvalue()
