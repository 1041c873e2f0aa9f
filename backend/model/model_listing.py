"""The model listing both engines answer with: the catalogue, and where each model is loaded."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from backend.model.model_catalog import ModelCatalog
from backend.model.registry import display_path
from backend.model.service import ModelInfo


@dataclass(frozen=True)
class ModelHolder:
    """One place models are loaded on: a device in this process, or a worker's device."""

    name: str
    loaded_models: Collection[str]
    model_errors: Mapping[str, str]  # the latest failure per model there


def list_models(catalog: ModelCatalog, holders: Iterable[ModelHolder]) -> list[ModelInfo]:
    """Every model worth listing, with whether it is present, loaded where, and the default."""
    holders = tuple(holders)
    return [
        ModelInfo(
            spec=spec,
            folder=display_path(spec.folder),
            exists=spec.folder.is_file() or (spec.folder / "model_index.json").is_file(),
            loaded_on=tuple(h.name for h in holders if spec.name in h.loaded_models),
            default=spec.name == catalog.default.name,
            error=next(
                (h.model_errors[spec.name] for h in holders if spec.name in h.model_errors),
                None,
            ),
        )
        for spec in catalog.listing()
    ]
