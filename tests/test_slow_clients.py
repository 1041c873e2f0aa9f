"""Slow and idle clients cost a socket, not a request thread (backend/http_worker.py).

Real gunicorn on loopback, spoken to over raw sockets so requests can stop half-way.
"""

from __future__ import annotations

import contextlib
import json
import math
import socket
import time
from collections.abc import Iterator

import pytest
import requests
from conftest import LOAD_TIMEOUT, ServerProcess, launch_server

pytestmark = pytest.mark.slow

THREADS = 4
HEADER_TIMEOUT = 5.0
BODY_GRACE = 5.0
SEND_TIMEOUT = 3.0
KEEPALIVE = 5.0  # gunicorn.conf.py's keepalive
MARGIN = 2.0  # the worker looks at deadlines about once a second
BAD_STEPS = b'{"prompt": "a cat", "steps": "many"}'


@pytest.fixture(scope="module")
def server(base_settings, tmp_path_factory) -> Iterator[ServerProcess]:
    """One server with 4 request threads and short limits for the whole module.

    launch_server, which start_server wraps per test: one start keeps the module under a minute.
    """
    folder = tmp_path_factory.mktemp("slow-clients")
    proc = launch_server(
        base_settings,
        folder / "server.log",
        JOBS_DIR=str(folder / "jobs"),
        HTTP_THREADS=THREADS,
        HEADER_TIMEOUT_SECONDS=HEADER_TIMEOUT,
        BODY_GRACE_SECONDS=BODY_GRACE,
        BODY_MIN_BYTES_PER_SECOND=1024,
        SEND_TIMEOUT_SECONDS=SEND_TIMEOUT,
    )
    try:
        # A worker still booting on a busy machine can leave a ping unanswered for over a second,
        # which wait_for_ping takes for a failure (it retries refused connections only); /health
        # is polled first by a helper that retries both.
        proc.seconds_until_healthy(timeout=LOAD_TIMEOUT)
        proc.wait_for_ping()
        proc.wait_until_healthy()
        yield proc
    finally:
        proc.stop()


class Client:
    """A raw HTTP/1.1 connection that reads responses (pipelined ones too) off one buffer."""

    def __init__(self, server: ServerProcess) -> None:
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # one send, one segment
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def response(self, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
        """The next response: status, headers (lower-case names) and body."""
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.buf:
            self._fill(deadline)
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {name.strip().lower(): value.strip() for name, _, value in
                   (line.partition(":") for line in lines)}  # fmt: skip
        length = int(headers.get("content-length", 0))
        while len(self.buf) < length:
            self._fill(deadline)
        body, self.buf = self.buf[:length], self.buf[length:]
        return int(status_line.split()[1]), headers, body

    def is_open(self) -> bool:
        """Whether the server has not closed its end (nothing may be waiting to be read)."""
        self.sock.setblocking(False)
        try:
            return self.sock.recv(1, socket.MSG_PEEK) != b""
        except BlockingIOError:
            return True
        except ConnectionResetError:
            return False
        finally:
            self.sock.settimeout(10)

    def seconds_until_closed(self, since: float, limit: float) -> float:
        """Wait (until `since + limit`) for the server to close; seconds from `since` it took."""
        deadline = since + limit
        while True:
            self.sock.settimeout(max(deadline - time.monotonic(), 0.001))
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                data = b""
            except TimeoutError:
                raise AssertionError(f"still open {limit:.1f} s after its clock started") from None
            assert data == b"", f"the server answered a stalled request: {data[:200]!r}"
            return time.monotonic() - since

    def _fill(self, deadline: float) -> None:
        self.sock.settimeout(max(deadline - time.monotonic(), 0.001))
        data = self.sock.recv(65536)
        assert data, "the server closed the connection"
        self.buf += data


def post_head(length: int | None, extra: str = "") -> bytes:
    """The head of a POST /image/generate: Content-Length `length`, or chunked when None."""
    framing = "Transfer-Encoding: chunked" if length is None else f"Content-Length: {length}"
    head = "POST /image/generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    return f"{head}{framing}\r\n{extra}\r\n".encode()


PING = b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n"
PING_AND_CLOSE = b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def stall(server: ServerProcess, kind: str) -> tuple[Client, float, float]:
    """A connection left stalled as `kind` says: (client, when its clock started, its limit)."""
    started = time.monotonic()
    client = Client(server)
    if kind == "partial head":
        client.send(b"GET /ping HTTP/1.1\r\nHost: x\r\n")
        return client, started, HEADER_TIMEOUT
    if kind == "partial body":
        client.send(post_head(100) + b'{"pro')
        return client, started, BODY_GRACE
    if kind == "partial chunked body":
        client.send(post_head(None) + b'40\r\n{"pro')
        return client, started, BODY_GRACE
    client.send(PING)
    assert client.response()[2] == b"pong"
    started = time.monotonic()
    if kind == "idle keep-alive":
        return client, started, KEEPALIVE
    assert kind == "keep-alive, then a partial head"
    client.send(b"POST /image/generate HTTP/1.1\r\nHost: x\r\nContent-")
    return client, started, HEADER_TIMEOUT


KINDS = [
    "partial head",
    "partial body",
    "partial chunked body",
    "idle keep-alive",
    "keep-alive, then a partial head",
]


def test_stalled_connections_hold_no_thread_and_are_closed_in_time(server):
    kinds = [KINDS[i % len(KINDS)] for i in range(2 * THREADS)]
    stalled = [(kind, *stall(server, kind)) for kind in kinds]

    latencies = []
    for _ in range(50):
        start = time.perf_counter()
        assert requests.get(f"{server.url}/ping", timeout=2).text == "pong"
        latencies.append(time.perf_counter() - start)
    p99 = sorted(latencies)[math.ceil(0.99 * len(latencies)) - 1]  # nearest rank
    assert p99 < 0.1, f"ping p99 {p99 * 1000:.0f} ms with stalled connections open"
    generated = requests.post(
        f"{server.url}/image/generate", json={"prompt": "a cat", "steps": 1}, timeout=30
    )
    assert generated.status_code == 200, generated.text[:300]
    assert generated.content.startswith(b"\x89PNG")
    # All of that happened while every stalled connection was still open.
    assert all(client.is_open() for _, client, _, _ in stalled)

    for kind, client, started, limit in stalled:
        took = client.seconds_until_closed(started, limit + MARGIN)
        assert took > limit - 1.0, f"{kind}: closed after {took:.1f} s, before its limit"
    log = server.log()
    assert "no whole request head in 5 s" in log
    assert "request body slower than 1024 bytes/s" in log
    assert "[ERROR]" not in log and "Traceback" not in log, log[-3000:]


def test_a_head_that_trickles_in_byte_by_byte_is_served(server):
    client = Client(server)
    for byte in PING_AND_CLOSE:  # about 50 sends, 1 s in all: well within the head timeout
        client.send(bytes([byte]))
        time.sleep(0.02)
    status, _, body = client.response()
    assert (status, body) == (200, b"pong")


def test_pipelined_requests_are_both_answered_in_order(server):
    client = Client(server)
    client.send(post_head(len(BAD_STEPS)) + BAD_STEPS + PING + PING_AND_CLOSE)
    status, headers, body = client.response()
    assert status == 400 and headers["content-type"] == "application/json"
    assert "steps" in json.loads(body)["details"]
    assert client.response()[:3:2] == (200, b"pong")
    assert client.response()[:3:2] == (200, b"pong")
    assert client.seconds_until_closed(time.monotonic(), 5) < 5


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_body_sent_in_pieces_within_the_floor_reaches_the_app_whole(server, chunked):
    client = Client(server)
    client.send(post_head(None if chunked else len(BAD_STEPS)))
    pieces = [BAD_STEPS[i : i + 10] for i in range(0, len(BAD_STEPS), 10)]
    for piece in pieces:  # 36 bytes over about 1 s: slow, but within the grace
        time.sleep(0.25)
        client.send(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
    if chunked:
        client.send(b"0\r\n\r\n")
    status, _, body = client.response()
    assert status == 400, body[:300]
    error = json.loads(body)
    assert list(error["details"]) == ["steps"], error


def test_expect_100_continue_gets_its_interim_answer_before_the_body(server):
    client = Client(server)
    client.send(post_head(len(BAD_STEPS), "Expect: 100-continue\r\n"))
    assert client.response()[0] == 100
    client.send(BAD_STEPS)
    status, _, body = client.response()
    while status == 100:  # gunicorn may send its own as the request starts (RFC 9110 15.2)
        status, _, body = client.response()
    assert status == 400 and "steps" in json.loads(body)["details"]


def test_clients_that_never_close_after_connection_close_do_not_stall_the_others(server):
    # gthread itself would wait up to 2 s for each one's FIN on its main loop.
    clients = [Client(server) for _ in range(6)]
    for client in clients:
        client.send(b"GET /ping HTTP/1.0\r\n\r\n")
        assert client.response()[2] == b"pong"
    start = time.perf_counter()
    assert requests.get(f"{server.url}/ping", timeout=5).text == "pong"
    assert time.perf_counter() - start < 0.5
    since = time.monotonic()
    assert all(client.seconds_until_closed(since, 2.0 + MARGIN) for client in clients)


def test_a_declared_body_over_the_limit_is_refused_at_once(server):
    client = Client(server)
    client.send(post_head(10**6) + b'{"prompt": ')
    status, headers, body = client.response(timeout=5)
    assert status == 413 and headers["content-type"] == "application/json", body[:300]
    assert headers["connection"] == "close"  # the body was not read: no keep-alive after it
    assert client.seconds_until_closed(time.monotonic(), 5) < 5


@pytest.mark.parametrize(
    "body",
    [b"zz\r\n{}\r\n0\r\n\r\n", b'5\r\n{"a":1}\r\n0\r\n\r\n', b"2;\x00\r\n{}\r\n0\r\n\r\n"],
    ids=["bad-size", "size-mismatch", "bad-extension"],
)
def test_a_broken_chunked_body_is_a_json_400(server, body):
    client = Client(server)
    client.send(post_head(None) + body)
    status, headers, answer = client.response(timeout=10)
    assert status == 400, answer[:300]
    assert headers["content-type"] == "application/json"
    assert b"Traceback" not in answer
    assert "Traceback" not in server.log() and "Error handling request" not in server.log()


def test_a_client_that_stops_reading_its_response_frees_the_thread(server):
    # About 7.5 MB of JSON, more than the kernel's socket buffers hold (4 MB for the sender at
    # most), into a 4 KiB receive window that is never read: the thread blocks in sendall.
    body = {"prompt": "big", "steps": 1, "width": 640, "height": 640, "n": 4}
    data = json.dumps({**body, "response_format": "json"}).encode()
    reader = socket.socket()
    reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    reader.connect(("127.0.0.1", server.port))
    try:
        reader.sendall(post_head(len(data)) + data)
        deadline = time.monotonic() + 180
        while "read none of its response" not in server.log():
            assert time.monotonic() < deadline, "the thread never gave the stalled reader up"
            time.sleep(0.2)
        reader.settimeout(10)
        received = 0
        with contextlib.suppress(ConnectionResetError):
            while chunk := reader.recv(1 << 20):
                received += len(chunk)
        assert received < 5_000_000  # cut off: the server closed it without sending the rest
        assert "Traceback" not in server.log(), server.log()[-3000:]
    finally:
        reader.close()
