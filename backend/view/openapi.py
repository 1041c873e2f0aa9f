"""The OpenAPI 3 document, generated from the marshmallow schemas the endpoints really use.

Request schemas are given as instances built with the server's own limits, so the document
states the configured bounds (maximum width, steps, images, ...).
"""

from __future__ import annotations

from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin

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
from backend.view.generate import GenerateRequestSchema, GenerateResponseSchema
from backend.view.health import HealthSchema
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
from backend.view.openapi_jobs import add_job_paths
from backend.view.openapi_parts import (
    BINARY,
    ERROR_TEXT,
    GENERATE_ERRORS,
    REQUEST_ID,
    RESULT_HEADERS,
    RETRY_AFTER,
    SECURITY,
    WWW_AUTHENTICATE,
    errors,
    get,
    json_body,
    operation,
    post,
)
from backend.view.openapi_progress import add_progress_paths

GENERATE_PATHS = ("/image/generate", "/generate", "/generate-image")
# Paths answered without an API key (backend.controller.PUBLIC_ENDPOINTS): probes.
PUBLIC_PATHS = frozenset({"/ping", "/health"})


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
        "headers": RESULT_HEADERS,
        "content": {
            "image/png": BINARY,
            "image/jpeg": BINARY,
            "image/webp": BINARY,
            "application/zip": BINARY,
            "application/json": {"schema": GenerateResponseSchema},
        },
    }
    for path in GENERATE_PATHS:
        spec.path(
            path=path,
            operations=post(
                "Generate images from a prompt",
                "GenerateRequest",
                {"200": generate_ok, **errors(*GENERATE_ERRORS)},
                "generate",
            ),
        )
    pong = {"text/plain": {"schema": {"type": "string", "enum": ["pong"]}}}
    spec.path(
        path="/ping",
        operations={
            "get": operation(
                "Liveness: always pong", "health", {"200": {"description": "pong", "content": pong}}
            )
        },
    )
    health = {"description": "Not ready: loading, or failed (see error)", **json_body(HealthSchema)}
    spec.path(
        path="/health", operations=get("Readiness", HealthSchema, "health", **{"503": health})
    )
    spec.path(path="/models", operations=get("Models this server knows", ModelListSchema, "models"))
    spec.path(path="/loras", operations=get("LoRAs in LORAS_DIR", LoraListSchema, "models"))
    job_responses = add_job_paths(spec, generate_ok["content"])
    add_event_paths(spec, errors(401, 404, 410, 503))
    text = {"text/plain": {"schema": {"type": "string"}}}
    metrics = {"description": "Prometheus text format", "content": text}
    spec.path(
        path="/metrics",
        operations={
            "get": operation("Prometheus metrics", "health", {"200": metrics, **errors(401)})
        },
    )

    openai_errors = {"schema": OpenAIErrorSchema}  # under /v1/, errors are OpenAI-shaped
    spec.path(
        path="/v1/images/generations",
        operations=post(
            "OpenAI-compatible image generation",
            "OpenAIImageRequest",
            {
                "200": {
                    "description": f"OpenAI's images response. {OPENAI_EVENTS}",
                    "content": {
                        **json_body(OpenAIImagesResponseSchema)["content"],
                        **event_stream_content(),
                    },
                },
                **errors(*GENERATE_ERRORS, **openai_errors),
            },
            "openai",
        ),
    )
    spec.path(
        path="/v1/models", operations=get("OpenAI: list models", OpenAIModelListSchema, "openai")
    )
    retrieve = get("OpenAI: one model", OpenAIModelSchema, "openai", **errors(404, **openai_errors))
    retrieve["get"]["parameters"] = [
        {"name": "model_id", "in": "path", "required": True, "schema": {"type": "string"}}
    ]
    spec.path(path="/v1/models/{model_id}", operations=retrieve)

    spec.path(
        path="/sdapi/v1/txt2img",
        operations=post(
            "AUTOMATIC1111-compatible txt2img",
            "Txt2ImgRequest",
            {
                "200": {
                    "description": "AUTOMATIC1111's txt2img response",
                    **json_body(Txt2ImgResponseSchema),
                },
                **errors(*GENERATE_ERRORS),
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
        spec.path(path=path, operations=get(summary, schema, "automatic1111"))
    add_asset_paths(spec)
    add_img2img_paths(spec, context, errors(*GENERATE_ERRORS))
    add_progress_paths(spec, errors(400, 401, 503))
    generate_responses = {"200": generate_ok, **errors(*GENERATE_ERRORS)}
    openai_responses = {
        "200": {"description": "OpenAI's images response", **json_body(OpenAIImagesResponseSchema)},
        **errors(*GENERATE_ERRORS, **openai_errors),
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
        for entry in item.values():
            responses = entry["responses"]
            if path not in PUBLIC_PATHS:
                entry["security"] = SECURITY
                unauthorized = {
                    "description": ERROR_TEXT[401],
                    **json_body({"$ref": f"#/components/schemas/{error}"}),
                }
                responses["401"] = {**responses.get("401", unauthorized)}
                responses["401"]["headers"] = {"WWW-Authenticate": WWW_AUTHENTICATE}
            for status, response in responses.items():
                headers = response["headers"] = {**response.get("headers", {})}
                headers["X-Request-ID"] = REQUEST_ID
                if status in ("429", "503"):
                    headers["Retry-After"] = RETRY_AFTER
