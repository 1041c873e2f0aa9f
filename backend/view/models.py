"""Schema of `GET /models`."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields

from backend.model.engine import ModelInfo


class DefaultsSchema(Schema):
    """What a request for this model gets for the fields it leaves out."""

    steps = fields.Integer()
    guidance_scale = fields.Float()
    width = fields.Integer()
    height = fields.Integer()


class ModelInfoSchema(Schema):
    """One model the server knows of."""

    name = fields.Function(lambda info: info.spec.name)
    folder = fields.String(metadata={"description": "Where its files are (or should be)."})
    exists = fields.Boolean(metadata={"description": "The folder holds a model_index.json."})
    loaded = fields.Boolean(metadata={"description": "In memory now."})
    default = fields.Boolean(metadata={"description": "Requests without `model` use it."})
    family = fields.Function(lambda info: info.spec.family.value)
    defaults = fields.Function(lambda info: DefaultsSchema().dump(info.spec.defaults))
    error = fields.String(allow_none=True, metadata={"description": "Why it failed to load."})


class ModelListSchema(Schema):
    """`GET /models`."""

    default = fields.String()
    models = fields.List(fields.Nested(ModelInfoSchema))


def dump_models(infos: list[ModelInfo]) -> dict[str, Any]:
    """The JSON body listing `infos`."""
    default = next(info.spec.name for info in infos if info.default)
    return ModelListSchema().dump({"default": default, "models": infos})
