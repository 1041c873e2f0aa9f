"""Event streams through real gunicorn: bounded listeners leave HTTP threads for everyone else,
and the real `openai` client reads OpenAI's image streaming."""

from __future__ import annotations

import base64
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest
import requests
from helpers import png_size
from sse_client import named, read_events

pytestmark = pytest.mark.slow

LISTENERS = 100
SLOW = {"prompt": "a red circle", "width": 64, "height": 64, "steps": 100}


@pytest.fixture(scope="module")
def server(base_settings, tmp_path_factory):
    """gunicorn at the default stream bounds (8 in all, 4 per job), steps slowed to 0.1 s."""
    from conftest import launch_server

    folder = tmp_path_factory.mktemp("events-server")
    process = launch_server(
        base_settings,
        folder / "server.log",
        JOBS_DIR=str(folder / "jobs"),
        MAX_BATCH_SIZE=1,
        T2I_TEST_STEP_SECONDS=0.1,
    )
    try:
        process.wait_for_ping()
        process.wait_until_healthy()
        yield process
    finally:
        process.stop()


def _listen(url: str) -> tuple[int, requests.Response]:
    response = requests.get(url, stream=True, timeout=30)
    return response.status_code, response


def test_a_hundred_listeners_do_not_stop_ping(server):
    jobs = [requests.post(f"{server.url}/jobs", json=SLOW, timeout=10).json() for _ in range(3)]
    urls = [f"{server.url}/jobs/{jobs[i % 3]['id']}/events" for i in range(LISTENERS)]
    with ThreadPoolExecutor(LISTENERS) as pool:
        answers = list(pool.map(_listen, urls))
    streaming = [response for status, response in answers if status == 200]
    refused = [response for status, response in answers if status == 503]
    try:
        assert len(streaming) == 8 and len(refused) == LISTENERS - 8  # SSE_MAX_LISTENERS
        assert all(response.headers["Retry-After"] == "5" for response in refused)
        assert all("event streams" in response.json()["error"] for response in refused)
        for response in streaming:  # really streaming: the first event came through
            events = read_events(response.iter_content(chunk_size=None))
            assert next(events).retry == 2000
            assert next(events).event in ("queued", "started", "progress")
        # Eight threads hold streams; the other HTTP_THREADS answer probes and polls at once.
        latencies = []
        for _ in range(20):
            began = time.perf_counter()
            assert requests.get(f"{server.url}/ping", timeout=5).text == "pong"
            latencies.append(time.perf_counter() - began)
        poll = requests.get(f"{server.url}/jobs/{jobs[0]['id']}", timeout=5)
        assert poll.status_code == 200
        print(
            f"\n/ping with {len(streaming)} streams open and {len(refused)} refused: "
            f"median {statistics.median(latencies) * 1000:.1f} ms, "
            f"max {max(latencies) * 1000:.1f} ms"
        )
        assert max(latencies) < 2.0
    finally:
        for _, response in answers:
            response.close()
    # Clients that leave free their places within a poll (not at the next heartbeat, 15 s on).
    deadline = time.monotonic() + 5
    while True:
        status, response = _listen(urls[0])
        response.close()
        if status == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert status == 200
    for job in jobs:
        requests.delete(f"{server.url}/jobs/{job['id']}", timeout=10)


def test_the_openai_client_streams_partial_images_then_the_image(server):
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="sk-local", max_retries=0)
    stream = client.images.generate(
        prompt="a red circle on a blue background",
        size="64x64",
        stream=True,
        partial_images=2,
        extra_body={"steps": 12, "seed": 3},
    )
    events = list(stream)
    kinds = [event.type for event in events]
    assert kinds[-1] == "image_generation.completed", kinds
    partials = [event for event in events if event.type == "image_generation.partial_image"]
    assert len(partials) == 2  # previews at steps 4 and 8 of 12, 0.4 s apart
    assert [event.partial_image_index for event in partials] == list(range(len(partials)))
    done = events[-1]
    assert done.size == "64x64" and done.output_format == "png" and done.background == "opaque"
    assert png_size(base64.b64decode(done.b64_json)) == (64, 64)
    # The same request, not streamed, draws the same image.
    plain = client.images.generate(
        prompt="a red circle on a blue background",
        size="64x64",
        extra_body={"steps": 12, "seed": 3},
    )
    assert plain.data[0].b64_json == done.b64_json


def test_openai_streaming_errors_reach_the_client(server):
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="sk-local", max_retries=0)
    with pytest.raises(openai.BadRequestError, match="partial_images"):
        client.images.generate(prompt="x", size="64x64", stream=True, partial_images=4)


def test_events_through_gunicorn_end_with_the_job(server):
    job = requests.post(f"{server.url}/jobs", json={**SLOW, "steps": 6}, timeout=10).json()
    with requests.get(f"{server.url}/jobs/{job['id']}/events", stream=True, timeout=30) as r:
        assert r.headers["Content-Type"].startswith("text/event-stream")
        assert r.headers["X-Accel-Buffering"] == "no"
        events = named(read_events(r.iter_content(chunk_size=None)))
    assert events[-1].event == "succeeded"
    assert [int(event.id) for event in events] == sorted(int(event.id) for event in events)
