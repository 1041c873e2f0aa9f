"""Hostile request bodies for the generating endpoints: every field of every dialect, and worse."""

from __future__ import annotations

import codecs
from typing import Any

from hypothesis import strategies as st

from bench.fuzz.hostile import (
    INVALID_UTF8,
    Pairs,
    Raw,
    any_value,
    choose,
    deep_json,
    dice,
    dump,
    encode,
    hostile_number,
    hostile_text,
    pick,
    wrong_type,
)

# A 64x64 PNG, for the bodies that need an input image.
RED_64 = (
    "iVBORw0KGgoAAAANSUhEUgAAAEAAAABACAIAAAAlC+aJAAAAUUlEQVR42u3PMQ0AMAgAMJgaROA/yJoKDpLWQXO64rIXxwkI"
    "CAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAjs+82EAawe5o/VAAAAAElFTkSuQmCC"
)
# A valid, cheap body per request schema (the fuzz server's limits): hostile values go into it.
BASES: dict[str, dict[str, Any]] = {
    "GenerateRequest": {"prompt": "a lighthouse", "width": 64, "height": 64, "steps": 1},
    "OpenAIImageRequest": {"prompt": "a lighthouse", "size": "64x64", "steps": 1},
    "Txt2ImgRequest": {"prompt": "a lighthouse", "width": 64, "height": 64, "steps": 1},
    "SetOptions": {"sd_model_checkpoint": "demo"},
    "Img2ImgRequest": {
        "prompt": "a lighthouse", "width": 64, "height": 64, "steps": 1,
        "init_images": [RED_64], "denoising_strength": 0.5,
    },
    "EditRequest": {
        "prompt": "a lighthouse", "steps": 2, "image": RED_64, "strength": 0.5,
    },
    "OpenAIEditRequest": {
        "prompt": "a lighthouse", "size": "64x64", "steps": 2, "image": RED_64, "strength": 0.5,
    },
}  # fmt: skip
# Free text the pipeline reads (MAX_PROMPT_LENGTH 2000 characters at most, to get that far).
TEXTS = ("prompt", "negative_prompt")
# Whole bodies that are not a JSON object, or not JSON at all.
ODD_BODIES: tuple[bytes, ...] = (
    b"", b" ", b"\n", b"null", b"true", b"0", b"1e400", b"-1e400", b'"prompt"', b"[]", b"[{}]",
    b"{}", b"{", b"}", b'{"prompt":', b'{"prompt":"a"', b'{"prompt":"a",}', b'{"prompt":"a"}x',
    b'{"prompt":"a"}{"prompt":"b"}', b"{'prompt':'a'}", b'{prompt:"a"}', b'{"prompt":"a" // c\n}',
    b'{"prompt":"\\ud800"}', b'{"prompt":"\\udc00\\ud800"}', b'{"prompt":"\\u0000"}',
    b'{"prompt":"\\x41"}', b'{"prompt":"\\u12"}', b'{"prompt":"a\x00b"}', b'{"prompt":"\t"}',
    b'{"prompt":"a","width":NaN}', b'{"prompt":"a","width":Infinity}', b'{"\\ud800":1}',
    b'\xef\xbb\xbf{"prompt":"a"}', b'{"prompt":"a"}\x00', b"\x00" * 64, b"\x1f\x8b\x08\x00",
    b'{"prompt":"a"}' + b" " * 65_600, b"[" * 65_536, b"x" * 70_000, b"A" * 1_048_576,
)  # fmt: skip


def request_fields(document: dict[str, Any], name: str) -> dict[str, dict[str, Any]]:
    """The properties of request schema `name` in the OpenAPI document, $refs resolved."""
    schemas = document["components"]["schemas"]
    properties = dict(schemas[name].get("properties", {}))
    for key, prop in properties.items():
        ref = prop.get("$ref") or next(
            (p["$ref"] for p in prop.get("anyOf", prop.get("allOf", [])) if "$ref" in p), None
        )
        if ref:
            properties[key] = {"type": "object", **schemas[ref.rsplit("/", 1)[-1]]}
    return properties


def _valid_choices(prop: dict[str, Any]) -> list[Any]:
    """Values the schema itself suggests: enum members, bounds, defaults."""
    choices = [v for v in prop.get("enum", []) if v is not None]
    choices += [prop[k] for k in ("minimum", "maximum", "default") if k in prop]
    return choices


def field_value(prop: dict[str, Any]) -> st.SearchStrategy[Any]:
    """A hostile value for one field: mostly of its own type, sometimes anything at all."""
    kind = prop.get("type")
    own: st.SearchStrategy[Any]
    if kind == "string":
        own = hostile_text()
    elif kind in ("integer", "number"):
        own = hostile_number()
    elif kind == "array":
        own = st.lists(hostile_text(), max_size=4)
    elif kind == "object":
        inner = prop.get("properties", {})
        keys = pick(sorted(inner)) if inner else hostile_text()
        own = st.dictionaries(choose(keys, hostile_text()), any_value(), max_size=3)
    else:
        own = any_value()
    valid = _valid_choices(prop)
    options = [own, own, own, any_value(), wrong_type(), deep_json(), st.none()]
    if valid:
        options.append(pick(valid))
    return choose(*options)


@st.composite
def json_body(
    draw: st.DrawFn, fields: dict[str, st.SearchStrategy[Any]], base: dict[str, Any]
) -> bytes:
    """A JSON body: `base` with 1-4 fields (known or unknown) set to hostile values."""
    rnd = draw(dice())
    body: dict[Any, Any] = dict(base)
    if rnd.random() < 0.4:  # hostile text in the prompts, all else valid: it reaches the model
        for name in rnd.sample(TEXTS, rnd.randint(1, 2)):
            if name in fields:
                body[name] = draw(hostile_text().map(lambda text: text[:2000]))
    for _ in range(rnd.randint(0 if len(body) > len(base) else 1, 4)):
        if rnd.random() < 0.1:  # an unknown field, its name hostile too
            body[draw(hostile_text())] = draw(any_value())
            continue
        name = rnd.choice(sorted(fields))
        body[name] = draw(fields[name])
    if rnd.random() < 0.08:
        body.pop("prompt", None)
    pairs = Pairs(body.items())
    if rnd.random() < 0.08 and pairs:  # a repeated key, the last one wins in Python
        pairs.insert(0, (pairs[-1][0], draw(any_value())))
    wrapped: Any = pairs
    if rnd.random() < 0.08:  # the whole body wrapped in something deep or odd
        text = dump(pairs)
        wrapped = rnd.choice([[Raw(text)], Raw(f'{{"a":{draw(deep_json())}}}'), text])
    ascii_only = rnd.random() < 0.5  # \uXXXX escapes, or raw UTF-8 (surrogates as bytes)
    return encode(dump(wrapped, ascii_only))


@st.composite
def raw_body(draw: st.DrawFn, json_bodies: st.SearchStrategy[bytes]) -> bytes:
    """Bytes that are not clean UTF-8 JSON: bad sequences spliced in, other encodings, odd texts."""
    rnd = draw(dice())
    kind = rnd.randrange(4)
    if kind == 0:
        return rnd.choice(ODD_BODIES)
    base = draw(json_bodies)
    if kind == 1:  # an invalid UTF-8 sequence inside the prompt, or anywhere
        bad = rnd.choice(INVALID_UTF8)
        spot = base.find(b'"prompt":"')
        at = spot + 10 if spot >= 0 and rnd.random() < 0.5 else rnd.randint(0, len(base))
        return base[:at] + bad + base[at:]
    if kind == 2:  # the same JSON in another encoding, with or without a BOM
        codec = rnd.choice(("utf-16", "utf-16-le", "utf-16-be", "utf-32", "latin-1"))
        text = base.decode("utf-8", "surrogatepass")
        data = text.encode(codec, "replace")
        return codecs.BOM_UTF8 + data if codec == "latin-1" and rnd.random() < 0.5 else data
    return base[: rnd.randint(0, len(base))]  # truncated


def body(document: dict[str, Any], schema_name: str) -> st.SearchStrategy[bytes]:
    """Any hostile body for request schema `schema_name`: JSON three times in four."""
    fields = {
        name: field_value(prop) for name, prop in request_fields(document, schema_name).items()
    }
    json_bodies = json_body(fields, BASES[schema_name])
    return choose(json_bodies, json_bodies, json_bodies, raw_body(json_bodies))
