"""Live previews, AUTOMATIC1111's progress and interrupts in the scale-out mode: a real
redis-server, a gunicorn API process (no torch) and a worker process with slow steps. The worker
writes previews to Redis; the API marks interrupts there; each API key sees only its own work."""

from __future__ import annotations

import base64
import io
import threading
import time
from collections.abc import Iterator

import pytest
import requests
import webuiapi
from live_server import wait_for
from PIL import Image

from backend.config import load_settings
from backend.controller.access import KeyRing
from backend.distributed.remote_engine import RemoteEngine
from backend.model.errors import JobNotFoundError
from bench.cluster import Cluster, one_of_each
from tests.redis_server import redis_server  # noqa: F401  (the fixture)

pytestmark = pytest.mark.slow

STEP_SECONDS = 0.1
STEPS = 60
KEY_A, KEY_B = "key-a-0123456789abcdef", "key-b-0123456789abcdef"


@pytest.fixture(scope="module")
def cluster(
    base_settings: dict[str, object],
    redis_server,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Cluster]:
    settings = {
        **base_settings,
        "T2I_TEST_STEP_SECONDS": STEP_SECONDS,
        "A1111_PREVIEW_EVERY": 1,
        "API_KEYS": f"{KEY_A},{KEY_B}",
        "HEARTBEAT_SECONDS": 0.3,
    }
    with one_of_each(settings, redis_server.url, tmp_path_factory.mktemp("cluster")) as cluster:
        yield cluster


def client(cluster: Cluster, key: str) -> webuiapi.WebUIApi:
    api = webuiapi.WebUIApi(baseurl=f"{cluster.apis[0].url}/sdapi/v1")
    api.session.headers["X-API-Key"] = key
    return api


def submit(cluster: Cluster, key: str, **body: object) -> str:
    response = requests.post(
        f"{cluster.apis[0].url}/jobs",
        json={"prompt": "a red circle", "width": 64, "height": 64, **body},
        headers={"X-API-Key": key},
        timeout=10,
    )
    assert response.status_code == 202, response.text
    return response.json()["id"]


def test_previews_reach_redis_and_the_job(cluster: Cluster):
    job_id = submit(cluster, KEY_A, steps=10, preview_every=2)
    engine = RemoteEngine(load_settings(cluster.settings))  # what /jobs/<id>/events reads
    owner = KeyRing([KEY_A]).identify(KEY_A)  # the owner a request with key A names
    try:
        preview = wait_for(lambda: engine.job_preview(job_id, owner))
        assert preview.step % 2 == 0 and preview.total_steps == 10
        assert Image.open(io.BytesIO(preview.data)).size == (64, 64)
        assert engine.job(job_id, owner).preview_step is not None
        with pytest.raises(JobNotFoundError):
            engine.job_preview(job_id, KEY_B)  # another key's job is not there for it
        assert finished(cluster, job_id)["preview_step"] in (2, 4, 6, 8)
        assert engine.job_preview(job_id, owner) is None  # deleted from Redis once it ended
    finally:
        engine.stop()
    assert finished(cluster, submit(cluster, KEY_A, steps=2))["preview_step"] is None


def finished(cluster: Cluster, job_id: str) -> dict:
    """Key A's job once it ended."""
    url = f"{cluster.apis[0].url}/jobs/{job_id}"

    def check() -> dict | None:
        job = requests.get(url, headers={"X-API-Key": KEY_A}, timeout=10).json()
        return job if job["status"] in ("succeeded", "failed", "cancelled") else None

    return wait_for(check)


def test_webuiapi_progress_and_interrupt(cluster: Cluster):
    a, b = client(cluster, KEY_A), client(cluster, KEY_B)
    out: dict = {}

    def run() -> None:
        out["result"] = a.txt2img(prompt="a red circle", width=64, height=64, steps=STEPS)

    thread = threading.Thread(target=run)
    thread.start()
    progress = wait_for(
        lambda: (p := a.get_progress())["state"]["sampling_step"] >= 2 and p["current_image"] and p
    )
    assert progress["state"]["job_count"] == 1 and progress["state"]["job"] == "txt2img"
    assert progress["state"]["sampling_steps"] == STEPS and 0 < progress["progress"] < 1
    assert Image.open(io.BytesIO(base64.b64decode(progress["current_image"]))).size == (64, 64)
    assert b.get_progress()["state"]["job_count"] == 0  # not b's
    b.interrupt()  # b has nothing running: a's generation goes on
    time.sleep(0.6)
    assert a.get_progress()["state"]["interrupted"] is False
    a.skip()
    thread.join(60)
    assert out["result"].image.size == (64, 64)
    assert out["result"].info["interrupted"] is True and out["result"].info["steps_run"] < STEPS


def test_an_interrupted_job_succeeds_with_its_images(cluster: Cluster):
    job_id = submit(cluster, KEY_A, steps=STEPS)
    a = client(cluster, KEY_A)
    wait_for(lambda: a.get_progress()["state"]["sampling_step"] >= 2)
    a.interrupt()
    assert a.get_progress()["state"]["interrupted"] in (True, False)  # it may have ended
    headers = {"X-API-Key": KEY_A}
    url = f"{cluster.apis[0].url}/jobs/{job_id}"
    job = wait_for(
        lambda: (
            (j := requests.get(url, headers=headers, timeout=10).json())["status"]
            in ("succeeded", "failed")
            and j
        )
    )
    assert job["status"] == "succeeded" and job["interrupted"] is True
    image = requests.get(f"{cluster.apis[0].url}{job['images'][0]}", headers=headers, timeout=10)
    assert Image.open(io.BytesIO(image.content)).size == (64, 64)
    assert 2 <= job["progress"]["step"] < STEPS  # where it stopped
