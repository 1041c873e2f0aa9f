"""The per-route body limit: image-carrying routes (backend/uploads.py) take MAX_UPLOAD_LENGTH,
every other body MAX_CONTENT_LENGTH. Set before any view reads the body, so werkzeug refuses a
declared Content-Length over the limit with 413 without reading a byte of it."""

from __future__ import annotations

from flask import Flask, request

from backend.uploads import MAX_FORM_PARTS, is_upload_path


def init_upload_limits(app: Flask, max_upload_length: int) -> None:
    """Give the upload routes their larger body and multipart limits."""

    @app.before_request
    def _limit() -> None:
        request.max_form_parts = MAX_FORM_PARTS
        if is_upload_path(request.path):
            request.max_content_length = max_upload_length
            # A base64 image sent as a plain form field is as large as the file would be.
            request.max_form_memory_size = max_upload_length
