"""A request id on every request: taken from `X-Request-ID` when sane, returned in the response."""

from __future__ import annotations

import re
import uuid

from flask import Flask, Response, g, request

HEADER = "X-Request-ID"
_SANE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")  # anything else could forge log lines


def init_request_ids(app: Flask) -> None:
    """Give each request an id that logs and error bodies can quote."""

    @app.before_request
    def _assign() -> None:
        incoming = request.headers.get(HEADER, "")
        g.request_id = incoming if _SANE.match(incoming) else uuid.uuid4().hex

    @app.after_request
    def _echo(response: Response) -> Response:
        response.headers[HEADER] = g.get("request_id", "")
        return response
