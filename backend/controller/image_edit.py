"""Image editing in our dialect: img2img without a mask, inpainting with one, answered as
`/image/generate` answers (bytes or JSON, the same headers and metadata)."""

from __future__ import annotations

from flask import Blueprint, Response

from backend.controller.form_body import load_upload
from backend.controller.image import generation_response
from backend.view.edit import EditRequestSchema

blueprint = Blueprint("image_edit", __name__)

# Body fields that may arrive as file parts of a form, and the part names they come under.
EDIT_FILES = {"image": ("image", "image[]"), "mask": ("mask",)}
EDIT_MANY = ("image",)


@blueprint.post("/image/edit")
def edit() -> Response:
    """Redraw an uploaded image (JSON with base64, or a multipart form with files)."""
    return generation_response(load_upload(EditRequestSchema, EDIT_FILES, EDIT_MANY))
