"""AUTOMATIC1111's progress, interrupt and skip, each on the caller's own generations."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from backend.controller import get_engine, request_owner
from backend.view.a1111_progress import ProgressQuerySchema, dump_progress

blueprint = Blueprint("a1111_progress", __name__, url_prefix="/sdapi/v1")


@blueprint.get("/progress")
def progress() -> Response:
    """How far the caller's current generation got, with its latest live preview."""
    query = ProgressQuerySchema().load(request.args.to_dict())
    work = get_engine().current_work(request_owner())
    return jsonify(dump_progress(work, query["skip_current_image"]))


@blueprint.post("/interrupt")
def interrupt() -> Response:
    """Stop the caller's running generation at its next step (its images are kept), and the
    rest of its batches."""
    get_engine().interrupt(request_owner())
    return jsonify({})


@blueprint.post("/skip")
def skip() -> Response:
    """A1111's skip: stop the batch drawing now; a request of several batches goes on."""
    get_engine().interrupt(request_owner(), skip=True)
    return jsonify({})
