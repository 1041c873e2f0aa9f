"""A worker's own small HTTP server on WORKER_PORT: `/health` for probes, `/metrics`.

stdlib only: it must answer while the device thread is busy and Celery owns the main thread.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


def serve(
    host: str,
    port: int,
    health: Callable[[], tuple[int, dict[str, Any]]],
    registry: CollectorRegistry,
) -> ThreadingHTTPServer:
    """Start answering on `host:port` in a daemon thread; `shutdown()` the result to stop."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/health":
                status, body = health()
                self._send(status, "application/json", json.dumps(body).encode())
            elif self.path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, generate_latest(registry))
            elif self.path == "/ping":
                self._send(200, "text/plain", b"pong")
            else:
                self._send(404, "application/json", b'{"error": "Not found."}')

        def _send(self, status: int, media_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", media_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:  # probes every few seconds: not worth a line
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="worker-http", daemon=True).start()
    return server
