"""A real scale-out cluster: redis-server, gunicorn API processes, worker processes.

Every part is a subprocess in its own session on free loopback ports, ended by pid. Workers run
with one torch thread each unless the settings say otherwise, so two fit on a 2-core machine.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import redis
import requests

from bench.server import Server, free_port, server_env

WORKER = [sys.executable, "-m", "backend.distributed.worker"]
START_TIMEOUT = 120.0


class Worker(Server):
    """A worker process; `url` is its own /health and /metrics server."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        super().__init__(env, log_path, WORKER)
        self.port = int(env["WORKER_PORT"])
        self.url = f"http://127.0.0.1:{self.port}"
        self.id = None

    def wait_until_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Until its /health says ready (model loaded, heartbeating)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"worker exited early:\n{self.log()}"
            try:
                response = requests.get(f"{self.url}/health", timeout=2)
                if response.status_code == 200:
                    self.id = response.json()["worker"]
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"worker not ready within {timeout}s:\n{self.log()}")

    def signal(self, number: int) -> None:
        """Send `number` to the worker process itself (not its session)."""
        os.kill(self.process.pid, number)

    def kill(self) -> None:
        """SIGKILL, as the OOM killer or a lost node would."""
        self.signal(signal.SIGKILL)
        self.process.wait(10)


class Cluster:
    """API processes and workers sharing one Redis, one key prefix and one results folder."""

    def __init__(self, settings: dict[str, object], redis_url: str, folder: Path) -> None:
        self.folder = folder
        self.settings = {
            "OMP_NUM_THREADS": "1",  # unless `settings` say otherwise
            **settings,
            "QUEUE_BACKEND": "celery",
            "BROKER_URL": redis_url,
            "REDIS_PREFIX": f"t{secrets.token_hex(4)}",  # a fresh namespace per cluster
            "RESULTS_DIR": str(folder / "results"),
            "JOBS_DIR": "off",
        }
        self.apis: list[Server] = []
        self.workers: list[Worker] = []
        self.redis = redis.Redis.from_url(redis_url)

    def add_worker(self, **overrides: object) -> Worker:
        """Start a worker and wait until it serves."""
        log = self.folder / f"worker-{len(self.workers)}.log"
        env = server_env(self.settings, WORKER_PORT=free_port(), **overrides)
        worker = Worker(env, log)
        self.workers.append(worker)
        worker.wait_until_ready()
        return worker

    def add_api(self, **overrides: object) -> Server:
        """Start an API process (gunicorn) and wait until it answers."""
        log = self.folder / f"api-{len(self.apis)}.log"
        api = Server(server_env(self.settings, **overrides), log)
        self.apis.append(api)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert api.process.poll() is None, f"API exited early:\n{api.log()}"
            try:
                if requests.get(f"{api.url}/ping", timeout=2).status_code == 200:
                    return api
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"API not up within {START_TIMEOUT}s:\n{api.log()}")

    def wait_ready(self, api: Server, timeout: float = START_TIMEOUT) -> None:
        """Until `api` sees every worker ready: admission counts the workers' heartbeats, so
        a request sent before then may be refused."""
        deadline = time.monotonic() + timeout
        while requests.get(f"{api.url}/health", timeout=10).status_code != 200:
            assert time.monotonic() < deadline, f"the API never saw a ready worker:\n{api.log()}"
            time.sleep(0.1)

    def live_workers(self) -> list[Worker]:
        """Workers whose process still runs."""
        return [worker for worker in self.workers if worker.process.poll() is None]

    def worker_of(self, job_id: str) -> Worker | None:
        """The live worker that holds `job_id`'s current run, as the job store records it."""
        # Read from Redis, not from heartbeats: those lag, and may still show a cancelled run.
        key = f"{self.settings['REDIS_PREFIX']}:job:{job_id}"
        status, worker_id = self.redis.hmget(key, "status", "worker")
        if status != b"running" or worker_id is None:
            return None
        matches = [w for w in self.live_workers() if w.id == worker_id.decode()]
        return matches[0] if matches else None

    def running_jobs(self) -> list[str]:
        """Ids of the jobs running now (sync requests' jobs too), as the job store records them."""
        prefix = self.settings["REDIS_PREFIX"]
        ids = [member.decode() for member in self.redis.smembers(f"{prefix}:active")]
        return [job_id for job_id in ids if self.worker_of(job_id) is not None]

    def stop(self) -> None:
        """End every process by pid."""
        for server in [*self.apis, *self.workers]:
            if server.process.poll() is None:
                server.stop()
        self.redis.close()


@contextlib.contextmanager
def one_of_each(settings: dict[str, object], redis_url: str, folder: Path) -> Iterator[Cluster]:
    """A cluster of one worker and one API process, ready to serve; stopped on the way out."""
    cluster = Cluster(settings, redis_url, folder)
    try:
        cluster.add_worker()
        cluster.wait_ready(cluster.add_api())
        yield cluster
    finally:
        cluster.stop()


def wait_job(api: str, job_id: str, statuses: set[str], timeout: float = 60.0) -> dict:
    """Poll a job on `api` until its status is one of `statuses`."""
    deadline = time.monotonic() + timeout
    state: dict = {}
    while time.monotonic() < deadline:
        state = requests.get(f"{api}/jobs/{job_id}", timeout=10).json()
        if state.get("status") in statuses:
            return state
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} stayed {state.get('status')}: {state}")
