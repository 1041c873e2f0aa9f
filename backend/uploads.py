"""Which routes take images in their bodies, and so the larger body limit (MAX_UPLOAD_LENGTH).

Plain data with no Flask in it: gunicorn.conf.py gives it to the buffering worker
(backend/http_worker.py), which must pick a request's body limit from its request line before
any app code runs, and the app (backend/controller/uploads.py) sets the same limit per request.
To opt a route in, add its exact path here: both layers follow.
"""

from __future__ import annotations

# Exact paths, without a query string. Every other body keeps MAX_CONTENT_LENGTH.
UPLOAD_PATHS = frozenset(
    {
        "/image/edit",
        "/jobs/edit",
        "/v1/images/edits",
        "/sdapi/v1/img2img",
    }
)
# A multipart form of an upload route holds a few images and a few dozen fields: more parts than
# this is an attack on the parser, not a request (werkzeug answers 413).
MAX_FORM_PARTS = 256


def is_upload_path(path: str) -> bool:
    """True when `path` (a request target, query string allowed) takes MAX_UPLOAD_LENGTH."""
    return path.split("?", 1)[0] in UPLOAD_PATHS
