"""The pieces every part of the OpenAPI document is made of: error texts, headers, operations."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema

from backend.view.errors import ErrorSchema

BINARY = {"schema": {"type": "string", "format": "binary"}}
ERROR_TEXT = {
    400: "Invalid input: malformed JSON, a body that is not an object, or invalid fields",
    401: "Missing or wrong API key (only when API_KEYS is set)",
    404: "Unknown route, model or job",
    405: "Method not allowed",
    409: "The job has no images: it has not succeeded",
    410: "The job is gone: deleted, or past JOB_TTL_SECONDS",
    413: "Request body too large",
    415: "Content-Type is not application/json",
    429: "Too many generations from this client (RATE_LIMIT); see Retry-After",
    500: "Unexpected failure (the body quotes the request id)",
    503: "Busy (every queue full) or model loading: see Retry-After; or unavailable",
    504: "Not finished within REQUEST_TIMEOUT_SECONDS; the run was stopped",
    507: "The device ran out of memory for this request",
}
# Every generating endpoint can answer these.
GENERATE_ERRORS = (400, 401, 404, 413, 415, 429, 500, 503, 504, 507)
STRING = {"schema": {"type": "string"}}
RESULT_HEADERS = {
    name: {"description": text, **STRING}
    for name, text in {
        "X-Seed": "Seed of the first image",
        "X-Seeds": "Seeds of every image, comma-separated",
        "X-Model": "Model that drew the images",
        "X-Generation-Time": "Seconds the pipeline ran",
        "X-Queue-Time": "Seconds it waited for the device",
        "Content-Disposition": "inline, with a file name made of the seed",
    }.items()
}
# On every response, errors included.
REQUEST_ID = {
    "description": "This request's id: the client's X-Request-ID when sane, else a new one",
    "required": True,
    **STRING,
}
RETRY_AFTER = {
    "description": "Seconds to wait before trying again (when busy, loading or rate limited)",
    "schema": {"type": "integer", "minimum": 0},
}
WWW_AUTHENTICATE = {"description": "Bearer", "required": True, **STRING}
# With API_KEYS set, every path but the probes needs a key, sent either way; without, none
# does (the empty alternative).
SECURITY = [{"bearer": []}, {"apiKey": []}, {}]


def json_body(schema: Schema | type[Schema] | dict) -> dict[str, Any]:
    """A JSON body of `schema`."""
    return {"content": {"application/json": {"schema": schema}}}


def errors(*statuses: int, schema: type[Schema] = ErrorSchema) -> dict[str, Any]:
    """The responses for `statuses`, each in the one error shape."""
    return {str(s): {"description": ERROR_TEXT[s], **json_body(schema)} for s in statuses}


def operation(
    summary: str, tag: str, responses: dict[str, Any], parameters: list | None = None
) -> dict[str, Any]:
    """One operation object."""
    entry = {"summary": summary, "tags": [tag], "responses": responses}
    if parameters:
        entry["parameters"] = parameters
    return entry


def get(summary: str, schema: Any, tag: str, **more: Any) -> dict[str, Any]:
    """A GET answering `schema` as JSON, and the responses in `more`."""
    ok = {"description": "OK", **json_body(schema)}
    return {"get": operation(summary, tag, {"200": ok, **more})}


def post(summary: str, request: str, responses: dict, tag: str) -> dict[str, Any]:
    """A POST taking the JSON schema named `request`."""
    return {
        "post": {
            "summary": summary,
            "tags": [tag],
            "requestBody": {"required": True, **json_body(request)},
            "responses": responses,
        }
    }
