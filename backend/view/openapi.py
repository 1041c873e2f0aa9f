"""The OpenAPI 3 document, generated from the marshmallow schemas the endpoints really use.

Request schemas are given as instances built with the server's own limits, so the document
states the configured bounds (maximum width, steps, images, ...).
"""

from __future__ import annotations

from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import Schema

from backend.config import Limits
from backend.model.model_catalog import ModelCatalog
from backend.view.a1111 import (
    OptionsSchema,
    SamplerSchema,
    ScheduleTypeSchema,
    ScriptsSchema,
    SdModelSchema,
    Txt2ImgRequestSchema,
    Txt2ImgResponseSchema,
)
from backend.view.errors import ErrorSchema
from backend.view.generate import GenerateRequestSchema, GenerateResponseSchema
from backend.view.health import HealthSchema
from backend.view.jobs import JobSchema
from backend.view.loras import A1111LoraSchema, LoraListSchema
from backend.view.models import ModelListSchema
from backend.view.openai import (
    OpenAIErrorSchema,
    OpenAIImageRequestSchema,
    OpenAIImagesResponseSchema,
    OpenAIModelListSchema,
    OpenAIModelSchema,
)
from backend.view.openapi_a1111 import add_img2img_paths
from backend.view.openapi_assets import add_asset_paths
from backend.view.openapi_events import OPENAI_EVENTS, add_event_paths, event_stream_content
from backend.view.openapi_images import add_image_paths
from backend.view.openapi_progress import add_progress_paths

GENERATE_PATHS = ("/image/generate", "/generate", "/generate-image")
_BINARY = {"schema": {"type": "string", "format": "binary"}}
_ERROR_TEXT = {
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
_GENERATE_ERRORS = (400, 401, 404, 413, 415, 429, 500, 503, 504, 507)
# Paths answered without an API key (backend.controller.PUBLIC_ENDPOINTS): probes.
PUBLIC_PATHS = frozenset({"/ping", "/health"})
_STRING = {"schema": {"type": "string"}}
_RESULT_HEADERS = {
    name: {"description": text, **_STRING}
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
_REQUEST_ID = {
    "description": "This request's id: the client's X-Request-ID when sane, else a new one",
    "required": True,
    **_STRING,
}
_RETRY_AFTER = {
    "description": "Seconds to wait before trying again (when busy, loading or rate limited)",
    "schema": {"type": "integer", "minimum": 0},
}
_WWW_AUTHENTICATE = {"description": "Bearer", "required": True, **_STRING}
# With API_KEYS set, every path but the probes needs a key, sent either way; without, none
# does (the empty alternative).
_SECURITY = [{"bearer": []}, {"apiKey": []}, {}]


def _json(schema: Schema | type[Schema] | dict) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int, schema: type[Schema] = ErrorSchema) -> dict[str, Any]:
    return {str(s): {"description": _ERROR_TEXT[s], **_json(schema)} for s in statuses}


def _operation(
    summary: str, tag: str, responses: dict[str, Any], parameters: list | None = None
) -> dict[str, Any]:
    operation = {"summary": summary, "tags": [tag], "responses": responses}
    if parameters:
        operation["parameters"] = parameters
    return operation


def _get(summary: str, schema: Any, tag: str, **errors: Any) -> dict[str, Any]:
    return {
        "get": _operation(summary, tag, {"200": {"description": "OK", **_json(schema)}, **errors})
    }


def _post(summary: str, request: str, responses: dict, tag: str) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "tags": [tag],
            "requestBody": {"required": True, **_json(request)},
            "responses": responses,
        }
    }


def _add_jobs(spec: APISpec, image_content: dict[str, Any]) -> dict[str, Any]:
    job_id = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}
    job = {"description": "The job", **_json(JobSchema)}
    submit = _post(
        "Queue a generation; fetch it later",
        "GenerateRequest",
        {
            "202": {
                **job,
                "description": "Accepted",
                "headers": {
                    "Location": {"description": "The job's URL", "schema": {"type": "string"}}
                },
            },
            **_errors(400, 401, 404, 413, 415, 429, 503),
        },
        "jobs",
    )
    spec.path(path="/jobs", operations=submit)
    spec.path(
        path="/jobs/{job_id}",
        operations={
            "get": _operation(
                "A job's status, progress, queue position, timing and error",
                "jobs",
                {"200": job, **_errors(401, 404, 410)},
                [job_id],
            ),
            "delete": _operation(
                "Cancel a queued or running job; delete a finished one",
                "jobs",
                {"200": job, **_errors(401, 404, 410)},
                [job_id],
            ),
        },
    )
    image = {
        "description": "The image",
        "headers": _RESULT_HEADERS,
        "content": {k: v for k, v in image_content.items() if k.startswith("image/")},
    }
    index = {"name": "index", "in": "path", "required": True, "schema": {"type": "integer"}}
    for path, parameters, summary in (
        ("/jobs/{job_id}/image", [job_id], "The first image of a job that succeeded"),
        ("/jobs/{job_id}/images/{index}", [job_id, index], "Image `index` (from 0) of a job"),
    ):
        responses = {"200": image, **_errors(401, 404, 409, 410)}
        spec.path(path=path, operations={"get": _operation(summary, "jobs", responses, parameters)})
    return submit["post"]["responses"]


def build_spec(limits: Limits, catalog: ModelCatalog, version: str) -> dict[str, Any]:
    """The OpenAPI document of this server, with its configured limits."""
    spec = APISpec(
        title="Text-to-image server",
        version=version,
        openapi_version="3.0.3",
        plugins=[MarshmallowPlugin()],
        info={
            "description": (
                "Self-hosted Stable Diffusion over HTTP. Errors share one shape "
                "({error, details}), except under /v1/, where they follow OpenAI's."
            )
        },
    )
    # Request schemas are registered once, by name: the instances carry the limits (and the
    # catalog, which apispec must not deep-copy along with the operations).
    context = {"limits": limits, "catalog": catalog}
    for name, schema_class in (
        ("GenerateRequest", GenerateRequestSchema),
        ("OpenAIImageRequest", OpenAIImageRequestSchema),
        ("Txt2ImgRequest", Txt2ImgRequestSchema),
    ):
        spec.components.schema(name, schema=schema_class(**context))
    generate_ok = {
        "description": "The image (a ZIP of images when several), or JSON when asked for",
        "headers": _RESULT_HEADERS,
        "content": {
            "image/png": _BINARY,
            "image/jpeg": _BINARY,
            "image/webp": _BINARY,
            "application/zip": _BINARY,
            "application/json": {"schema": GenerateResponseSchema},
        },
    }
    for path in GENERATE_PATHS:
        spec.path(
            path=path,
            operations=_post(
                "Generate images from a prompt",
                "GenerateRequest",
                {"200": generate_ok, **_errors(*_GENERATE_ERRORS)},
                "generate",
            ),
        )
    pong = {"text/plain": {"schema": {"type": "string", "enum": ["pong"]}}}
    spec.path(
        path="/ping",
        operations={
            "get": _operation(
                "Liveness: always pong", "health", {"200": {"description": "pong", "content": pong}}
            )
        },
    )
    health = {"description": "Not ready: loading, or failed (see error)", **_json(HealthSchema)}
    spec.path(
        path="/health", operations=_get("Readiness", HealthSchema, "health", **{"503": health})
    )
    spec.path(
        path="/models", operations=_get("Models this server knows", ModelListSchema, "models")
    )
    spec.path(path="/loras", operations=_get("LoRAs in LORAS_DIR", LoraListSchema, "models"))
    job_responses = _add_jobs(spec, generate_ok["content"])
    add_event_paths(spec, _errors(401, 404, 410, 503))
    text = {"text/plain": {"schema": {"type": "string"}}}
    metrics = {"description": "Prometheus text format", "content": text}
    spec.path(
        path="/metrics",
        operations={
            "get": _operation("Prometheus metrics", "health", {"200": metrics, **_errors(401)})
        },
    )

    openai_errors = {"schema": OpenAIErrorSchema}  # under /v1/, errors are OpenAI-shaped
    spec.path(
        path="/v1/images/generations",
        operations=_post(
            "OpenAI-compatible image generation",
            "OpenAIImageRequest",
            {
                "200": {
                    "description": f"OpenAI's images response. {OPENAI_EVENTS}",
                    "content": {
                        **_json(OpenAIImagesResponseSchema)["content"],
                        **event_stream_content(),
                    },
                },
                **_errors(*_GENERATE_ERRORS, **openai_errors),
            },
            "openai",
        ),
    )
    spec.path(
        path="/v1/models", operations=_get("OpenAI: list models", OpenAIModelListSchema, "openai")
    )
    retrieve = _get(
        "OpenAI: one model", OpenAIModelSchema, "openai", **_errors(404, **openai_errors)
    )
    retrieve["get"]["parameters"] = [
        {"name": "model_id", "in": "path", "required": True, "schema": {"type": "string"}}
    ]
    spec.path(path="/v1/models/{model_id}", operations=retrieve)

    spec.path(
        path="/sdapi/v1/txt2img",
        operations=_post(
            "AUTOMATIC1111-compatible txt2img",
            "Txt2ImgRequest",
            {
                "200": {
                    "description": "AUTOMATIC1111's txt2img response",
                    **_json(Txt2ImgResponseSchema),
                },
                **_errors(*_GENERATE_ERRORS),
            },
            "automatic1111",
        ),
    )
    for path, summary, schema in (
        ("/sdapi/v1/sd-models", "Checkpoints", SdModelSchema(many=True)),
        ("/sdapi/v1/samplers", "Samplers", SamplerSchema(many=True)),
        ("/sdapi/v1/schedulers", "Schedule types", ScheduleTypeSchema(many=True)),
        ("/sdapi/v1/options", "Current checkpoint", OptionsSchema),
        ("/sdapi/v1/scripts", "Scripts (none)", ScriptsSchema),
        ("/sdapi/v1/loras", "LoRAs", A1111LoraSchema(many=True)),
    ):
        spec.path(path=path, operations=_get(summary, schema, "automatic1111"))
    add_asset_paths(spec)
    add_img2img_paths(spec, context, _errors(*_GENERATE_ERRORS))
    add_progress_paths(spec, _errors(400, 401, 503))
    generate_responses = {"200": generate_ok, **_errors(*_GENERATE_ERRORS)}
    openai_responses = {
        "200": {"description": "OpenAI's images response", **_json(OpenAIImagesResponseSchema)},
        **_errors(*_GENERATE_ERRORS, **openai_errors),
    }
    kinds = {"generate": generate_responses, "job": job_responses, "openai": openai_responses}
    add_image_paths(spec, limits, catalog, kinds)
    spec.components.security_scheme(
        "bearer", {"type": "http", "scheme": "bearer", "description": "One of API_KEYS"}
    )
    spec.components.security_scheme(
        "apiKey", {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    )
    document = spec.to_dict()
    _add_access(document)
    return document


def _add_access(document: dict[str, Any]) -> None:
    """X-Request-ID everywhere, Retry-After on 429 and 503, and 401 where API_KEYS applies."""
    for path, item in document["paths"].items():
        error = "OpenAIError" if path.startswith("/v1/") else "Error"
        for operation in item.values():
            responses = operation["responses"]
            if path not in PUBLIC_PATHS:
                operation["security"] = _SECURITY
                unauthorized = {
                    "description": _ERROR_TEXT[401],
                    **_json({"$ref": f"#/components/schemas/{error}"}),
                }
                responses["401"] = {**responses.get("401", unauthorized)}
                responses["401"]["headers"] = {"WWW-Authenticate": _WWW_AUTHENTICATE}
            for status, response in responses.items():
                headers = response["headers"] = {**response.get("headers", {})}
                headers["X-Request-ID"] = _REQUEST_ID
                if status in ("429", "503"):
                    headers["Retry-After"] = _RETRY_AFTER
