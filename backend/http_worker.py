"""gunicorn's gthread worker, with request heads and small bodies buffered by its main loop.

Stock gthread gives a connection a request thread as soon as it sends a byte, so a client that
sends half a request holds one of the HTTP_THREADS for as long as it likes. Here, as in nginx and
waitress, the selector loop reads without blocking and hands a connection to a thread only once
its head, and its body up to MAX_CONTENT_LENGTH (MAX_UPLOAD_LENGTH on the routes that take images,
backend/uploads.py), are all buffered. A head slower than
HEADER_TIMEOUT_SECONDS, or a body under BODY_MIN_BYTES_PER_SECOND once BODY_GRACE_SECONDS are
over, is closed. TLS and HTTP/2 prior-knowledge connections keep gthread's path: their bytes are
not plain HTTP/1 until a thread has done the handshake or read the preface.
"""

from __future__ import annotations

import contextlib
import re
import selectors
import socket
import struct
import time
from concurrent.futures import Future
from dataclasses import dataclass
from functools import partial
from typing import Any

from gunicorn.http2 import negotiation
from gunicorn.workers.gthread import STOP_KEEPALIVE_LINGER, TConn, ThreadWorker

# A head ends at an empty line. A bare LF is rejected by the parser without reading more, so it
# goes to a thread for the parser's 400 instead of waiting for an end that never comes.
_HEAD_END = re.compile(rb"\r\n\r\n|(?<!\r)\n")
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")
_RECV_SIZE = 65536
# More than the parser's own cap on a head with gunicorn's default limits (about 800 KiB): a head
# still unfinished past this is never going to be served.
_HEAD_CAP = 1024 * 1024
_LINGER_SECONDS = 2.0  # as gunicorn's close_graceful: how long a closing socket waits for FIN


@dataclass(frozen=True)
class StageLimits:
    """How long a client may take to send a request before its connection is closed."""

    header_timeout: float = 10.0  # seconds from accept (or keep-alive wake-up) to the whole head
    body_min_rate: float = 1024.0  # bytes per second a body must average after the grace
    body_grace: float = 5.0  # seconds any body gets, whatever its rate
    max_body: int = 65536  # larger declared bodies go to a thread at once (Flask answers 413)
    send_timeout: float = 30.0  # seconds a response write may make no progress
    max_upload: int = 0  # the body limit of the upload paths (MAX_UPLOAD_LENGTH)
    upload_paths: frozenset[str] = frozenset()  # exact paths that take images (backend/uploads)

    def body_limit(self, request_line: bytes) -> int:
        """The body limit of the request `request_line` starts: max_upload on upload paths."""
        parts = request_line.split(b" ")
        if len(parts) == 3 and self.upload_paths:
            path = parts[1].split(b"?", 1)[0].decode("latin-1")
            if path in self.upload_paths:
                return max(self.max_body, self.max_upload)
        return self.max_body


def _framing(head: bytes) -> tuple[int | None, bool]:
    """The body length a head declares (None: chunked; -1: malformed), and if it expects 100."""
    lines = head.removeprefix(b"\r\n").split(b"\r\n")  # the parser allows one empty line first
    lengths, codings, expect = [], [], False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name, value = name.lower(), value.strip().lower()
        if name == b"content-length":
            lengths.append(value)
        elif name == b"transfer-encoding":
            codings += [coding.strip() for coding in value.split(b",")]
        elif name == b"expect":
            expect = value == b"100-continue" and lines[0].endswith(b"HTTP/1.1")
    # Anything odd is left to gunicorn's parser, which rejects it without reading further.
    if codings:
        return (None if codings[-1] == b"chunked" and not lengths else -1), expect
    if len(lengths) > 1 or (lengths and not lengths[0].isdigit()):
        return -1, expect
    return (int(lengths[0]) if lengths else 0), expect


class StagedConn(TConn):
    """A plain HTTP/1 connection and what the main loop has read of its next request."""

    def __init__(self, *args: Any, send_timeout: float = 30.0) -> None:
        super().__init__(*args)
        self.read_timeout: float | None = None  # the thread's, for a request handed over unread
        # SO_SNDTIMEO bounds each blocking send, not the whole response as a Python socket
        # timeout would: a slow reader that keeps reading is served, a stopped one is dropped.
        seconds = int(send_timeout)
        timeval = struct.pack("ll", seconds, int((send_timeout - seconds) * 1e6))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
        self.stage(b"", 0.0)

    def stage(self, data: bytes, deadline: float, lingering: bool = False) -> None:
        """Start buffering the next request (lingering: discard reads until the client's FIN)."""
        self.staged, self.scanned, self.head_end, self.head_at = bytearray(data), 0, -1, 0.0
        self.body_length: int | None = 0
        self.body_limit = 0  # set from the request line once the head is in
        self.chunk_pos, self.decoded, self.in_trailers = 0, 0, False
        self.deadline, self.lingering = deadline, lingering

    def init(self) -> None:
        """gthread's set-up (in the thread), then the staged bytes go to the parser first."""
        super().init()
        if self.staged:
            # The unreader serves its buffer before the socket, and staging took over whatever it
            # held (finish_request), so each byte is parsed exactly once and in order.
            self.parser.unreader.unread(bytes(self.staged))
            self.staged = bytearray()
        self.sock.settimeout(self.read_timeout)

    def chunked_end(self, limit: int) -> bool | None:
        """Walk complete chunks: True at the body's end, False to wait, None to hand over now."""
        while (eol := self.staged.find(b"\r\n", self.chunk_pos)) >= 0:
            line = bytes(self.staged[self.chunk_pos : eol])
            if self.in_trailers:  # after the last chunk: trailer lines up to an empty one
                self.chunk_pos = eol + 2
                if not line:
                    return True
                continue
            size_text = line.split(b";")[0].strip()
            if not _HEX.fullmatch(size_text) or self.decoded + int(size_text, 16) > limit:
                return None  # the parser's 400, or Flask's 413
            size = int(size_text, 16)
            if size and eol + 4 + size > len(self.staged):
                return False  # this chunk is not all here: its size line is read again later
            self.decoded += size
            self.chunk_pos, self.in_trailers = (eol + 4 + size, False) if size else (eol + 2, True)
        return False


class BufferingWorker(ThreadWorker):
    """gthread, except that only fully buffered requests reach a request thread."""

    limits = StageLimits()

    @classmethod
    def configured(cls, limits: StageLimits) -> type[BufferingWorker]:
        """This worker class with `limits` (what gunicorn.conf.py gives as worker_class)."""
        return type(cls.__name__, (cls,), {"limits": limits})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.staging: set[StagedConn] = set()

    def accept(self, listener: socket.socket) -> None:
        """Accept a connection: plain HTTP/1 ones are buffered here, others go to gthread."""
        try:
            client_sock, client_addr = listener.accept()
        except (BlockingIOError, ConnectionAbortedError, InterruptedError):
            return
        self.nr_conns += 1
        args = (self.cfg, client_sock, client_addr, listener.getsockname())
        if self.cfg.is_ssl or negotiation.prior_knowledge_allowed(self.cfg, client_addr):
            self.enqueue_req(TConn(*args))
        else:
            conn = StagedConn(*args, send_timeout=self.limits.send_timeout)
            self._watch(conn, b"", self.limits.header_timeout)

    def on_client_socket_readable(self, conn: TConn, client: socket.socket) -> None:
        """A kept-alive connection speaks again: its next request is buffered like a first."""
        if not isinstance(conn, StagedConn):
            super().on_client_socket_readable(conn, client)
            return
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self._watch(conn, b"", self.limits.header_timeout)
        self._on_readable(conn)

    def finish_request(self, conn: TConn, fs: Future) -> None:
        """Back from a thread: read-ahead is staged, and closes linger without blocking."""
        if not isinstance(conn, StagedConn) or fs.cancelled() or fs.exception() is not None:
            super().finish_request(conn, fs)
        elif fs.result() is True and conn.parser.unreader.buf.getvalue():
            # A pipelined request read ahead with the last one goes through the stage too.
            self._watch(conn, conn.parser.unreader.take_buffered(), self.limits.header_timeout)
        elif fs.result() is False:
            # gthread's close_graceful would wait up to 2 s for the client's FIN right here, on
            # the main loop, stalling every other connection: the poller waits for it instead.
            try:
                conn.sock.shutdown(socket.SHUT_WR)
                self._watch(conn, b"", _LINGER_SECONDS, lingering=True)
            except OSError:
                self._close(conn)
        else:
            super().finish_request(conn, fs)  # kept alive, nothing read ahead: gthread parks it

    def handle_request(self, req: Any, conn: TConn) -> bool:
        """gthread's, except that a client which stopped reading its response is let go."""
        if getattr(conn, "read_timeout", None) is not None:
            # Handed over unread (a 413, a malformed head): the connection closes after this
            # answer (`_keepalive_after`), so the answer must say so, or a client that reuses
            # the connection loses its next request.
            req.must_close = True
        try:
            return super().handle_request(req, conn)
        except BlockingIOError:  # SO_SNDTIMEO passed with no byte sent: the client stopped reading
            self.log.info(
                "Closed %s: read none of its response for %g s",
                conn.client,
                self.limits.send_timeout,
            )
            return False  # close the connection; the thread is free again

    def _keepalive_after(self, conn: TConn, keepalive: bool) -> bool:
        # A body handed over unread would be drained here by a thread at the client's pace: close
        # instead (the main loop discards the rest while the close lingers).
        if getattr(conn, "read_timeout", None) is not None:
            return False
        return super()._keepalive_after(conn, keepalive)

    def murder_pending(self) -> None:
        """gthread's expiry, then close the staged connections past their deadline."""
        super().murder_pending()
        now, limits = time.monotonic(), self.limits
        for conn in list(self.staging):
            if not (self.alive or conn.staged):
                # Stopping: one that has sent nothing gets what gthread gives idle kept-alive ones.
                conn.deadline = min(conn.deadline, now + STOP_KEEPALIVE_LINGER)
            if conn.deadline > now:
                continue
            if conn.lingering or not conn.staged:
                self._close(conn, "" if conn.lingering else "sent nothing", debug=True)
            elif conn.head_end < 0:
                self._close(conn, f"no whole request head in {limits.header_timeout:g} s")
            else:
                self._close(conn, f"request body slower than {limits.body_min_rate:g} bytes/s")

    def _watch(self, conn: StagedConn, data: bytes, wait: float, lingering: bool = False) -> None:
        conn.stage(data, time.monotonic() + wait, lingering)
        conn.sock.setblocking(False)
        self.staging.add(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_readable, conn))
        if data:
            self._advance(conn)

    def _on_readable(self, conn: StagedConn, _sock: object = None) -> None:
        try:
            data = conn.sock.recv(_RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            gone = conn.staged and not conn.lingering  # a plain goodbye is not worth a line
            self._close(conn, "went away mid-request" if gone else "", debug=True)
        elif not conn.lingering:
            conn.staged += data
            self._advance(conn)

    def _advance(self, conn: StagedConn) -> None:
        """Hand the connection to a thread once its request is buffered; else wait for more."""
        limits, buf, expect = self.limits, conn.staged, False
        if conn.head_end < 0:
            match = _HEAD_END.search(buf, max(conn.scanned - 3, 0))
            conn.scanned = len(buf)
            if match is None:
                if len(buf) > _HEAD_CAP:
                    self._close(conn, "request head too large")
                return
            if match.group() == b"\n":
                self._hand_over(conn, complete=False)
                return
            conn.head_end, conn.head_at = match.end(), time.monotonic()
            conn.chunk_pos = conn.head_end
            head = bytes(buf[: match.start()])
            conn.body_length, expect = _framing(head)
            conn.body_limit = limits.body_limit(head.lstrip(b"\r\n").split(b"\r\n", 1)[0])
            if conn.body_length is not None and not 0 <= conn.body_length <= conn.body_limit:
                self._hand_over(conn, complete=False)  # the parser's 400, or Flask's 413
                return
        received = len(buf) - conn.head_end
        length, limit = conn.body_length, conn.body_limit
        done = conn.chunked_end(limit) if length is None else received >= length
        if done is not False or received > limit + _RECV_SIZE:
            self._hand_over(conn, complete=bool(done))
            return
        if expect:
            # The client waits for this before it sends the body. gunicorn sends another when
            # the thread starts the request: RFC 9110 (15.2) has clients accept that.
            with contextlib.suppress(OSError):
                conn.sock.send(b"HTTP/1.1 100 Continue\r\n\r\n")
        # The body's floor: BODY_MIN_BYTES_PER_SECOND on average since the head, after the grace.
        conn.deadline = conn.head_at + max(limits.body_grace, received / limits.body_min_rate)

    def _hand_over(self, conn: StagedConn, complete: bool) -> None:
        self._unwatch(conn)
        # Not all buffered: a thread may read the socket, and waits no longer than a head may.
        conn.read_timeout = None if complete else self.limits.header_timeout
        conn.data_ready = True  # gthread's handle() must not wait for data: it is here
        self.enqueue_req(conn)

    def _close(self, conn: TConn, why: str = "", debug: bool = False) -> None:
        if why:  # slow or odd clients are routine on the open internet, not errors
            (self.log.debug if debug else self.log.info)("Closed %s: %s", conn.client, why)
        self._unwatch(conn)
        self.nr_conns -= 1
        conn.close()

    def _unwatch(self, conn: TConn) -> None:
        self.staging.discard(conn)  # type: ignore[arg-type]
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.poller.unregister(conn.sock)
