"""Event streams and OpenAI streaming in the scale-out mode: real redis-server, a gunicorn API
process that loads no model, and a worker process running the demo model."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import openai
import pytest
import requests
from helpers import png_size
from sse_client import Event, named, read_events

from bench.cluster import one_of_each, wait_job
from tests.redis_server import redis_server  # noqa: F401  (the fixture)

pytestmark = pytest.mark.slow

STEP_SECONDS = 0.05  # the worker's test seam: runs long enough to watch and cancel
JOB = {"prompt": "a red circle", "width": 64, "height": 64}


@pytest.fixture(scope="module")
def api(
    base_settings: dict[str, object],
    redis_server,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    """One worker and one API; the API's URL."""
    settings = {**base_settings, "MAX_BATCH_SIZE": 1, "T2I_TEST_STEP_SECONDS": STEP_SECONDS}
    with one_of_each(settings, redis_server.url, tmp_path_factory.mktemp("events")) as cluster:
        yield cluster.apis[0].url


def _events(api: str, job_id: str, **headers: str) -> list[Event]:
    with requests.get(f"{api}/jobs/{job_id}/events", headers=headers, stream=True, timeout=60) as r:
        assert r.status_code == 200, r.text
        return named(read_events(r.iter_content(chunk_size=None)))


def test_events_from_a_worker_reach_the_client_in_order(api):
    job = requests.post(f"{api}/jobs", json={**JOB, "steps": 20, "seed": 4}, timeout=10).json()
    events = _events(api, job["id"])
    names = [event.event for event in events]
    assert names[-1] == "succeeded" and names.count("started") <= 1, names
    assert "progress" in names
    ids = [int(event.id) for event in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    steps = [event.data["progress"]["step"] for event in events if event.event == "progress"]
    assert steps == sorted(set(steps)) and steps[-1] <= 20
    images = events[-1].data["images"]
    assert png_size(requests.get(api + images[0], timeout=10).content) == (64, 64)
    # Resumed from its first event: only newer ones.
    resumed = _events(api, job["id"], **{"Last-Event-ID": events[0].id})
    assert [event.event for event in resumed] == ["succeeded"]


def test_a_job_cancelled_on_a_worker_ends_its_stream(api):
    job = requests.post(f"{api}/jobs", json={**JOB, "steps": 100}, timeout=10).json()
    url = f"{api}/jobs/{job['id']}/events"
    names = []
    with requests.get(url, stream=True, timeout=60) as response:
        for event in read_events(response.iter_content(chunk_size=None)):
            if event.event is None:
                continue
            names.append(event.event)
            if event.event == "progress" and names.count("progress") == 1:
                requests.delete(f"{api}/jobs/{job['id']}", timeout=10)
    assert names[-1] == "cancelled", names
    assert wait_job(api, job["id"], {"cancelled"})["progress"]["step"] < 100


def test_the_openai_client_streams_from_a_worker(api):
    client = openai.OpenAI(base_url=f"{api}/v1", api_key="sk-local", max_retries=0)
    stream = client.images.generate(
        prompt="a red circle on a blue background",
        size="64x64",
        n=2,
        stream=True,
        partial_images=1,
        extra_body={"steps": 20, "seed": 8},
    )
    events = list(stream)
    completed = [event for event in events if event.type == "image_generation.completed"]
    assert len(completed) == 2
    partials = [event for event in events if event.type == "image_generation.partial_image"]
    assert len(partials) == 1  # at step 10 of 20: a grid of both images
    assert png_size(base64.b64decode(partials[0].b64_json))
    images = [base64.b64decode(event.b64_json) for event in completed]
    assert [png_size(image) for image in images] == [(64, 64), (64, 64)]
    assert images[0] != images[1]
