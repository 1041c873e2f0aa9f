"""One structured log line and the HTTP metrics for every request."""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any

from flask import Flask, Response, g, request

from backend.controller.http_metrics import HttpMetrics

log = logging.getLogger("backend.access")

PROMPT_LOG_LIMIT = 500  # characters of a prompt kept in the log with LOG_PROMPTS=true
# Refusals known by their status; the error handler names the model layer's (g.rejection).
_REJECTIONS = {401: "unauthorized", 429: "rate_limited"}
# What the generate endpoints say about a result, taken from their response headers.
_RESULT_HEADERS = {
    "X-Model": "model",
    "X-Seeds": "seeds",
    "X-Queue-Time": "queue_s",
    "X-Generation-Time": "generation_s",
}


def init_request_log(app: Flask, metrics: HttpMetrics, log_prompts: bool) -> None:
    """Time every request; log it as one JSON line and count it in the metrics."""

    @app.before_request
    def _start_clock() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def _record(response: Response) -> Response:
        seconds = time.perf_counter() - g.get("started", time.perf_counter())
        # The rule's template, not the path: job ids and model names must not explode the
        # metrics' label sets.
        route = _template(request.url_rule.rule) if request.url_rule else "unmatched"
        metrics.requests.labels(route, request.method, str(response.status_code)).inc()
        metrics.request_seconds.labels(route).observe(seconds)
        rejection = _REJECTIONS.get(response.status_code) or g.get("rejection")
        if rejection is not None:
            metrics.rejections.labels(rejection).inc()
        log.info(json.dumps(_fields(response, route, seconds, log_prompts)))
        return response


# `<job_id:job_id>`: a converter named after its variable adds nothing to the template.
_NAMED_CONVERTER = re.compile(r"<(\w+):\1>")


def _template(rule: str) -> str:
    """The route as it is labelled: `/jobs/<job_id>`, whatever converter its id has."""
    return _NAMED_CONVERTER.sub(r"<\1>", rule)


def _fields(response: Response, route: str, seconds: float, log_prompts: bool) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "request_id": g.get("request_id"),
        "method": request.method,
        "path": request.path,
        "route": route,
        "status": response.status_code,
        "duration_ms": round(seconds * 1000, 1),
        "client": g.get("client_id") or request.remote_addr,
        "bytes": response.calculate_content_length(),
    }
    for header, name in _RESULT_HEADERS.items():
        if header in response.headers:
            fields[name] = response.headers[header]
    if log_prompts and request.is_json:
        # Prompts can be personal: they reach the log only when the operator asks for them.
        try:  # the body may be the very reason the request failed: too large, or unreadable
            body = request.get_json(silent=True)
        except Exception:
            body = None
        if isinstance(body, dict):
            for key in ("prompt", "negative_prompt"):
                if isinstance(body.get(key), str):
                    fields[key] = body[key][:PROMPT_LOG_LIMIT]
    return fields
