"""What every Server-Sent Events response shares: listener bounds, the response, departures."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from flask import Flask, Response, current_app
from werkzeug.exceptions import ServiceUnavailable

from backend.model.listener_slots import ListenerSlots
from backend.settings.groups import StreamSettings
from backend.view.job_events import MEDIA_TYPE

RETRY_AFTER_SECONDS = 5  # when every stream slot is taken: streams last seconds to minutes


def init_listener_slots(app: Flask, settings: StreamSettings) -> None:
    """Give `app` its count of open streams (SSE_MAX_LISTENERS, SSE_MAX_PER_JOB)."""
    app.extensions["event_listeners"] = ListenerSlots(settings.max_listeners, settings.max_per_job)


def take_listener(key: str) -> Callable[[], None]:
    """A stream slot on `key` (its job), as the function that frees it; a 503 with Retry-After
    when SSE_MAX_LISTENERS or SSE_MAX_PER_JOB are reached (each stream holds an HTTP thread)."""
    slots: ListenerSlots = current_app.extensions["event_listeners"]
    give_back = slots.take(key)
    if give_back is None:
        raise ServiceUnavailable(
            f"Too many event streams open (at most {slots.total} in all and {slots.per_job} "
            "per job): try again shortly, or poll GET /jobs/<id>.",
            retry_after=RETRY_AFTER_SECONDS,
        )
    return give_back


def event_stream(body: Iterable[str], give_back: Callable[[], None]) -> Response:
    """A text/event-stream response of `body`; `give_back` (safe to call twice) runs when the
    body ends or the response closes (its client gone), whichever comes first."""
    response = Response(_closing(body, give_back), mimetype=MEDIA_TYPE)
    # Nothing may read the body ahead of the client (the request log asks for its length).
    response.implicit_sequence_conversion = False
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Accel-Buffering"] = "no"  # nginx: pass each event on as it comes
    response.call_on_close(give_back)
    return response


def _closing(body: Iterable[str], give_back: Callable[[], None]) -> Iterator[str]:
    # WSGI servers close every response, but not every test client does.
    try:
        yield from body
    finally:
        give_back()


def client_gone(environ: Mapping[str, Any]) -> Callable[[], bool]:
    """A check that the client closed its connection, so a stream ends within a poll instead
    of at its next write (gunicorn hands over the socket; elsewhere: never known early)."""
    sock = environ.get("gunicorn.socket")
    if not isinstance(sock, socket.socket):
        return lambda: False

    def gone() -> bool:
        try:
            return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False  # open, nothing sent: the usual case
        except OSError:
            return True

    return gone
