"""The `loras` request field, its checks against LORAS_DIR, and the LoRA listings' schemas."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from marshmallow import RAISE, Schema, fields, validate

from backend.model.lora_files import LoraFile, LoraFileError, fits, lookup
from backend.model.types import LoraChoice

MAX_LORAS_PER_REQUEST = 8
MIN_WEIGHT, MAX_WEIGHT = -4.0, 4.0


class LoraChoiceSchema(Schema):
    """One LoRA a request applies."""

    class Meta:
        unknown = RAISE

    name = fields.String(
        required=True, metadata={"description": "A LoRA from GET /loras (its file name)."}
    )
    weight = fields.Float(
        load_default=1.0,
        validate=validate.Range(MIN_WEIGHT, MAX_WEIGHT, error="Must be between {min} and {max}."),
        metadata={"description": "How strongly it applies; 0 leaves the image unchanged."},
    )


def loras_field() -> fields.List:
    """The `loras` request field: [{name, weight}], at most MAX_LORAS_PER_REQUEST."""
    return fields.List(
        fields.Nested(LoraChoiceSchema),
        allow_none=True,
        validate=validate.Length(
            max=MAX_LORAS_PER_REQUEST, error="At most {max} LoRAs per request."
        ),
        metadata={"description": "LoRAs from LORAS_DIR applied to this request, with weights."},
    )


def choices(given: list[dict[str, Any]] | None) -> tuple[LoraChoice, ...]:
    """The request's LoRAs; weight 0 is dropped, as it changes nothing (and so it batches with
    requests without LoRAs)."""
    return tuple(
        LoraChoice(each["name"], float(each.get("weight", 1.0)))
        for each in given or ()
        if each.get("weight", 1.0) != 0
    )


def problems(given: tuple[LoraChoice, ...], family: str, loras_dir: Path | None) -> list[str]:
    """Why the LoRAs `given` cannot apply to a model of `family` (empty: they can)."""
    if not given:
        return []
    if loras_dir is None:
        return ["This server takes no LoRA."]
    found: list[str] = []
    seen: set[str] = set()
    if len(given) > MAX_LORAS_PER_REQUEST:
        found.append(f"At most {MAX_LORAS_PER_REQUEST} LoRAs per request.")
    for choice in given:
        if not math.isfinite(choice.weight) or not MIN_WEIGHT <= choice.weight <= MAX_WEIGHT:
            found.append(f"LoRA '{choice.name[:64]}': weight must be between -4 and 4.")
        if choice.name in seen:
            found.append(f"LoRA '{choice.name[:64]}' is named twice; name each LoRA once.")
        seen.add(choice.name)
        try:
            lora = lookup(loras_dir, choice.name)
        except LoraFileError as error:
            found.append(str(error))
            continue
        if not fits(lora, family):
            found.append(f"LoRA '{lora.name}' is for {lora.family} models; this model is {family}.")
    return found


class LoraInfoSchema(Schema):
    """`GET /loras`: one LoRA file."""

    name = fields.String(required=True, metadata={"description": "What requests call it."})
    family = fields.String(
        required=True, metadata={"description": "sd, sdxl, sd3, flux, or unknown."}
    )
    format = fields.String(required=True, metadata={"description": "diffusers or kohya."})
    text_encoder = fields.Boolean(
        required=True, metadata={"description": "Whether it changes a text encoder too."}
    )


class LoraListSchema(Schema):
    """`GET /loras`."""

    loras = fields.List(fields.Nested(LoraInfoSchema), required=True)


class A1111LoraSchema(Schema):
    """`GET /sdapi/v1/loras`: a LoRA as AUTOMATIC1111 lists them."""

    name = fields.String(required=True)
    alias = fields.String(required=True)
    path = fields.String(required=True, metadata={"description": "Relative to LORAS_DIR."})
    metadata = fields.Dict(required=True)


def dump_loras(loras: list[LoraFile]) -> dict[str, Any]:
    """The body of `GET /loras`."""
    return LoraListSchema().dump(
        {
            "loras": [
                {
                    "name": lora.name,
                    "family": lora.family,
                    "format": lora.format,
                    "text_encoder": lora.text_encoder,
                }
                for lora in loras
            ]
        }
    )


def dump_a1111_loras(loras: list[LoraFile]) -> list[dict[str, Any]]:
    """The body of `GET /sdapi/v1/loras` (no absolute server path is shown)."""
    return A1111LoraSchema(many=True).dump(
        [
            {
                "name": lora.name,
                "alias": lora.name,
                "path": lora.relative,
                "metadata": {"family": lora.family, "format": lora.format},
            }
            for lora in loras
        ]
    )
