"""Failures of the model layer, each meaning one thing to a caller (no HTTP here).

Each has a stable `code` and a plain-dict form, so an error raised in a worker process reaches
the API process as the same class (and so the same HTTP status) it would be in one process.
"""

from __future__ import annotations

from typing import Any


class ModelLayerError(Exception):
    """Base of the errors the model layer raises on purpose; `str()` is safe to show a client."""

    code = "model_error"

    def to_dict(self) -> dict[str, Any]:
        """The error as JSON-able values; `from_dict` makes it again."""
        return {"code": self.code, "message": str(self), **self._extra()}

    def _extra(self) -> dict[str, Any]:
        return {}

    @staticmethod
    def from_dict(data: dict[str, Any]) -> ModelLayerError:
        """The error `to_dict` described (the base class for a code this version does not know)."""
        kind = _BY_CODE.get(str(data.get("code")), ModelLayerError)
        return kind._rebuild(str(data.get("message", "")), data)

    @classmethod
    def _rebuild(cls, message: str, _data: dict[str, Any]) -> ModelLayerError:
        return cls(message)


class ModelFolderError(ModelLayerError):
    """A model folder is missing, incomplete, not a supported pipeline, or not safetensors."""

    code = "model_folder"


class DeviceError(ModelLayerError):
    """The configured device or dtype cannot be used on this machine."""

    code = "device"


class ModelNotReadyError(ModelLayerError):
    """The model is still loading; the request may be retried shortly."""

    code = "model_not_ready"
    retry_after_seconds = 5


class ModelUnavailableError(ModelLayerError):
    """The model failed to load and will not serve until the configuration is fixed."""

    code = "model_unavailable"


class ModelNotFoundError(ModelLayerError):
    """A request named a model this server does not have; `available` lists the ones it has."""

    code = "model_not_found"

    def __init__(self, name: str, available: list[str]) -> None:
        super().__init__(
            f"Unknown model '{name[:64]}'. Available: {', '.join(available) or 'none'}."
        )
        self.available = available

    def _extra(self) -> dict[str, Any]:
        return {"available": self.available}

    @classmethod
    def _rebuild(cls, message: str, data: dict[str, Any]) -> ModelLayerError:
        error = cls("", list(data.get("available", [])))
        error.args = (message,)  # the message as the worker worded it
        return error


class DeviceOutOfMemoryError(ModelLayerError):
    """The device ran out of memory for this request; smaller requests may still succeed."""

    code = "out_of_memory"


class QueueFullError(ModelLayerError):
    """Every device's queue is full; the request may be retried after `retry_after_seconds`."""

    code = "queue_full"

    def __init__(self, message: str, retry_after_seconds: int) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds

    def _extra(self) -> dict[str, Any]:
        return {"retry_after_seconds": self.retry_after_seconds}

    @classmethod
    def _rebuild(cls, message: str, data: dict[str, Any]) -> ModelLayerError:
        return cls(message, int(data.get("retry_after_seconds", 1)))


class GenerationTimeoutError(ModelLayerError):
    """A generation waited and ran longer than its deadline, and was stopped."""

    code = "timeout"


class JobNotFoundError(ModelLayerError):
    """No job has this id (or it was never this process's)."""

    code = "job_not_found"


class JobGoneError(ModelLayerError):
    """The job existed but its results were dropped (expired, deleted or evicted)."""

    code = "job_gone"


class JobNotFinishedError(ModelLayerError):
    """The job's images were asked for before it succeeded."""

    code = "job_not_finished"


class GenerationFailedError(ModelLayerError):
    """The pipeline raised something unexpected; the details are in the server log only."""

    code = "generation_failed"


class LoraError(ModelLayerError):
    """A request's LoRA is missing on this worker or cannot be applied to its model (a 400)."""

    code = "lora"


class ImageTaskError(ModelLayerError):
    """A request's image task does not fit its model (a 400): e.g. the refiner on a model that
    is not SDXL, or a family without an img2img/inpainting pipeline."""

    code = "image_task"


_BY_CODE: dict[str, type[ModelLayerError]] = {
    kind.code: kind for kind in (ModelLayerError, *ModelLayerError.__subclasses__())
}
