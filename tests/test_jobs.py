"""The jobs API: submit now (202), poll progress, fetch images, cancel only what you name."""

from __future__ import annotations

import json
import threading
import time

import pytest
from helpers import assert_nearly_identical, png_size

TINY = {"width": 64, "height": 64, "steps": 3}
KEY_A, KEY_B = "a" * 20, "b" * 20


def wait_for(client, job_id: str, statuses: set[str], timeout: float = 60, **kwargs) -> dict:
    """Poll a job until its status is one of `statuses`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = client.get(f"/jobs/{job_id}", **kwargs).get_json()
        if state["status"] in statuses:
            return state
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} stayed {state['status']}")


class Hold:
    """A step hook that records steps and, while `held` is set, slows each one down."""

    def __init__(self, seconds: float = 0.1) -> None:
        self.seconds = seconds
        self.steps: list[int] = []
        self.held = threading.Event()
        self.held.set()

    def __call__(self, step: int, total: int) -> None:
        self.steps.append(step)
        if self.held.is_set():
            time.sleep(self.seconds)


@pytest.fixture
def jobs_app(make_app):
    """An app whose device is slowed by a step hook (`app.hold`)."""
    app = make_app(MAX_BATCH_SIZE=1)
    app.hold = Hold()
    app.extensions["engine"].workers[0].step_hook = app.hold
    return app


def test_submit_poll_and_fetch(jobs_app, client):
    api = jobs_app.test_client()
    body = {"prompt": "a harbour", "seed": 7, "num_images": 2, **TINY, "steps": 5}
    response = api.post("/jobs", json=body)
    assert response.status_code == 202
    job = response.get_json()
    assert response.headers["Location"] == f"/jobs/{job['id']}"
    assert job["status"] in ("queued", "running")
    assert job["queue_position"] in (0, None)
    assert job["seeds"] == [7, 8] and job["model"] == "demo"
    # Progress comes from the step callback while it runs.
    seen = set()
    state = job
    while state["status"] not in ("succeeded", "failed"):
        state = api.get(response.headers["Location"]).get_json()
        seen.add((state["status"], state["progress"]["step"]))
        time.sleep(0.02)
    assert state["status"] == "succeeded", state
    assert any(status == "running" and 0 < step < 5 for status, step in seen), seen
    assert state["progress"] == {"step": 5, "total": 5, "fraction": 1.0}
    assert state["images"] == [f"/jobs/{job['id']}/images/0", f"/jobs/{job['id']}/images/1"]
    assert state["generation_seconds"] > 0 and state["error"] is None
    assert state["expires_at"] is not None
    first = api.get(f"/jobs/{job['id']}/image")
    assert first.status_code == 200 and first.mimetype == "image/png"
    assert first.headers["X-Seed"] == "7" and png_size(first.data) == (64, 64)
    assert api.get(state["images"][0]).data == first.data
    second = api.get(state["images"][1])
    assert second.status_code == 200 and second.data != first.data
    missing = api.get(f"/jobs/{job['id']}/images/2")
    assert missing.status_code == 404 and "2 image(s)" in missing.get_json()["error"]
    # The same request through the synchronous endpoint gives the same picture.
    jobs_app.hold.held.clear()
    direct = client.post("/image/generate", json={**body, "num_images": 1})
    assert_nearly_identical(direct.data, first.data)  # image 0 of 2 against a lone image


def test_ids_are_unguessable_and_unknown_ones_are_404(jobs_app):
    api = jobs_app.test_client()
    ids = {api.post("/jobs", json={"prompt": "x", **TINY}).get_json()["id"] for _ in range(3)}
    assert len(ids) == 3 and all(len(job_id) >= 22 for job_id in ids)
    for path in ("/jobs/nope", "/jobs/nope/image", "/jobs/nope/images/0"):
        response = api.get(path)
        assert response.status_code == 404 and "error" in response.get_json()
    assert api.delete("/jobs/nope").status_code == 404


def test_images_of_an_unfinished_job_are_a_409(jobs_app):
    api = jobs_app.test_client()
    jobs_app.hold.seconds = 0.5
    job = api.post("/jobs", json={"prompt": "x", **TINY}).get_json()
    response = api.get(f"/jobs/{job['id']}/image")
    assert response.status_code == 409
    assert "queued" in response.get_json()["error"] or "running" in response.get_json()["error"]


def test_cancelling_a_queued_job_frees_its_place_and_it_never_runs(jobs_app):
    api = jobs_app.test_client()
    jobs_app.hold.seconds = 0.3
    running = api.post("/jobs", json={"prompt": "first", **TINY}).get_json()
    wait_for(api, running["id"], {"running"})
    queued = api.post("/jobs", json={"prompt": "second", **TINY}).get_json()
    assert (queued["status"], queued["queue_position"]) == ("queued", 0)
    cancelled = api.delete(f"/jobs/{queued['id']}")
    assert cancelled.status_code == 200 and cancelled.get_json()["status"] == "cancelled"
    assert jobs_app.extensions["engine"].workers[0].queued == 0
    assert wait_for(api, running["id"], {"succeeded"})["status"] == "succeeded"
    time.sleep(0.3)
    state = api.get(f"/jobs/{queued['id']}").get_json()
    assert state["status"] == "cancelled" and state["generation_seconds"] == 0
    assert api.get(f"/jobs/{queued['id']}/image").status_code == 409


def test_cancelling_a_running_job_stops_it_and_frees_the_device(jobs_app):
    api = jobs_app.test_client()
    jobs_app.hold.seconds = 0.1
    job = api.post("/jobs", json={"prompt": "long", **TINY, "steps": 60}).get_json()
    wait_for(api, job["id"], {"running"})
    while not jobs_app.hold.steps:
        time.sleep(0.01)
    assert api.delete(f"/jobs/{job['id']}").get_json()["status"] == "cancelled"
    worker = jobs_app.extensions["engine"].workers[0]
    deadline = time.monotonic() + 5
    while worker.running and time.monotonic() < deadline:
        time.sleep(0.01)
    assert worker.running == 0
    assert len(jobs_app.hold.steps) < 10  # interrupted, not run to step 60
    nxt = api.post("/jobs", json={"prompt": "next", **TINY}).get_json()
    assert wait_for(api, nxt["id"], {"succeeded", "failed"})["status"] == "succeeded"


def test_cancelling_one_job_of_a_batch_leaves_the_others(make_app):
    app = make_app(MAX_BATCH_SIZE=4, BATCH_WAIT_MS=500)
    hold = Hold(0.2)
    app.extensions["engine"].workers[0].step_hook = hold
    api = app.test_client()
    first = api.post("/jobs", json={"prompt": "one", "seed": 1, **TINY, "steps": 6}).get_json()
    second = api.post("/jobs", json={"prompt": "two", "seed": 2, **TINY, "steps": 6}).get_json()
    wait_for(api, first["id"], {"running"})
    assert api.delete(f"/jobs/{first['id']}").get_json()["status"] == "cancelled"
    done = wait_for(api, second["id"], {"succeeded", "failed", "cancelled"})
    assert done["status"] == "succeeded" and done["batch_size"] == 2
    assert len(hold.steps) == 6  # the batch ran on for the job still wanted
    assert api.get(f"/jobs/{first['id']}").get_json()["status"] == "cancelled"


def test_a_deleted_finished_job_is_gone(jobs_app):
    api = jobs_app.test_client()
    jobs_app.hold.held.clear()
    job = api.post("/jobs", json={"prompt": "x", **TINY}).get_json()
    wait_for(api, job["id"], {"succeeded"})
    assert api.delete(f"/jobs/{job['id']}").status_code == 200
    gone = api.get(f"/jobs/{job['id']}")
    assert gone.status_code == 410 and "deleted" in gone.get_json()["error"]


def test_finished_jobs_expire_after_their_ttl(make_app):
    api = make_app(JOB_TTL_SECONDS=1).test_client()
    job = api.post("/jobs", json={"prompt": "x", **TINY}).get_json()
    wait_for(api, job["id"], {"succeeded"})
    assert api.get(f"/jobs/{job['id']}/image").status_code == 200
    time.sleep(1.1)
    gone = api.get(f"/jobs/{job['id']}/image")
    assert gone.status_code == 410 and "JOB_TTL_SECONDS" in gone.get_json()["error"]


def test_a_job_past_its_deadline_fails_and_says_why(make_app):
    app = make_app(JOB_TIMEOUT_SECONDS=1)
    app.extensions["engine"].workers[0].step_hook = lambda step, total: time.sleep(0.2)
    api = app.test_client()
    job = api.post("/jobs", json={"prompt": "x", **TINY, "steps": 50}).get_json()
    state = wait_for(api, job["id"], {"failed", "succeeded"}, timeout=10)
    assert state["status"] == "failed" and "deadline" in state["error"]
    assert state["progress"]["step"] < 50


def test_a_full_queue_refuses_jobs_too(make_app):
    app = make_app(MAX_QUEUE_SIZE=1, MAX_BATCH_SIZE=1)
    hold = Hold(0.3)
    app.extensions["engine"].workers[0].step_hook = hold
    api = app.test_client()
    statuses = [api.post("/jobs", json={"prompt": "x", **TINY}).status_code for _ in range(4)]
    assert statuses[:2] == [202, 202] and statuses[2:] == [503, 503]
    refused = api.post("/jobs", json={"prompt": "x", **TINY})
    assert int(refused.headers["Retry-After"]) >= 1


def test_invalid_job_bodies_are_refused_like_generate(make_app):
    api = make_app().test_client()
    response = api.post("/jobs", json={"prompt": "x", "width": 100})
    assert response.status_code == 400 and "width" in response.get_json()["details"]


def test_with_api_keys_a_job_is_visible_only_to_its_key(make_app):
    api = make_app(API_KEYS=f"{KEY_A},{KEY_B}").test_client()
    as_a = {"X-API-Key": KEY_A}
    as_b = {"Authorization": f"Bearer {KEY_B}"}
    job = api.post("/jobs", json={"prompt": "private", **TINY}, headers=as_a).get_json()
    wait_for(api, job["id"], {"succeeded"}, headers=as_a)
    for method, path in (("get", ""), ("get", "/image"), ("delete", "")):
        response = getattr(api, method)(f"/jobs/{job['id']}{path}", headers=as_b)
        assert response.status_code == 404, (method, path)
    assert api.get(f"/jobs/{job['id']}/image", headers=as_a).status_code == 200


def test_finished_jobs_outlive_a_restart(make_app, tmp_path):
    folder = str(tmp_path / "kept")
    before = make_app(JOBS_DIR=folder)
    api = before.test_client()
    job = api.post("/jobs", json={"prompt": "kept", "seed": 5, "num_images": 2, **TINY}).json
    state = wait_for(api, job["id"], {"succeeded"})
    images = [api.get(url).data for url in state["images"]]
    before.extensions["engine"].stop(timeout=30)

    after = make_app(JOBS_DIR=folder).test_client()
    again = after.get(f"/jobs/{job['id']}").get_json()
    for field in ("status", "seeds", "parameters", "images", "created_at", "expires_at"):
        assert again[field] == state[field], field
    assert [after.get(url).data for url in again["images"]] == images
    assert after.get(f"/jobs/{job['id']}/image").headers["X-Seed"] == "5"
    assert after.delete(f"/jobs/{job['id']}").status_code == 200
    assert after.get(f"/jobs/{job['id']}").status_code == 410
    left = [path.name for path in (tmp_path / "kept").iterdir()]
    assert left == ["owners"]  # its record and images are gone; the live servers' locks stay


def test_after_a_restart_a_job_is_still_visible_only_to_its_key(make_app, tmp_path):
    keys = {"JOBS_DIR": str(tmp_path / "kept"), "API_KEYS": f"{KEY_A},{KEY_B}"}
    first = make_app(**keys)
    as_a = {"X-API-Key": KEY_A}
    job = first.test_client().post("/jobs", json={"prompt": "x", **TINY}, headers=as_a).json
    wait_for(first.test_client(), job["id"], {"succeeded"}, headers=as_a)
    first.extensions["engine"].stop(timeout=30)
    api = make_app(**keys).test_client()
    assert api.get(f"/jobs/{job['id']}", headers={"X-API-Key": KEY_B}).status_code == 404
    assert api.get(f"/jobs/{job['id']}", headers=as_a).status_code == 200


def test_job_ids_never_reach_the_file_system_unchecked(make_app, tmp_path):
    api = make_app(JOBS_DIR=str(tmp_path / "kept")).test_client()
    (tmp_path / "secret.json").write_text('{"status": "succeeded"}')
    for job_id in ("..%2Fsecret", "../secret", "secret", "%2e%2e%2fsecret", "a" * 300):
        assert api.get(f"/jobs/{job_id}").status_code == 404, job_id


def test_a_tampered_record_cannot_point_outside_the_jobs_folder(make_app, tmp_path):
    folder = tmp_path / "kept"
    api = make_app(JOBS_DIR=str(folder)).test_client()
    job = api.post("/jobs", json={"prompt": "x", **TINY}).get_json()
    wait_for(api, job["id"], {"succeeded"})
    (tmp_path / "outside.png").write_bytes(b"not yours")
    record_path = folder / f"{job['id']}.json"
    record = json.loads(record_path.read_text())
    record["images"][0]["file"] = "../outside.png"
    record_path.write_text(json.dumps(record))
    restarted = make_app(JOBS_DIR=str(folder)).test_client()
    assert restarted.get(f"/jobs/{job['id']}").status_code == 404  # unreadable, so not served
    assert restarted.delete(f"/jobs/{job['id']}").status_code == 404
    assert (tmp_path / "outside.png").read_bytes() == b"not yours"
