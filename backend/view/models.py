"""Schema of `GET /models`."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from marshmallow import Schema, fields, validate

from backend.model.catalogue import Family
from backend.model.service import ModelInfo


class DefaultsSchema(Schema):
    """What a request for this model gets for the fields it leaves out."""

    steps = fields.Integer(required=True)
    guidance_scale = fields.Float(required=True)
    width = fields.Integer(required=True)
    height = fields.Integer(required=True)


class ModelInfoSchema(Schema):
    """One model the server knows of."""

    name = fields.String(required=True)
    folder = fields.String(
        required=True, metadata={"description": "Where its files are (or should be)."}
    )
    exists = fields.Boolean(
        required=True,
        metadata={
            "description": "Its folder holds a model_index.json, or its checkpoint file is there."
        },
    )
    loaded = fields.Boolean(required=True, metadata={"description": "In memory now."})
    loaded_on = fields.List(
        fields.String(), required=True, metadata={"description": "Devices holding it now."}
    )
    default = fields.Boolean(
        required=True, metadata={"description": "Requests without `model` use it."}
    )
    family = fields.String(required=True, validate=validate.OneOf([f.value for f in Family]))
    defaults = fields.Nested(DefaultsSchema, required=True)
    error = fields.String(
        required=True, allow_none=True, metadata={"description": "Why it failed to load."}
    )


class ModelListSchema(Schema):
    """`GET /models`."""

    default = fields.String(required=True)
    models = fields.List(fields.Nested(ModelInfoSchema), required=True)


def dump_models(infos: list[ModelInfo]) -> dict[str, Any]:
    """The JSON body listing `infos`."""
    default = next(info.spec.name for info in infos if info.default)
    models = [
        {
            "name": info.spec.name,
            "folder": info.folder,
            "exists": info.exists,
            "loaded": info.loaded,
            "loaded_on": list(info.loaded_on),
            "default": info.default,
            "family": info.spec.family.value,
            "defaults": asdict(info.spec.defaults),
            "error": info.error,
        }
        for info in infos
    ]
    return ModelListSchema().dump({"default": default, "models": models})
