"""Request bodies of the routes that take images: JSON (images as base64 text), or a multipart
form (images as file parts, every other field a form field), turned into the same dict so one
schema validates both."""

from __future__ import annotations

from typing import Any

from flask import request
from marshmallow import Schema, ValidationError, fields
from werkzeug.exceptions import UnsupportedMediaType

from backend.controller import get_engine
from backend.controller.json_input import JSONInputError, parse_json
from backend.controller.request_body import json_object
from backend.view.rules import GenerationSchema

FORM = "multipart/form-data"
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def load_upload(
    schema_class: type[GenerationSchema], files: dict[str, tuple[str, ...]], many: tuple[str, ...]
) -> Any:
    """The body (JSON or a form) validated by `schema_class`.

    `files`: each body field and the form part names its files may come under (OpenAI's client
    sends a list as `image[]`); `many`: the fields that take a list of files.
    """
    engine = get_engine()
    settings = engine.settings
    schema = schema_class(limits=settings.limits, catalog=engine.catalog, assets=settings.assets)
    if request.mimetype == FORM:
        body = form_object(schema, files, many)
    elif request.is_json or not request.mimetype:
        body = json_object()
    else:
        raise UnsupportedMediaType(
            f"Content-Type must be application/json or {FORM} (got {request.mimetype})."
        )
    return schema.load(body)


def form_object(
    schema: Schema, files: dict[str, tuple[str, ...]], many: tuple[str, ...]
) -> dict[str, Any]:
    """The form as a body: file parts as bytes, text fields typed by the schema's fields."""
    form, uploads = request.form, request.files  # werkzeug enforces the per-route limits here
    body: dict[str, Any] = {}
    errors: dict[str, list[str]] = {}
    for name in form:
        values = form.getlist(name)
        if len(values) > 1:
            errors[name[:64]] = ["Sent more than once; send one value (lists as JSON text)."]
            continue
        try:
            body[name] = _typed(schema.load_fields.get(name), values[0])
        except ValueError as problem:
            errors[name[:64]] = [str(problem)]
    for field, part_names in files.items():
        parts = [part for name in part_names for part in uploads.getlist(name)]
        if not parts:
            continue
        contents = [part.read() for part in parts]
        if field in many:
            body[field] = contents
        elif len(contents) == 1:
            body[field] = contents[0]
        else:
            errors[field] = ["Sent more than once; send one file."]
    unknown_files = set(uploads) - {name for names in files.values() for name in names}
    for name in sorted(unknown_files):
        errors[name[:64]] = ["Unknown file part."]
    if errors:
        raise ValidationError(errors)
    for field in files:
        if field in schema.load_fields and schema.load_fields[field].required and field not in body:
            raise ValidationError(
                {field: [f"Missing: send the image as a file part named '{field}'."]}
            )
    return body


def _typed(field: fields.Field | None, text: str) -> Any:
    """A form field's text as the value JSON would carry (forms have only strings)."""
    if field is None:
        return text  # the schema names it: an unknown field, with a suggestion
    lowered = text.strip().lower()
    boolean = isinstance(field, fields.Boolean) or "boolean" in str(field.metadata.get("type"))
    if boolean and lowered in _TRUE:
        return True
    if boolean and lowered in _FALSE:
        return False
    if isinstance(field, fields.List | fields.Nested | fields.Dict):
        try:
            return parse_json(text)
        except JSONInputError as error:
            raise ValueError(f"Must be JSON text in a form field: {error}.") from None
    if text == "" and isinstance(field, fields.Number | fields.Boolean):
        return None  # a blank form field: the default
    return text
