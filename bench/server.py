"""A real server in its own process group on a loopback port: for benchmarks and tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import requests

ROOT = Path(__file__).resolve().parent.parent
GUNICORN = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"]


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(settings: dict[str, object], **overrides: object) -> dict[str, str]:
    """The environment for a server on a free loopback port with `settings`."""
    env = {**os.environ, **{key: str(value) for key, value in settings.items()}}
    env.update({"HOST": "127.0.0.1", "PORT": str(free_port()), "PYTHONUNBUFFERED": "1"})
    env.update({key: str(value) for key, value in overrides.items()})
    return env


class Server:
    """A server process (gunicorn with gunicorn.conf.py by default), its output in a log file."""

    def __init__(
        self, env: dict[str, str], log_path: Path, command: list[str] | None = None
    ) -> None:
        self.port = int(env["PORT"])
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("wb")
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            command or GUNICORN,
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # so stop() can signal make, gunicorn and its worker at once
        )

    def log(self) -> str:
        """Everything the server printed so far."""
        return self.log_path.read_text(errors="replace")

    def seconds_until_healthy(self, timeout: float = 300) -> float:
        """Seconds from process start to the first /health 200."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited:\n{self.log()}")
            try:
                if requests.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return time.perf_counter() - self.started
            except (requests.ConnectionError, requests.Timeout):
                pass  # not listening yet, or its worker is still importing
            time.sleep(0.02)
        raise RuntimeError(f"not healthy within {timeout}s:\n{self.log()}")

    def worker_pids(self) -> list[int]:
        """gunicorn's worker processes: the master's children."""
        pid = self.process.pid
        return [
            int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        ]

    def rss_bytes(self) -> int:
        """Resident memory of the (one) worker now."""
        (worker,) = self.worker_pids()
        for line in Path(f"/proc/{worker}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def stop(self) -> int:
        """SIGTERM the whole process group (graceful), SIGKILL if it lingers; the exit code."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()
        return self.process.returncode
