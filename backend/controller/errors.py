"""The one place where failures become responses: always JSON, never a traceback."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, current_app, g, jsonify, request
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from backend.model.errors import (
    DeviceOutOfMemoryError,
    GenerationFailedError,
    GenerationTimeoutError,
    ImageTaskError,
    JobGoneError,
    JobNotFinishedError,
    JobNotFoundError,
    LoraError,
    ModelLayerError,
    ModelNotFoundError,
    ModelNotReadyError,
    QueueFullError,
)
from backend.view.errors import error_body
from backend.view.openai import openai_error_body

OPENAI_PREFIX = "/v1/"  # OpenAI's clients parse errors in OpenAI's own shape

log = logging.getLogger(__name__)


def error_response(
    status: int,
    message: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """A JSON error response: the server's one error shape (OpenAI's under /v1/)."""
    if request.path.startswith(OPENAI_PREFIX):
        response = jsonify(openai_error_body(status, message, details))
    else:
        response = jsonify(error_body(message, details))
    response.status_code = status
    response.headers.update(headers or {})
    return response


def register_error_handlers(app: Flask) -> None:
    """Route every exception a request can raise to one JSON response builder."""
    app.register_error_handler(ValidationError, _invalid_input)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(ModelLayerError, _model_error)
    app.register_error_handler(Exception, _unexpected)


def _invalid_input(error: ValidationError) -> Response:
    messages = error.normalized_messages()
    # One line per distinct problem: a rule broken by two fields (width x height) reads once.
    fields_by_problem: dict[str, list[str]] = {}
    for field, problem in messages.items():
        fields_by_problem.setdefault(_flatten(problem), []).append(field)
    summary = "; ".join(f"{', '.join(f)}: {p}" for p, f in fields_by_problem.items())
    return error_response(400, f"Invalid request. {summary}", messages)


def _flatten(problem: Any) -> str:
    if isinstance(problem, list):
        return " ".join(_flatten(item) for item in problem)
    if isinstance(problem, dict):
        return " ".join(f"{key}: {_flatten(value)}" for key, value in problem.items())
    return str(problem)


def _http_error(error: HTTPException) -> Response:
    # Keep the protocol headers werkzeug computed (Allow on 405), not its HTML content type.
    headers = {k: v for k, v in error.get_headers() if k.lower() != "content-type"}
    details = None
    if getattr(error, "valid_methods", None):
        details = {"allowed_methods": error.valid_methods}
    message = error.description or error.name
    if isinstance(error, RequestEntityTooLarge):
        message = _too_large_message()
    return error_response(error.code or 500, message, details, headers)


def _too_large_message() -> str:
    # The limit is per route (MAX_UPLOAD_LENGTH on the upload routes, backend/uploads.py).
    limit = request.max_content_length or current_app.config["MAX_CONTENT_LENGTH"]
    length = request.content_length
    if request.mimetype == "multipart/form-data" and (length is None or length < limit):
        return (
            f"The form is too large: more than {request.max_form_parts} parts, or a field "
            f"larger than {request.max_form_memory_size} bytes."
        )
    return f"The request body is larger than the limit of {limit} bytes."


# Model-layer errors with a status of their own; every other one means "cannot serve this now"
# (loading, busy or misconfigured): 503.
_STATUS = {
    LoraError: 400,
    ImageTaskError: 400,
    ModelNotFoundError: 404,
    JobNotFoundError: 404,
    JobNotFinishedError: 409,
    JobGoneError: 410,
    GenerationTimeoutError: 504,
    DeviceOutOfMemoryError: 507,
}


# Refusals counted in t2i_rejections_total, by the request log.
_REJECTIONS = {
    QueueFullError: "queue_full",
    ModelNotReadyError: "not_ready",
    GenerationTimeoutError: "timeout",
}


def _model_error(error: ModelLayerError) -> Response:
    g.rejection = next(
        (name for kind, name in _REJECTIONS.items() if isinstance(error, kind)), None
    )
    if isinstance(error, GenerationFailedError):
        return _unexpected(error)
    if isinstance(error, ModelNotFoundError):
        return error_response(404, str(error), {"available": error.available})
    status = next((code for kind, code in _STATUS.items() if isinstance(error, kind)), 503)
    headers = {}
    if isinstance(error, ModelNotReadyError | QueueFullError):
        headers["Retry-After"] = str(error.retry_after_seconds)
    return error_response(status, str(error), headers=headers)


def _unexpected(error: Exception) -> Response:
    request_id = g.get("request_id", "-")
    if isinstance(error, GenerationFailedError):  # the device worker logged the traceback
        log.error("request %s: %s", request_id, error)
    else:
        log.exception("unexpected error in request %s", request_id)
    return error_response(
        500,
        f"Internal server error. Quote request id {request_id} when reporting it.",
        {"request_id": request_id},
    )


def model_error_status(error: ModelLayerError) -> int:
    """The HTTP status a model-layer error answers with (for failures reported in a stream)."""
    if isinstance(error, GenerationFailedError):
        return 500
    return next((code for kind, code in _STATUS.items() if isinstance(error, kind)), 503)
