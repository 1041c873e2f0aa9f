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


class QueueFullError(ModelLayerError):
    """Every device's queue is full; the request may be retried after `retry_after_seconds`."""

    def __init__(self, message: str, retry_after_seconds: int) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class GenerationTimeoutError(ModelLayerError):
    """A generation waited and ran longer than its deadline, and was stopped."""


class JobNotFoundError(ModelLayerError):
    """No job has this id (or it was never this process's)."""


class JobGoneError(ModelLayerError):
    """The job existed but its results were dropped (expired, deleted or evicted)."""


class JobNotFinishedError(ModelLayerError):
    """The job's images were asked for before it succeeded."""


class GenerationFailedError(ModelLayerError):
    """The pipeline raised something unexpected; the details are in the server log only."""
