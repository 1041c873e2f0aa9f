"""Jobs: submit a generation now (202), poll its progress, fetch its images, or cancel it."""

from __future__ import annotations

from flask import Blueprint, Response, g, jsonify, url_for
from werkzeug.routing import BaseConverter

from backend.controller import get_engine
from backend.controller.form_body import load_upload
from backend.controller.image import image_response, result_headers
from backend.controller.image_edit import EDIT_FILES, EDIT_MANY
from backend.controller.request_body import load_generation
from backend.model.errors import JobNotFoundError
from backend.view.edit import EditRequestSchema
from backend.view.generate import GenerateCommand, GenerateRequestSchema
from backend.view.jobs import dump_job

blueprint = Blueprint("jobs", __name__)


class JobIdConverter(BaseConverter):
    """A job id: any path segment but `edit`, which belongs to POST /jobs/edit alone (so that
    path's 405 answers list POST, not the GET and DELETE of a job named "edit")."""

    regex = r"(?!edit$)[^/]+"


@blueprint.post("/jobs")
def submit() -> tuple[Response, int]:
    """Queue a generation (same body as /image/generate); 202 with the job and its Location."""
    return _queue(load_generation(GenerateRequestSchema))


@blueprint.post("/jobs/edit")
def submit_edit() -> tuple[Response, int]:
    """Queue an edit (same body as /image/edit: JSON or a form); 202 as POST /jobs."""
    return _queue(load_upload(EditRequestSchema, EDIT_FILES, EDIT_MANY))


def _queue(command: GenerateCommand) -> tuple[Response, int]:
    engine = get_engine()
    job = engine.submit_job(command.request, command.output, _owner())
    response = jsonify(dump_job(job, engine.settings.serving.job_ttl_seconds))
    response.headers["Location"] = url_for("jobs.status", job_id=job.id)
    return response, 202


@blueprint.get("/jobs/<job_id:job_id>")
def status(job_id: str) -> Response:
    """The job's status, progress, queue position, timing and error."""
    engine = get_engine()
    return jsonify(dump_job(engine.job(job_id, _owner()), engine.settings.serving.job_ttl_seconds))


@blueprint.get("/jobs/<job_id:job_id>/image")
@blueprint.get("/jobs/<job_id:job_id>/images/<int:index>")
def image(job_id: str, index: int = 0) -> Response:
    """One image of a job that succeeded (the first by default)."""
    result = get_engine().job_result(job_id, _owner())
    if index >= len(result.images):
        raise JobNotFoundError(
            f"Job {job_id} has {len(result.images)} image(s); there is no image {index}."
        )
    response = image_response(result.images[index])
    response.headers.update(result_headers(result))
    return response


@blueprint.delete("/jobs/<job_id:job_id>")
def cancel(job_id: str) -> Response:
    """Cancel a queued or running job; a finished one is deleted with its images."""
    engine = get_engine()
    job = engine.cancel_job(job_id, _owner())
    return jsonify(dump_job(job, engine.settings.serving.job_ttl_seconds))


def _owner() -> str | None:
    # With API_KEYS, a job belongs to the key that submitted it: other keys cannot see it.
    return g.get("api_key_id")
