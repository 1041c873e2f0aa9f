"""A real redis-server for tests, on a free loopback port, ended by its pid.

Use the fixtures by importing them into a test module:
    from tests.redis_server import redis_client, redis_server  # noqa: F401
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

SKIP = "redis-server is not installed: apt-get install redis-server (Debian) runs these tests"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """One redis-server process: no persistence, no eviction (as the broker must run)."""

    def __init__(self, folder: Path) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            pytest.skip(SKIP)
        self.log = folder / "redis.log"
        for _ in range(3):  # the free port may be taken between our probe and its bind
            self.port = _free_port()
            self.url = f"redis://127.0.0.1:{self.port}/0"
            self.process = self._start(executable, folder)
            if self._wait_ready():
                return
        raise RuntimeError(f"redis-server did not start: {self.log.read_text()[-2000:]}")

    def _start(self, executable: str, folder: Path) -> subprocess.Popen:
        options = {
            "--port": str(self.port),
            "--bind": "127.0.0.1",
            "--save": "",  # no persistence: a test server starts empty
            "--appendonly": "no",
            "--maxmemory-policy": "noeviction",  # as the broker must run
            "--dir": str(folder),
        }
        with self.log.open("wb") as log:
            return subprocess.Popen(
                [executable, *(part for pair in options.items() for part in pair)],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=folder,
            )

    def _wait_ready(self, timeout: float = 10.0) -> bool:
        """Whether it answers PING within `timeout` seconds (False: it exited, or is ended)."""
        client = redis.Redis(port=self.port, socket_timeout=1)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline and self.process.poll() is None:
                with contextlib.suppress(redis.ConnectionError, redis.TimeoutError):
                    if client.ping():
                        return True
                time.sleep(0.05)
        finally:
            client.close()
        self.stop()
        return False

    def client(self, **options: object) -> redis.Redis:
        """A new client of this server."""
        return redis.Redis(port=self.port, socket_timeout=10, **options)

    def stop(self, timeout: float = 5.0) -> None:
        """End the server by its pid: SIGTERM, then SIGKILL after `timeout` seconds."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server for the whole test session."""
    with tempfile.TemporaryDirectory(prefix="t2i-redis-") as folder:
        server = RedisServer(Path(folder))
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A fresh client; tests keep apart by a unique key prefix (see `unique_prefix`)."""
    client = redis_server.client()
    try:
        yield client
    finally:
        client.close()


def unique_prefix() -> str:
    """A key prefix no other test uses (the server is shared, so nothing is flushed)."""
    return f"test{secrets.token_hex(4)}"
