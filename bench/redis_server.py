"""A real redis-server on a free loopback port, ended by its pid: for tests and benchmarks."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from pathlib import Path

import redis

from bench.server import free_port

INSTALL = "redis-server is not installed: apt-get install redis-server (Debian) runs this"


class RedisMissingError(RuntimeError):
    """No redis-server executable on PATH."""


class RedisServer:
    """One redis-server process: no persistence, no eviction (as the broker must run)."""

    def __init__(self, folder: Path) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            raise RedisMissingError(INSTALL)
        self.log = folder / "redis.log"
        for _ in range(3):  # the free port may be taken between our probe and its bind
            self.port = free_port()
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
