"""Entry point: `create_app()` for gunicorn (`backend.main:create_app()`), `python -m backend.main`
for a development server."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from typing import Any

from flask import Flask
from prometheus_client import CollectorRegistry

from backend.config import Settings, load_settings
from backend.controller import register_blueprints
from backend.controller.access import init_access
from backend.controller.errors import register_error_handlers
from backend.controller.http_metrics import HttpMetrics
from backend.controller.json_input import StrictJSONProvider
from backend.controller.request_id import init_request_ids
from backend.controller.request_log import init_request_log
from backend.controller.response_headers import init_response_headers
from backend.controller.streams import init_listener_slots
from backend.controller.uploads import init_upload_limits
from backend.model.service import GenerationService

log = logging.getLogger(__name__)


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
    # One registry per app: tests build many apps in one process.
    registry = CollectorRegistry()
    engine = _service(settings, registry)
    app.extensions["engine"] = engine
    app.extensions["metrics_registry"] = registry
    # Flask runs after_request hooks in reverse order: the request log, registered first,
    # sees the final response, with every header the later hooks add.
    init_request_log(app, HttpMetrics(registry), settings.access.log_prompts)
    init_request_ids(app)
    init_response_headers(app)
    init_access(app, settings)  # before the routes' own hooks: they read g.client_id
    init_upload_limits(app, settings.assets.max_upload_length)
    register_error_handlers(app)
    register_blueprints(app)
    init_listener_slots(app, settings.streams)
    _check_threads(settings)
    engine.start()
    return app


def _service(settings: Settings, registry: CollectorRegistry) -> GenerationService:
    """The model layer QUEUE_BACKEND asks for: in this process, or in worker processes."""
    if settings.scale_out.queue_backend == "celery":
        from backend.distributed.remote_engine import RemoteEngine  # imports no torch

        return RemoteEngine(settings, registry)
    from backend.model.engine import Engine

    engine = Engine(settings, registry)
    _slow_steps_seam(engine)
    return engine


def _slow_steps_seam(engine: Any) -> None:
    """Tests make runs of a real server long enough to watch or cancel (as the scale-out
    worker's seam of the same name does)."""
    seconds = float(os.environ.get("T2I_TEST_STEP_SECONDS", "0") or 0)
    if not seconds:
        return

    def slow_down() -> None:  # the device workers exist once start-up has found the devices
        engine.wait_until_loaded(600)
        for worker in engine.workers:
            worker.step_hook = lambda _step, _total: time.sleep(seconds)

    threading.Thread(target=slow_down, name="test-seam", daemon=True).start()


def _check_threads(settings: Settings) -> None:
    """Warn when waiting generations could take every HTTP thread (local mode)."""
    if settings.scale_out.queue_backend != "local":
        return
    devices = len(settings.devices) if settings.devices and "auto" not in settings.devices else 1
    serving = settings.serving
    waiting = devices * (serving.max_queue_size + serving.max_batch_size)
    streams = settings.streams.max_listeners
    if settings.http_threads <= waiting + streams:
        # Each waiting synchronous request and each event stream holds an HTTP thread: with
        # none left over, probes and job polls would queue behind them.
        log.warning(
            "HTTP_THREADS=%d leaves no thread for /health and polls when %d generations wait "
            "(%d device(s) x (MAX_QUEUE_SIZE + MAX_BATCH_SIZE)) and %d event streams are open "
            "(SSE_MAX_LISTENERS); raise HTTP_THREADS",
            settings.http_threads,
            waiting,
            devices,
            streams,
        )


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
