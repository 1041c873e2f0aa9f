"""Failures of the model layer, each meaning one thing to a caller (no HTTP here)."""

from __future__ import annotations


class ModelLayerError(Exception):
    """Base of the errors the model layer raises on purpose; `str()` is safe to show a client."""


class ModelFolderError(ModelLayerError):
    """A model folder is missing, incomplete, not a supported pipeline, or not safetensors."""


class DeviceError(ModelLayerError):
    """The configured device or dtype cannot be used on this machine."""


class ModelNotReadyError(ModelLayerError):
    """The model is still loading; the request may be retried shortly."""

    retry_after_seconds = 5


class ModelUnavailableError(ModelLayerError):
    """The model failed to load and will not serve until the configuration is fixed."""


class ModelNotFoundError(ModelLayerError):
    """A request named a model this server does not have; `available` lists the ones it has."""

    def __init__(self, name: str, available: list[str]) -> None:
        super().__init__(
            f"Unknown model '{name[:64]}'. Available: {', '.join(available) or 'none'}."
        )
        self.available = available


class DeviceOutOfMemoryError(ModelLayerError):
    """The device ran out of memory for this request; smaller requests may still succeed."""
