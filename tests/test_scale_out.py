"""The scale-out mode with real parts: redis-server, two gunicorn APIs, two worker processes.

No fakeredis, no eager Celery, no mocks: the workers are `python -m backend.distributed.worker`
subprocesses running the demo model on the CPU, and the faults are real signals.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from bench.cluster import Cluster, Worker, wait_job
from tests.redis_server import redis_server  # noqa: F401  (the fixture)

# Slow steps (the worker's test seam) make runs long enough to kill, pause or cancel mid-run.
STEP_SECONDS = 0.05
LEASE_SECONDS = 1.5
HEARTBEAT_SECONDS = 0.3
FAST = {"width": 64, "height": 64, "steps": 2}
SLOW = {"width": 64, "height": 64, "steps": 60}  # about 3 s


def _url(server: object) -> str:
    return server.url  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def cluster(
    base_settings: dict[str, object],
    redis_server,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Cluster]:
    """Two APIs and two workers; MAX_BATCH_SIZE=1 so that images compare byte for byte."""
    settings = {
        **base_settings,
        "MAX_BATCH_SIZE": 1,
        "MAX_QUEUE_SIZE": 2,
        "LEASE_SECONDS": LEASE_SECONDS,
        "HEARTBEAT_SECONDS": HEARTBEAT_SECONDS,
        "T2I_TEST_STEP_SECONDS": STEP_SECONDS,
    }
    cluster = Cluster(settings, redis_server.url, tmp_path_factory.mktemp("cluster"))
    try:
        cluster.add_worker()
        cluster.add_worker()
        cluster.add_api()
        cluster.add_api()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def two_workers(cluster: Cluster) -> Cluster:
    """The cluster with two live workers (a test before may have killed one)."""
    while len(cluster.live_workers()) < 2:
        cluster.add_worker()
    # Admission counts heartbeats, and a loading worker's offers no places: wait for two ready.
    _wait_health(
        cluster,
        lambda body: [d["status"] for d in body["devices"]] == ["healthy", "healthy"],
    )
    return cluster


def _health(cluster: Cluster, index: int = 0) -> requests.Response:
    return requests.get(f"{_url(cluster.apis[index])}/health", timeout=10)


def _wait_health(cluster: Cluster, check, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    body: dict = {}
    while time.monotonic() < deadline:
        body = _health(cluster).json()
        if check(body):
            return body
        time.sleep(0.1)
    raise AssertionError(f"/health never matched: {body}")


def _submit(api: str, **body: object) -> dict:
    response = requests.post(f"{api}/jobs", json={"prompt": "a lighthouse", **body}, timeout=10)
    assert response.status_code == 202, response.text
    return response.json()


def _running_on(cluster: Cluster, job_id: str, timeout: float = 30.0) -> Worker:
    """The worker process running `job_id`, once it runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        worker = cluster.worker_of(job_id)
        if worker is not None:
            return worker
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} never ran on a live worker")


def test_the_api_imports_no_torch_and_answers_health_from_the_workers(two_workers):
    body = _health(two_workers).json()
    assert _health(two_workers).status_code == 200
    assert body["status"] == "healthy" and len(body["devices"]) == 2
    assert {d["worker"] for d in body["devices"]} == {w.id for w in two_workers.live_workers()}
    assert all(d["loaded_models"] == ["demo"] for d in body["devices"])
    for api in two_workers.apis:  # gunicorn's worker process: no torch in its memory maps
        maps = "".join(Path(f"/proc/{pid}/maps").read_text() for pid in api.worker_pids())
        assert "libtorch" not in maps


def test_celery_mode_draws_the_same_bytes_as_one_process(two_workers, start_server):
    requests_ = [{"prompt": "a red fox", "seed": 11}, {"prompt": "a blue bird", "seed": 12, **FAST}]
    # The same torch thread count as the workers: float sums depend on how they are split.
    local = start_server(MAX_BATCH_SIZE=1, OMP_NUM_THREADS=1)
    local.wait_for_ping()
    local.wait_until_healthy()
    for body in requests_:
        expected = requests.post(f"{local.url}/image/generate", json=body, timeout=60)
        got = requests.post(f"{_url(two_workers.apis[1])}/image/generate", json=body, timeout=60)
        assert got.status_code == expected.status_code == 200, got.text
        assert got.content == expected.content
        assert got.headers["X-Seeds"] == expected.headers["X-Seeds"]


def test_a_job_submitted_on_one_api_is_polled_fetched_and_cancelled_on_another(two_workers):
    a, b = (_url(api) for api in two_workers.apis)
    job = _submit(a, seed=5, **FAST)
    done = wait_job(b, job["id"], {"succeeded"})
    assert done["progress"]["step"] == done["progress"]["total"] == 2
    image = requests.get(f"{b}{done['images'][0]}", timeout=10)
    assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
    slow = _submit(a, **SLOW)
    running = wait_job(b, slow["id"], {"running"})
    started = time.monotonic()
    while running["progress"]["step"] < 3:  # progress comes from the worker running it
        running = requests.get(f"{b}/jobs/{slow['id']}", timeout=10).json()
    cancelled = requests.delete(f"{b}/jobs/{slow['id']}", timeout=10).json()
    assert cancelled["status"] == "cancelled"
    step_at_cancel = requests.get(f"{a}/jobs/{slow['id']}", timeout=10).json()["progress"]["step"]
    _wait_health(two_workers, lambda body: not any(d["running"] for d in body["devices"]))
    assert time.monotonic() - started < 10  # the run stopped, not 60 steps later
    assert step_at_cancel < SLOW["steps"]
    assert requests.get(f"{a}/jobs/nope{slow['id'][4:]}", timeout=10).status_code == 404


def test_load_spreads_over_both_workers(two_workers):
    before = {d["worker"]: d["served"] for d in _health(two_workers).json()["devices"]}
    jobs = [_submit(_url(two_workers.apis[i % 2]), steps=20, width=64, height=64) for i in range(6)]
    for job in jobs:
        wait_job(_url(two_workers.apis[0]), job["id"], {"succeeded"})
    after = {d["worker"]: d["served"] for d in _health(two_workers).json()["devices"]}
    assert all(after[worker] > before.get(worker, 0) for worker in after), (before, after)


def test_a_full_cluster_refuses_at_once_with_retry_after(two_workers):
    api = _url(two_workers.apis[0])
    accepted, refused = [], None
    for _ in range(20):  # capacity: 2 workers x (MAX_QUEUE_SIZE 2 + MAX_BATCH_SIZE 1) = 6
        started = time.perf_counter()
        response = requests.post(f"{api}/jobs", json={"prompt": "busy", **SLOW}, timeout=10)
        seconds = time.perf_counter() - started
        if response.status_code == 503:
            refused = (response, seconds)
            break
        assert response.status_code == 202, response.text
        accepted.append(response.json()["id"])
    assert refused is not None and len(accepted) == 6
    response, seconds = refused
    assert int(response.headers["Retry-After"]) >= 1 and "busy" in response.json()["error"]
    assert seconds < 0.5
    for job_id in accepted:
        requests.delete(f"{api}/jobs/{job_id}", timeout=10)


def test_a_killed_workers_job_finishes_on_the_other_with_the_same_image(two_workers):
    api = _url(two_workers.apis[0])
    body = {"seed": 99, **SLOW}
    clean = requests.post(
        f"{api}/image/generate", json={"prompt": "a lighthouse", **body}, timeout=60
    )
    job = _submit(api, **body)
    victim = _running_on(two_workers, job["id"])
    killed = time.monotonic()
    victim.kill()
    done = wait_job(api, job["id"], {"succeeded", "failed"}, timeout=60)
    assert done["status"] == "succeeded" and done["attempt"] == 2, done
    image = requests.get(f"{api}{done['images'][0]}", timeout=10).content
    assert image == clean.content
    # The dead worker leaves /health once its heartbeat expires.
    _wait_health(two_workers, lambda b: victim.id not in {d["worker"] for d in b["devices"]})
    assert time.monotonic() - killed < 30


def test_a_sync_request_whose_worker_dies_still_gets_its_image(two_workers):
    api = _url(two_workers.apis[1])
    body = {"prompt": "a harbour", "seed": 3, **SLOW}
    answers: list[requests.Response] = []
    waiting = threading.Thread(
        target=lambda: answers.append(requests.post(f"{api}/image/generate", json=body, timeout=90))
    )
    waiting.start()
    deadline = time.monotonic() + 30
    while not (running := two_workers.running_jobs()) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(running) == 1, running
    two_workers.worker_of(running[0]).kill()
    waiting.join(90)
    (answer,) = answers
    assert answer.status_code == 200, answer.text
    again = requests.post(f"{api}/image/generate", json=body, timeout=60)
    assert answer.content == again.content  # the retried run drew what a clean one draws


def test_a_paused_worker_cannot_overwrite_the_newer_result(two_workers):
    api = _url(two_workers.apis[1])
    job = _submit(api, seed=7, **SLOW)
    paused = _running_on(two_workers, job["id"])
    paused.signal(signal.SIGSTOP)
    try:
        done = wait_job(api, job["id"], {"succeeded", "failed"}, timeout=60)
    finally:
        paused.signal(signal.SIGCONT)
    assert done["status"] == "succeeded" and done["attempt"] == 2, done
    image = requests.get(f"{api}{done['images'][0]}", timeout=10).content
    # The woken worker finishes or drops its stale run; then nothing it wrote may show.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        health = requests.get(f"{paused.url}/health", timeout=5).json()
        if health["running"] == health["queued"] == 0:
            break
        time.sleep(0.1)
    time.sleep(2 * HEARTBEAT_SECONDS)
    after = requests.get(f"{api}/jobs/{job['id']}", timeout=10).json()
    assert after["attempt"] == 2 and after["status"] == "succeeded"
    assert requests.get(f"{api}{done['images'][0]}", timeout=10).content == image


def test_sigterm_finishes_the_running_job_and_hands_on_the_rest(two_workers):
    api = _url(two_workers.apis[0])
    first = _submit(api, seed=0, **SLOW)
    leaving = _running_on(two_workers, first["id"])
    jobs = [first, *(_submit(api, seed=i, **SLOW) for i in range(1, 4))]
    leaving.signal(signal.SIGTERM)
    states = [wait_job(api, job["id"], {"succeeded", "failed", "cancelled"}, 90) for job in jobs]
    assert [s["status"] for s in states] == ["succeeded"] * 4, states
    assert leaving.process.wait(30) == 0
    assert "handed back" in leaving.log() or all(s["attempt"] == 1 for s in states)


@pytest.fixture(scope="module")
def batching_cluster(
    base_settings: dict[str, object],
    redis_server,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Cluster]:
    """One API and one worker that waits 0.5 s for company to batch with."""
    settings = {**base_settings, "MAX_BATCH_SIZE": 4, "BATCH_WAIT_MS": 500}
    cluster = Cluster(settings, redis_server.url, tmp_path_factory.mktemp("batching"))
    try:
        cluster.add_worker()
        cluster.add_api()
        # Admission counts heartbeats: until one says "ready" the API offers no places.
        _wait_health(cluster, lambda body: body["status"] == "healthy")
        yield cluster
    finally:
        cluster.stop()


def test_four_compatible_jobs_run_as_one_batch_in_one_worker(batching_cluster):
    api = _url(batching_cluster.apis[0])
    answers: list[requests.Response] = []

    def submit(seed: int) -> None:
        body = {"prompt": "a lighthouse", "seed": seed, **FAST}
        answers.append(requests.post(f"{api}/jobs", json=body, timeout=10))

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [a.status_code for a in answers] == [202] * 4, [a.text for a in answers]
    ids = [a.json()["id"] for a in answers]
    states = [wait_job(api, job_id, {"succeeded"}) for job_id in ids]
    assert [state["batch_size"] for state in states] == [4, 4, 4, 4]
