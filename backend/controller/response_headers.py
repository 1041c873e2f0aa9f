"""Headers every response carries: no content sniffing, and no caching of what may be private."""

from __future__ import annotations

from flask import Flask, Response, request

# Generated images, job states and error bodies can be private to the caller: no cache, shared
# or not, may keep a copy. The OpenAPI document is the one public, static answer.
CACHEABLE_PATHS = frozenset({"/openapi.json"})


def init_response_headers(app: Flask) -> None:
    """Add `X-Content-Type-Options: nosniff` and `Cache-Control: no-store` to every answer."""

    @app.after_request
    def _add(response: Response) -> Response:
        # Without nosniff a browser may run a "PNG" or an error body as HTML or script.
        response.headers["X-Content-Type-Options"] = "nosniff"
        if request.path not in CACHEABLE_PATHS:
            response.headers.setdefault("Cache-Control", "no-store")
        return response
