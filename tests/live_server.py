"""A Flask app served over real HTTP from a thread, with slow denoising steps: for clients
(webuiapi, requests) that watch and interrupt a run while it goes on."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from werkzeug.serving import make_server


@contextmanager
def serve(app: Any, step_seconds: float = 0.0) -> Iterator[str]:
    """Serve `app` (its denoising steps slowed by `step_seconds`) at the yielded base URL."""
    engine = app.extensions["engine"]
    if step_seconds:
        for worker in engine.workers:
            worker.step_hook = lambda _step, _total: time.sleep(step_seconds)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(10)


def wait_for(check: Any, timeout: float = 60.0, every: float = 0.05) -> Any:
    """Poll `check()` until it returns something truthy; that value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"not within {timeout} s")
