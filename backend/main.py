"""Entry point: `create_app()` for gunicorn (`backend.main:create_app()`), `python -m backend.main`
for a development server."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask

from backend.config import load_settings
from backend.controller import register_blueprints
from backend.controller.access import init_access
from backend.controller.errors import register_error_handlers
from backend.controller.json_input import StrictJSONProvider
from backend.controller.request_id import init_request_ids
from backend.controller.request_log import init_request_log
from backend.controller.response_headers import init_response_headers
from backend.model.engine import Engine


def create_app(overrides: Mapping[str, Any] | None = None) -> Flask:
    """Build the app and start loading its model in the background.

    `overrides` take precedence over the environment and `.env` (tests use them). Nothing heavy
    happens here: torch and the model load on the device worker thread, so the first request
    (a `/ping`) is answered at once.
    """
    settings = load_settings(overrides)
    _configure_logging(settings.log_level)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_content_length
    app.json = StrictJSONProvider(app)  # NaN and deep nesting are 400s, not crashes
    # werkzeug would answer `//health` or `/jobs//image` with an HTML 308 that no error handler
    # sees; unmerged, they are ordinary JSON 404s.
    app.url_map.merge_slashes = False
    engine = Engine(settings)
    app.extensions["engine"] = engine
    # Flask runs after_request hooks in reverse order: the request log, registered first,
    # sees the final response, with every header the later hooks add.
    init_request_log(app, engine.metrics, settings.access.log_prompts)
    init_request_ids(app)
    init_response_headers(app)
    init_access(app, settings)  # before the routes' own hooks: they read g.client_id
    register_error_handlers(app)
    register_blueprints(app)
    engine.start()
    return app


def _configure_logging(level: str) -> None:
    logging.basicConfig(format="%(asctime)s %(levelname)s [%(name)s] %(message)s")
    logging.getLogger("backend").setLevel(level.upper())


def main() -> None:
    """Development server; production runs gunicorn with gunicorn.conf.py."""
    app = create_app()
    settings = app.extensions["engine"].settings
    app.run(host=settings.host, port=settings.port, threaded=True, use_reloader=False)


if __name__ == "__main__":
    main()
