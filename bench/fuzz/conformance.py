"""Whether an answer keeps the OpenAPI document's promises: status, content type, body schema."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import cache
from typing import Any
from urllib.parse import unquote, urlsplit

import jsonschema_rs

from bench.fuzz.plan import HostileRequest

OPENAI_PREFIX = "/v1/"
# Answers that are right whatever the document says: a method the operation lacks, or a path
# that matches no route at all (an empty job id or one holding a slash; werkzeug redirects `//`).
WRONG_METHOD = {401, 404, 405}
UNROUTED = {308, 401, 404, 405}


def _json_schema(node: Any, schemas: dict[str, Any]) -> Any:
    """An OpenAPI 3.0 schema as plain JSON Schema: $refs inlined, `nullable` as a null type."""
    if isinstance(node, list):
        return [_json_schema(item, schemas) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return _json_schema(schemas[node["$ref"].rsplit("/", 1)[-1]], schemas)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "properties":  # names, not keywords: a property may be called `description`
            out[key] = {name: _json_schema(prop, schemas) for name, prop in value.items()}
        elif key not in ("nullable", "description", "example", "format"):
            out[key] = _json_schema(value, schemas)
    if node.get("nullable"):
        if "enum" in out and None not in out["enum"]:
            out["enum"] = [*out["enum"], None]
        out = {"anyOf": [out, {"type": "null"}]}
    return out


class Document:
    """The served OpenAPI document, asked about one answer at a time."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw
        self._schemas = raw.get("components", {}).get("schemas", {})
        self._validator = cache(self._make_validator)
        self._patterns = {
            template: re.compile(re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(template)))
            for template in raw["paths"]
        }

    def label(self, method: str, url: str) -> str | None:
        """`METHOD /template` of the documented operation `url` goes to, if any."""
        path = urlsplit(url).path
        for template, pattern in self._patterns.items():
            if pattern.fullmatch(path) and self.responses(template, method) is not None:
                return f"{method} {template}"
        return None

    def responses(self, template: str, method: str) -> dict[str, Any] | None:
        """The documented responses of `method template` (HEAD as GET); None if undocumented."""
        item = self.raw["paths"].get(template, {})
        operation = item.get(method.lower()) or (item.get("get") if method == "HEAD" else None)
        return None if operation is None else operation["responses"]

    def _make_validator(self, template: str, method: str, status: str) -> Any:
        responses = self.responses(template, method) or {}
        media = responses.get(status, {}).get("content", {}).get("application/json")
        if media is None:
            return None
        return jsonschema_rs.Draft4Validator(_json_schema(media["schema"], self._schemas))

    def problems(
        self, request: HostileRequest, status: int, headers: Mapping[str, str], content: bytes
    ) -> list[str]:
        """What is wrong with this answer to `request`; empty when nothing is."""
        template = request.endpoint.split(" ", 1)[1]
        documented = self.responses(template, request.method)
        busy = status == 503 and "Retry-After" in headers and "503" in (documented or {})
        if status >= 500 and not busy:
            return [f"server error {status}"]
        if "X-Request-ID" not in headers:
            return []  # answered by gunicorn itself (a malformed request line or header)
        allowed: set[int] | None = None  # None: as the document says
        routed = self._patterns[template].fullmatch(unquote(urlsplit(request.path).path))
        if documented is None:  # OPTIONS is Flask's own, on every route
            allowed = WRONG_METHOD | ({200} if request.method == "OPTIONS" else set())
            why = "an undocumented method"
        elif not routed:  # `//health` is /health; `/jobs//image`, `/./ping` or `a%2Fb` ids, none
            allowed = UNROUTED | {int(code) for code in documented if code.isdigit()}
            why = "a path that matches no route"
        if allowed is not None:
            found = [] if status in allowed else [f"status {status} for {why}"]
            if documented and status < 400 and str(status) in documented:
                return found + self._content(
                    request, documented[str(status)], status, headers, content
                )
            return found + self._error_shape(request, status, headers, content)
        if str(status) not in documented:
            return [f"undocumented status {status}"]
        return self._content(request, documented[str(status)], status, headers, content)

    def _content(
        self,
        request: HostileRequest,
        response: dict[str, Any],
        status: int,
        headers: Mapping[str, str],
        content: bytes,
    ) -> list[str]:
        if request.method == "HEAD" or not content:
            return []
        mimetype = headers.get("Content-Type", "").split(";")[0].strip()
        media_types = response.get("content")
        if media_types is None:
            return self._error_shape(request, status, headers, content)
        if mimetype not in media_types:
            return [f"content type {mimetype!r} is not documented ({', '.join(media_types)})"]
        if mimetype != "application/json":
            return []
        template = request.endpoint.split(" ", 1)[1]
        validator = self._validator(template, request.method, str(status))
        return [] if validator is None else _validate(validator, content)

    def _error_shape(
        self, request: HostileRequest, status: int, headers: Mapping[str, str], content: bytes
    ) -> list[str]:
        """Errors the document does not describe still come in the one error shape."""
        if status < 400 or request.method == "HEAD" or not content:
            return []
        if headers.get("Content-Type", "").split(";")[0] != "application/json":
            return [f"error {status} is not JSON ({headers.get('Content-Type')!r})"]
        path = request.path.lstrip("/")
        name = "OpenAIError" if ("/" + path).startswith(OPENAI_PREFIX) else "Error"
        schema = _json_schema(self._schemas[name], self._schemas)
        return _validate(jsonschema_rs.Draft4Validator(schema), content)


def _validate(validator: Any, content: bytes) -> list[str]:
    try:
        body = json.loads(content)
    except ValueError as error:
        return [f"the body is not valid JSON: {error}"]
    errors = [error.message[:300] for error in validator.iter_errors(body)]
    return [f"body does not match the schema: {message}" for message in errors[:3]]
