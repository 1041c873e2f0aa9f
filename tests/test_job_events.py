"""GET /jobs/<id>/events: a job's life pushed as Server-Sent Events, on the real demo pipeline."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator

import pytest
from helpers import png_size
from sse_client import Event, named, read_events

from backend.main import create_app
from backend.model.job_events import parse_event_id, state_events
from backend.model.job_record import JobRecord, JobStatus
from backend.model.types import GenerationRequest, OutputOptions

TINY = {"prompt": "a red circle", "width": 64, "height": 64}
KEY_A, KEY_B = "a" * 20, "b" * 20


class Steps:
    """A step hook that slows each step down by `seconds` (0: full speed)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __call__(self, step: int, total: int) -> None:
        time.sleep(self.seconds)


def _app(base_settings, tmp_path, seconds: float, **overrides):
    app = create_app({**base_settings, "JOBS_DIR": str(tmp_path), "MAX_BATCH_SIZE": 1, **overrides})
    engine = app.extensions["engine"]
    assert engine.wait_until_loaded(120)
    app.steps = Steps(seconds)
    engine.workers[0].step_hook = app.steps
    return app


@pytest.fixture(scope="module")
def app(base_settings, tmp_path_factory) -> Iterator[object]:
    """One app for the module: one device, batches of one, slow steps, short heartbeats."""
    application = _app(
        base_settings,
        tmp_path_factory.mktemp("jobs"),
        0.05,
        SSE_HEARTBEAT_SECONDS=0.3,
        SSE_MAX_LISTENERS=3,
        SSE_MAX_PER_JOB=2,
    )
    yield application
    application.extensions["engine"].stop(timeout=30)


@pytest.fixture
def api(app):
    client = app.test_client()
    yield client
    _drain(client)


def _drain(client) -> None:
    """Wait until the device is idle, so the next test's jobs start at once."""
    engine = client.application.extensions["engine"]
    deadline = time.monotonic() + 60
    while engine.workers[0].running or engine.workers[0].queued:
        assert time.monotonic() < deadline, "the device never went idle"
        time.sleep(0.05)


def _submit(client, **fields) -> dict:
    response = client.post("/jobs", json={**TINY, **fields})
    assert response.status_code == 202, response.get_json()
    return response.get_json()


def _open(client, job_id: str, **headers):
    return client.get(f"/jobs/{job_id}/events", headers=headers, buffered=False)


def _events(response) -> Iterator[Event]:
    return read_events(response.response)


def _all(client, job_id: str, **headers) -> list[Event]:
    response = _open(client, job_id, **headers)
    assert response.status_code == 200, response.get_json()
    try:
        return list(_events(response))
    finally:
        response.close()


def test_event_ids_grow_over_a_whole_life_in_either_mode():
    request = GenerationRequest("x", "", 64, 64, 4, 5.0, seed=1)
    job = JobRecord("j", None, JobStatus.QUEUED, request, OutputOptions(), 0.0, None)
    states = [
        job.with_changes(queue_position=3),
        job.with_changes(queue_position=0),
        job.with_changes(attempt=1, queue_position=0),  # celery: claimed, not yet begun
        job.with_changes(status=JobStatus.RUNNING, attempt=1),
        job.with_changes(status=JobStatus.RUNNING, attempt=1, step=1),
        job.with_changes(status=JobStatus.RUNNING, attempt=1, step=3),
        job.with_changes(status=JobStatus.RUNNING, attempt=2, step=1),  # after a crash
        job.with_changes(status=JobStatus.SUCCEEDED, attempt=2, step=4),
    ]
    # Each state's newest event is newer than the last state's: a stream sends it.
    newest = [max(event.id for event in state_events(state)) for state in states]
    assert newest == sorted(newest) and len(set(newest)) == len(newest)
    for status in (JobStatus.CANCELLED, JobStatus.FAILED):
        final = state_events(job.with_changes(status=status, attempt=1))[0]
        assert final.final and final.id > newest[5]
    assert [parse_event_id(v) for v in ("12", " 7 ", "x", "", None, "²", "9" * 19)] == [
        12,
        7,
        None,
        None,
        None,
        None,
        None,
    ]


def test_events_follow_a_job_from_the_queue_to_its_images(api):
    blocker = _submit(api, steps=6)
    job = _submit(api, steps=4, seed=5)
    response = _open(api, job["id"])
    assert response.status_code == 200
    assert response.mimetype == "text/event-stream"
    assert response.headers["Cache-Control"] == "no-store"
    stream = list(_events(response))
    assert stream[0].retry == 2000  # the reconnection hint comes first
    events = named(stream)
    names = [event.event for event in events]
    assert names[0] == "queued" and names[-1] == "succeeded", names
    assert "started" in names and names.count("started") == 1
    assert names.index("started") < names.index("progress"), names
    ids = [int(event.id) for event in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)  # ordered, each once
    queued = events[0].data
    assert queued["status"] == "queued" and queued["queue_position"] == 0
    assert queued["id"] == job["id"] and queued["seeds"] == [5]
    progress = [event.data["progress"]["step"] for event in events if event.event == "progress"]
    assert progress == sorted(set(progress)) and all(1 <= step <= 4 for step in progress)
    done = events[-1].data
    assert done["status"] == "succeeded" and done["images"] == [f"/jobs/{job['id']}/images/0"]
    assert png_size(api.get(done["images"][0]).data) == (64, 64)
    assert api.get(f"/jobs/{blocker['id']}").get_json()["status"] == "succeeded"


def test_previews_arrive_as_small_pngs_between_the_steps(api):
    job = _submit(api, steps=8, preview_every=2)
    events = named(_all(api, job["id"]))
    previews = [event for event in events if event.event == "preview"]
    assert previews, [event.event for event in events]
    for event in previews:
        data = event.data
        assert data["step"] % 2 == 0 and data["step"] < data["total_steps"] == 8
        prefix = "data:image/png;base64,"
        assert data["image"].startswith(prefix)
        size = png_size(base64.b64decode(data["image"].removeprefix(prefix)))
        assert size == (data["width"], data["height"]) and max(size) <= 256
    ids = [int(event.id) for event in events]
    assert ids == sorted(ids) and events[-1].event == "succeeded"
    # A job that did not ask for previews gets none.
    plain = _submit(api, steps=8)
    assert "preview" not in [event.event for event in named(_all(api, plain["id"]))]


def test_last_event_id_resumes_with_only_newer_events(api):
    job = _submit(api, steps=12)
    response = _open(api, job["id"])
    seen = []
    for event in _events(response):  # leave mid-run, after the first progress event
        seen.append(event)
        if event.event == "progress":
            break
    response.close()
    last = seen[-1].id
    resumed = named(_all(api, job["id"], **{"Last-Event-ID": last}))
    assert [event.event for event in resumed if event.event == "started"] == []
    assert all(int(event.id) > int(last) for event in resumed)
    assert resumed[-1].event == "succeeded"
    # Once it ended: only the final event is newer than `started`, and nothing after the end.
    started = next(event.id for event in seen if event.event == "started")
    assert [e.event for e in named(_all(api, job["id"], **{"Last-Event-ID": started}))] == [
        "succeeded"
    ]
    final = resumed[-1].id
    assert named(_all(api, job["id"], **{"Last-Event-ID": final})) == []
    by_query = api.get(f"/jobs/{job['id']}/events?last_event_id={final}")
    assert named(read_events(by_query.response)) == []
    # An id that is not ours is ignored: the job's state is told from the start.
    assert [e.event for e in named(_all(api, job["id"], **{"Last-Event-ID": "abc"}))] == [
        "succeeded"
    ]


def test_a_quiet_stream_sends_heartbeats(api):
    blocker = _submit(api, steps=12)
    job = _submit(api, steps=2)
    response = _open(api, job["id"])
    kinds = []
    for event in _events(response):
        kinds.append("ping" if event.comment == "ping" else event.event)
        if event.event == "started":
            break
    response.close()
    # Queued at position 0 behind a job of 12 slow steps, with SSE_HEARTBEAT_SECONDS=0.3.
    assert kinds[1] == "queued" and "ping" in kinds[2:], kinds
    api.delete(f"/jobs/{blocker['id']}")


def test_cancelling_mid_stream_ends_it_with_cancelled(api):
    job = _submit(api, steps=40)
    response = _open(api, job["id"])
    names = []
    for event in _events(response):
        if event.event is None:
            continue
        names.append(event.event)
        if event.event == "progress" and names.count("progress") == 1:
            assert api.delete(f"/jobs/{job['id']}").status_code == 200
        last = event
    response.close()
    assert names[-1] == "cancelled" and last.data["status"] == "cancelled"
    assert last.data["progress"]["step"] < 40


def test_listeners_are_bounded_per_job_and_in_all(app, api):
    blocker = _submit(api, steps=40)
    first, second = _submit(api, steps=1), _submit(api, steps=1)
    open_ = [_open(api, first["id"]), _open(api, first["id"])]
    assert [response.status_code for response in open_] == [200, 200]
    refused = _open(api, first["id"])  # SSE_MAX_PER_JOB=2
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "5"
    assert "at most 3 in all and 2 per job" in refused.get_json()["error"]
    open_.append(_open(api, second["id"]))
    assert open_[-1].status_code == 200
    assert _open(api, second["id"]).status_code == 503  # SSE_MAX_LISTENERS=3
    assert app.extensions["event_listeners"].open == 3
    open_.pop(0).close()  # a listener that leaves frees its place
    open_.append(_open(api, second["id"]))
    assert open_[-1].status_code == 200
    for response in open_:
        response.close()
    assert app.extensions["event_listeners"].open == 0
    for job in (blocker, first, second):
        api.delete(f"/jobs/{job['id']}")


def test_unknown_jobs_are_a_json_404_before_any_stream(api):
    response = api.get("/jobs/no-such-job/events")
    assert response.status_code == 404
    assert response.get_json() == {"error": "No job with id 'no-such-job'."}


@pytest.fixture(scope="module")
def short_app(base_settings, tmp_path_factory) -> Iterator[object]:
    """Streams that end after a second, jobs that fail after two, and API keys."""
    application = _app(
        base_settings,
        tmp_path_factory.mktemp("short"),
        0.2,
        SSE_MAX_SECONDS=1,
        JOB_TIMEOUT_SECONDS=2,
        API_KEYS=f"{KEY_A},{KEY_B}",
    )
    yield application
    application.extensions["engine"].stop(timeout=30)


def test_a_failed_job_ends_with_the_error_shape_and_the_job(short_app):
    api = short_app.test_client()
    key = {"Authorization": f"Bearer {KEY_A}"}
    job = api.post("/jobs", json={**TINY, "steps": 50}, headers=key).get_json()
    # Streams last SSE_MAX_SECONDS=1: the client reconnects with its last id until the end.
    last, events, reconnects = None, [], 0
    while not events or events[-1].event not in ("succeeded", "failed", "cancelled"):
        headers = {**key, **({"Last-Event-ID": last} if last else {})}
        stream = named(_all(api, job["id"], **headers))
        assert all(int(event.id) > int(last or -1) for event in stream)
        events += stream
        last = events[-1].id if events else last
        reconnects += 1
        assert reconnects < 30
    assert reconnects >= 2  # a stream did end before the job did
    assert [e.event for e in events].count("started") <= 1  # once, if it began before its deadline
    failed = events[-1]
    assert failed.event == "failed"
    assert "deadline" in failed.data["error"] and failed.data["details"] == {"code": "timeout"}
    assert failed.data["job"]["status"] == "failed" and failed.data["job"]["id"] == job["id"]


def test_another_keys_job_is_not_streamed(short_app):
    api = short_app.test_client()
    job = api.post(
        "/jobs", json={**TINY, "steps": 1}, headers={"Authorization": f"Bearer {KEY_A}"}
    ).get_json()
    other = api.get(f"/jobs/{job['id']}/events", headers={"Authorization": f"Bearer {KEY_B}"})
    assert other.status_code == 404
    assert api.get(f"/jobs/{job['id']}/events").status_code == 401
