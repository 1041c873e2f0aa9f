"""gunicorn settings for production: `gunicorn -c gunicorn.conf.py` (what `make run` does).

One worker process holds the pipelines (one per device); its threads serve HTTP. The model is
never loaded in the master: the app is created in the worker, after the fork.
"""

import sys
from typing import Any

from backend.config import ConfigError, load_settings
from backend.http_worker import BufferingWorker, StageLimits
from backend.uploads import UPLOAD_PATHS

try:
    _settings = load_settings()
except ConfigError as error:  # a message naming the variable reads better than a traceback
    sys.exit(f"gunicorn.conf.py: {error}")

wsgi_app = "backend.main:create_app()"
bind = f"{_settings.host}:{_settings.port}"
workers = 1  # more processes would each load their own copy of the model
# gthread, except that the main loop buffers each request and only a complete one takes a thread:
# clients that send half a request and stall cannot use up the threads (docs/serving.md, "Slow
# and idle clients"). The limits travel as a configured class because gunicorn keeps only its own
# settings from this file and hands workers nothing else; this way the worker uses the very
# settings read above for bind and threads, instead of reading the environment again after the
# fork.
worker_class = BufferingWorker.configured(
    StageLimits(
        header_timeout=_settings.header_timeout_seconds,
        body_min_rate=_settings.body_min_bytes_per_second,
        body_grace=_settings.body_grace_seconds,
        send_timeout=_settings.send_timeout_seconds,
        max_body=_settings.max_content_length,
        max_upload=_settings.assets.max_upload_length,
        upload_paths=UPLOAD_PATHS,
    )
)
threads = _settings.http_threads
preload_app = False  # never import torch or touch CUDA in the master
# For gthread workers `timeout` is a heartbeat of the worker's main loop, not a request limit:
# long generations run on request threads and do not trip it.
timeout = 120
graceful_timeout = _settings.graceful_timeout
keepalive = 5  # idle kept-alive connections wait this long in the worker's poller, not on a thread
# gunicorn 25+ opens a control socket at one fixed per-user path: two servers on a host (or a
# test run beside a deployment) would fight over it, and nothing here uses it.
control_socket_disable = True
loglevel = _settings.log_level
# The app writes one structured line per request (backend.access, with the request id, client,
# timings and result); gunicorn's own access line would only repeat part of it.
accesslog = None
errorlog = "-"


def worker_exit(server: Any, worker: Any) -> None:
    """After SIGTERM: gunicorn has answered every open request; now finish the accepted jobs.

    The worker stopped accepting connections and drained its in-flight requests first (within
    graceful_timeout); queued jobs (POST /jobs) have no open request, so the engine drains them
    here. gunicorn's master kills the worker once graceful_timeout has passed in all.
    """
    app = getattr(worker, "wsgi", None)
    engine = getattr(app, "extensions", {}).get("engine")
    if engine is not None:
        engine.stop(timeout=graceful_timeout)
