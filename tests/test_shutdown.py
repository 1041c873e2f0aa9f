"""Graceful shutdown and worker health, with the real gunicorn process."""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import requests
from helpers import DEMO_SIZE, png_size

# Heavy enough on the demo model that several queue up behind each other.
SLOW = {"prompt": "slow", "width": 384, "height": 384, "steps": 16}


def wait_for_load(url: str, pending: int, timeout: float = 30) -> None:
    """Wait until the device has `pending` generations queued or running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        device = requests.get(f"{url}/health", timeout=5).json()["devices"][0]
        if device["queue_depth"] + device["running"] >= pending:
            return
        time.sleep(0.02)
    raise AssertionError(f"never saw {pending} generations pending")


def test_sigterm_answers_every_accepted_request_then_exits(start_server, tmp_path):
    jobs = str(tmp_path / "jobs")
    server = start_server(GRACEFUL_TIMEOUT=120, MAX_BATCH_SIZE=1, JOBS_DIR=jobs)
    server.wait_for_ping()
    server.wait_until_healthy()
    with ThreadPoolExecutor(4) as pool:
        futures = [
            pool.submit(
                requests.post, f"{server.url}/image/generate", json={**SLOW, "seed": i}, timeout=120
            )
            for i in range(4)
        ]
        wait_for_load(server.url, 4)
        # Queued last, so it is still waiting when gunicorn has answered every open request.
        job = requests.post(
            f"{server.url}/jobs", json={**SLOW, "steps": 48, "seed": 99}, timeout=10
        )
        assert job.status_code == 202
        wait_for_load(server.url, 5)
        os.kill(server.process.pid, signal.SIGTERM)  # the master, as an orchestrator does
        responses = [future.result() for future in futures]
    assert [r.status_code for r in responses] == [200] * 4
    assert all(png_size(r.content) == (384, 384) for r in responses)
    assert server.process.wait(timeout=120) == 0
    log = server.log()
    # The queued job had no open request; the worker finished it before exiting.
    assert f"job {job.json()['id']} succeeded" in log, log
    assert log.index("Handling signal: term") < log.index(f"job {job.json()['id']}")
    # ... and its images are there for the client after the restart.
    restarted = start_server(JOBS_DIR=jobs)
    restarted.wait_for_ping()
    state = requests.get(f"{restarted.url}/jobs/{job.json()['id']}", timeout=10).json()
    assert state["status"] == "succeeded"
    image = requests.get(restarted.url + state["images"][0], timeout=10)
    assert image.status_code == 200 and png_size(image.content) == (384, 384)
    assert "Traceback" not in log


def test_a_crashed_worker_is_replaced_and_serves_again(start_server):
    server = start_server()
    server.wait_for_ping()
    server.wait_until_healthy()
    (worker,) = server.worker_pids()
    os.kill(worker, signal.SIGKILL)  # a segfault or the OOM killer, as far as gunicorn knows
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pids = server.worker_pids()
        if pids and pids != [worker]:
            break
        time.sleep(0.05)
    (replacement,) = server.worker_pids()
    assert replacement != worker
    server.wait_for_ping()
    server.wait_until_healthy()
    response = requests.post(f"{server.url}/image/generate", json={"prompt": "back"}, timeout=60)
    assert response.status_code == 200 and png_size(response.content) == DEMO_SIZE
