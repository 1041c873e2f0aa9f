"""Flask blueprints, one module per resource, and the one error handler."""

from __future__ import annotations

from flask import Flask, current_app, g

from backend.model.service import GenerationService

# Endpoints that start generations: RATE_LIMIT counts calls to these (polls and listings are free).
GENERATING_ENDPOINTS = frozenset(
    {
        "image.generate",
        "image_edit.edit",
        "jobs.submit",
        "jobs.submit_edit",
        "openai.generate_images",
        "openai.edit_images",
        "a1111.txt2img",
        "a1111.img2img",
    }
)
# The browser pages and their files: not API (not in /openapi.json), and public, since they hold
# nothing private: the page asks for a key and sends it on its own API calls.
PAGE_ENDPOINTS = frozenset({"pages.index", "pages.docs", "pages.docs_asset", "static"})
# Endpoints that answer without an API key: load balancers and orchestrators probe them, and the
# pages.
PUBLIC_ENDPOINTS = frozenset({"health.ping", "health.health"}) | PAGE_ENDPOINTS
# Endpoints that change the server's state: with API keys set, only ADMIN_API_KEYS may call them.
ADMIN_ENDPOINTS = frozenset({"a1111_assets.set_options"})


def get_engine() -> GenerationService:
    """The model layer of the running app (in-process or remote, per QUEUE_BACKEND)."""
    return current_app.extensions["engine"]


def request_owner() -> str | None:
    """Whose work this request is: its API key's identity (None without API_KEYS)."""
    return g.get("api_key_id")


def register_blueprints(app: Flask) -> None:
    """Attach every resource's routes to `app`."""
    from backend.controller import (
        a1111,
        a1111_assets,
        a1111_progress,
        health,
        image,
        image_edit,
        job_events,
        jobs,
        loras,
        metrics,
        models,
        openai,
        openapi,
        pages,
    )

    # Before the rules that use it are added.
    app.url_map.converters["job_id"] = jobs.JobIdConverter
    for module in (
        health,
        image,
        image_edit,
        jobs,
        job_events,
        models,
        loras,
        openai,
        a1111,
        a1111_assets,
        a1111_progress,
        openapi,
        metrics,
        pages,
    ):
        app.register_blueprint(module.blueprint)
