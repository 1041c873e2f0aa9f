"""The browser pages: the generation page at `/` and Swagger UI at `/docs`.

Everything they load comes from this app: the page's own files from `backend/static`, Swagger UI's
from the `swagger-ui-bundle` package. No CDN, no build step.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from flask import Blueprint, Response, render_template, send_from_directory
from swagger_ui_bundle import swagger_ui_path
from werkzeug.exceptions import NotFound

from backend.config import Limits
from backend.controller import get_engine
from backend.model.catalogue import Family
from backend.model.schedulers import SCHEDULER_NAMES
from backend.view.rules import MIN_SIDE

blueprint = Blueprint("pages", __name__)

# The few Swagger UI files /docs loads; anything else in the package folder is not served.
SWAGGER_FILES = frozenset({"swagger-ui.css", "swagger-ui-bundle.js", "favicon-32x32.png"})
# Swagger UI's files change only with the package version: browsers may keep them a day.
SWAGGER_MAX_AGE_SECONDS = 86400


@blueprint.get("/")
def index() -> str:
    """The page: a prompt, the settings, live progress and the images."""
    return render_template("index.html", config=page_config(get_engine().settings.limits))


def page_config(limits: Limits) -> dict[str, Any]:
    """What the page checks before it submits, as the API's schemas check it."""
    return {
        "limits": {**asdict(limits), "min_side": MIN_SIDE},
        "size_multiples": {family.value: family.size_multiple for family in Family},
        "schedulers": list(SCHEDULER_NAMES),
        "max_prompt_length": limits.max_prompt_length,
    }


@blueprint.get("/docs")
def docs() -> str:
    """Swagger UI on /openapi.json, with "Try it out" against this server."""
    return render_template("docs.html")


@blueprint.get("/docs/assets/<name>")
def docs_asset(name: str) -> Response:
    """One of Swagger UI's files, from the installed swagger-ui-bundle package."""
    if name not in SWAGGER_FILES:
        raise NotFound(f"No such file: /docs/assets/{name}.")
    response = send_from_directory(swagger_ui_path, name, max_age=SWAGGER_MAX_AGE_SECONDS)
    response.headers["Cache-Control"] = f"public, max-age={SWAGGER_MAX_AGE_SECONDS}"
    return response
