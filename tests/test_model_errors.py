"""Model-layer errors cross a process boundary: a stable code, and back to the same class."""

from __future__ import annotations

import json

import pytest

from backend.main import create_app
from backend.model import errors
from backend.model.errors import ModelLayerError

EVERY_KIND = [
    errors.ModelFolderError("folder 'x' has no model_index.json"),
    errors.DeviceError("no CUDA"),
    errors.ModelNotReadyError("still loading"),
    errors.ModelUnavailableError("failed to load"),
    errors.ModelNotFoundError("nope", ["demo", "sd-turbo"]),
    errors.DeviceOutOfMemoryError("out of memory"),
    errors.QueueFullError("busy", 7),
    errors.GenerationTimeoutError("too slow"),
    errors.JobNotFoundError("no job"),
    errors.JobGoneError("gone"),
    errors.JobNotFinishedError("not yet"),
    errors.GenerationFailedError("failed"),
    errors.LoraError("LoRA 'x' is not in LORAS_DIR on this worker"),
    errors.ImageTaskError("the refiner works with SDXL models"),
]


def test_every_error_kind_has_its_own_code():
    kinds = ModelLayerError.__subclasses__()
    assert {type(error) for error in EVERY_KIND} == set(kinds)
    codes = [kind.code for kind in kinds]
    assert len(set(codes)) == len(codes) and ModelLayerError.code not in codes


@pytest.mark.parametrize("error", EVERY_KIND, ids=lambda error: type(error).__name__)
def test_an_error_round_trips_through_json_as_itself(error):
    again = ModelLayerError.from_dict(json.loads(json.dumps(error.to_dict())))
    assert type(again) is type(error) and str(again) == str(error)
    assert again.to_dict() == error.to_dict()
    assert getattr(again, "retry_after_seconds", None) == getattr(
        error, "retry_after_seconds", None
    )
    assert getattr(again, "available", None) == getattr(error, "available", None)


@pytest.mark.parametrize("error", EVERY_KIND, ids=lambda error: type(error).__name__)
def test_a_round_tripped_error_gets_the_same_http_answer(error, base_settings):
    app = create_app({**base_settings, "JOBS_DIR": "off"})
    raised = [error, ModelLayerError.from_dict(error.to_dict())]

    @app.get("/raise/<int:which>")
    def _raise(which: int):
        raise raised[which]

    answers = []
    for which in (0, 1):
        response = app.test_client().get(f"/raise/{which}")
        body = response.get_json()
        if response.status_code == 500:
            body = "500"  # the body quotes a fresh request id each time
        answers.append((response.status_code, response.headers.get("Retry-After"), body))
    assert answers[0] == answers[1]
    app.extensions["engine"].stop(timeout=30)


def test_an_unknown_code_reads_as_the_base_error():
    error = ModelLayerError.from_dict({"code": "from-a-newer-version", "message": "hello"})
    assert type(error) is ModelLayerError and str(error) == "hello"
