"""Hostile requests for every operation of the OpenAPI document: method, raw path, headers, body."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Any
from urllib.parse import quote

from hypothesis import strategies as st

from bench.fuzz.bodies import body
from bench.fuzz.hostile import choose, dice, encode, header_value, hostile_text, path_part, pick
from bench.fuzz.server import API_KEY, ORIGIN

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD", "TRACE")
REAL_JOB = "{real-job}"  # replaced, when sent, by the id of a job this run submitted
CONTENT_TYPES: tuple[bytes, ...] = (
    b"application/json", b"application/json; charset=utf-8", b"application/json; charset=UTF-8",
    b"application/json; charset=latin-1", b"application/json; charset=utf-16",
    b"application/json; charset=nonsense", b"application/json;;;", b"application/json; q=",
    b"application/JSON", b"application/problem+json", b"application/vnd.api+json",
    b"application/json-seq", b"application/jsonx", b"text/json", b"text/plain",
    b"application/x-www-form-urlencoded", b"multipart/form-data",
    b"multipart/form-data; boundary=", b"application/octet-stream", b"*/*", b"", b";", b"/",
    b"application/json\x00", b"application/json, text/plain", b"image/png",
)  # fmt: skip
ACCEPTS: tuple[bytes, ...] = (
    b"*/*", b"application/json", b"image/png", b"image/webp", b"image/*", b"image/*;q=0",
    b"application/json;q=0, image/png;q=0", b"application/json;q=NaN", b"application/json;q=1e400",
    b"application/json;q=-1", b"image/png;q=2, application/json;q=inf", b"text/html", b"",
    b";;;,,,", b"*", b"application/json;q=0.5, */*;q=0.6", b"application/xml", b"*/*;q=\xff",
)  # fmt: skip


@dataclass(frozen=True)
class Operation:
    """A documented operation: method, path template and the request schema of its body."""

    method: str
    template: str
    schema_name: str | None

    @property
    def label(self) -> str:
        """`METHOD /path/{template}`, as the report names it."""
        return f"{self.method} {self.template}"


@dataclass(frozen=True)
class HostileRequest:
    """One request as it goes on the wire (the path percent-encoded, the body raw bytes)."""

    endpoint: str  # the operation it aims at, `METHOD /template`
    method: str
    path: str
    headers: dict[str, bytes]
    body: bytes | None


def operations(document: dict[str, Any]) -> list[Operation]:
    """Every operation in the OpenAPI document, with the name of its request body schema."""
    found = []
    for template, item in document["paths"].items():
        for method, operation in item.items():
            content = operation.get("requestBody", {}).get("content", {})
            ref = content.get("application/json", {}).get("schema", {}).get("$ref", "")
            found.append(Operation(method.upper(), template, ref.rsplit("/", 1)[-1] or None))
    return found


@cache
def _parameter(name: str) -> st.SearchStrategy[str]:
    if name == "job_id":
        real = pick(("", "%00", "/", "/..", ".", "%20", "x")).map(REAL_JOB.__add__)
        return choose(st.just(REAL_JOB), real, path_part(), path_part())
    if name == "index":
        numbers = st.integers(-(2**70), 2**70).map(str)
        return choose(pick(("0", "1", "2")), numbers, path_part())
    if name == "model_id":
        return choose(pick(("demo", "dall-e-3", "DEMO", "demo.")), path_part())
    return path_part()


@cache
def _path_for(template: str) -> st.SearchStrategy[str]:
    return _path(template)


@cache
def _headers_for(has_body: bool) -> st.SearchStrategy[dict[str, bytes]]:
    return _headers(has_body)


@st.composite
def _path(draw: st.DrawFn, template: str) -> str:
    rnd = draw(dice())
    path = re.sub(r"\{(\w+)\}", lambda m: draw(_parameter(m[1])), template)
    if rnd.random() < 0.1:
        query = hostile_text().map(lambda t: quote(encode(t)[:2000], safe="=&%"))
        path += "?" + draw(choose(path_part(), query))
    elif rnd.random() < 0.03:
        path = draw(pick(("/", "//", "/./", "/%2e/", "/.."))) + path.lstrip("/")
    return path


@st.composite
def _headers(draw: st.DrawFn, has_body: bool) -> dict[str, bytes]:
    rnd = draw(dice())
    headers: dict[str, bytes] = {}
    auth = rnd.randrange(20)
    key = API_KEY.encode()
    if auth < 12:
        headers["Authorization"] = b"Bearer " + key
    elif auth < 14:
        headers["X-API-Key"] = key
    elif auth < 16:
        headers["Authorization"] = draw(
            choose(header_value(), header_value().map(b"Bearer ".__add__))
        )
    elif auth < 18:
        headers["X-API-Key"] = draw(header_value())
        if rnd.random() < 0.5:
            headers["Authorization"] = b"Bearer " + key
    # else: no key at all
    if has_body or rnd.random() < 0.2:
        odd = rnd.random() < 0.2
        headers["Content-Type"] = draw(
            choose(pick(CONTENT_TYPES), header_value()) if odd else st.just(b"application/json")
        )
    if rnd.random() < 0.5:
        headers["Accept"] = draw(choose(pick(ACCEPTS), header_value()))
    if rnd.random() < 0.2:
        headers["X-Request-ID"] = draw(header_value())
    if rnd.random() < 0.1:
        headers["Origin"] = draw(choose(st.just(ORIGIN.encode()), header_value()))
        headers["Access-Control-Request-Method"] = draw(
            choose(pick([m.encode() for m in METHODS]), header_value())
        )
    return headers


@st.composite
def hostile_request(
    draw: st.DrawFn, op: Operation, bodies: st.SearchStrategy[bytes] | None
) -> HostileRequest:
    """A hostile request aimed at `op`: usually its own method, its body and headers hostile."""
    rnd = draw(dice())
    method = op.method if rnd.random() < 0.9 else rnd.choice(METHODS)
    data = None
    if bodies is not None and method in ("POST", "PUT", "PATCH"):
        data = draw(bodies)
    elif rnd.random() < 0.05:  # a body where none belongs
        data = encode(draw(hostile_text()))
    path, headers = draw(_path_for(op.template)), draw(_headers_for(bool(data)))
    return HostileRequest(op.label, method, path, headers, data)


def requests_for(document: dict[str, Any]) -> st.SearchStrategy[HostileRequest]:
    """A hostile request to any operation, generating ones three times as often."""
    ops = operations(document)
    names = {op.schema_name for op in ops if op.schema_name}
    bodies = {name: body(document, name) for name in names}
    weighted = [
        hostile_request(op, bodies.get(op.schema_name or ""))
        for op in ops
        for _ in range(3 if op.schema_name else 1)
    ]
    return choose(*weighted)
