"""Accepted jobs survive a crash: durable before "succeeded", run again after the process dies,
never twice to completion, and at most JOB_MAX_ATTEMPTS times."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
import requests
from helpers import assert_nearly_identical
from test_jobs import TINY, Hold, wait_for

DEAD_OWNER = "0123456789abcdef"  # a token no live process holds a lock for


def running_record(make_app, folder: Path) -> tuple[dict, Hold]:
    """The on-disk record of a job caught mid-run (its process still alive, held)."""
    app = make_app(JOBS_DIR=str(folder), MAX_BATCH_SIZE=1)
    hold = Hold(0.5)
    app.extensions["engine"].workers[0].step_hook = hold
    api = app.test_client()
    job = api.post("/jobs", json={"prompt": "cut off", "seed": 11, **TINY}).get_json()
    wait_for(api, job["id"], {"running"})
    deadline = time.monotonic() + 30
    while (record := json.loads((folder / f"{job['id']}.json").read_text()))["attempt"] < 1:
        assert time.monotonic() < deadline, record  # the run's record follows its start
        time.sleep(0.01)
    return record, hold


def test_a_record_says_succeeded_only_once_its_images_are_on_disk(make_app, tmp_path):
    folder = tmp_path / "kept"
    app = make_app(JOBS_DIR=str(folder))
    engine = app.extensions["engine"]
    seen = []
    original = engine.jobs.files.save_final

    def spy(job, record, images):
        seen.append(job.status.value)  # what pollers can see while the final state is written
        original(job, record, images)
        written = json.loads((folder / f"{job.id}.json").read_text())
        assert written["status"] == "succeeded" and written["images"]
        assert all((folder / image["file"]).is_file() for image in written["images"])

    engine.jobs.files.save_final = spy
    api = app.test_client()
    job = api.post("/jobs", json={"prompt": "durable", **TINY}).get_json()
    state = wait_for(api, job["id"], {"succeeded"})
    assert seen == ["running"]  # not yet "succeeded" while its files were being written
    record = json.loads((folder / f"{job['id']}.json").read_text())
    assert record["status"] == "succeeded" and len(record["images"]) == 1
    assert state["attempt"] == 1


def test_a_job_of_a_live_process_is_left_to_it(make_app, tmp_path):
    folder = tmp_path / "kept"
    record, hold = running_record(make_app, folder)
    other = make_app(JOBS_DIR=str(folder))
    state = other.test_client().get(f"/jobs/{record['id']}").get_json()
    assert state["status"] == "running"  # as its owner last wrote it
    hold.held.clear()
    assert other.extensions["engine"].workers[0].served == 0  # the owner runs it, not us


def test_an_unfinished_job_of_a_dead_process_runs_again(make_app, tmp_path):
    record, hold = running_record(make_app, tmp_path / "first")
    hold.held.clear()
    folder = tmp_path / "second"
    folder.mkdir()
    record["process"] = DEAD_OWNER
    (folder / f"{record['id']}.json").write_text(json.dumps(record))
    api = make_app(JOBS_DIR=str(folder)).test_client()
    state = wait_for(api, record["id"], {"succeeded", "failed"})
    assert state["status"] == "succeeded", state["error"]
    assert state["attempt"] == 2  # the first run was cut off
    clean = api.post("/image/generate", json={"prompt": "cut off", "seed": 11, **TINY})
    assert api.get(f"/jobs/{record['id']}/image").data == clean.data


def test_a_job_that_keeps_killing_the_server_is_not_tried_again(make_app, tmp_path):
    record, hold = running_record(make_app, tmp_path / "first")
    hold.held.clear()
    folder = tmp_path / "second"
    folder.mkdir()
    record.update(process=DEAD_OWNER, attempt=2)
    (folder / f"{record['id']}.json").write_text(json.dumps(record))
    api = make_app(JOBS_DIR=str(folder), JOB_MAX_ATTEMPTS=2).test_client()
    state = wait_for(api, record["id"], {"succeeded", "failed"})
    assert state["status"] == "failed"
    assert "JOB_MAX_ATTEMPTS=2" in state["error"] and state["attempt"] == 2
    on_disk = json.loads((folder / f"{record['id']}.json").read_text())
    assert on_disk["status"] == "failed"  # and it stays failed at the next start


def _worker_pid(server) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pids = server.worker_pids()
        if len(pids) == 1:
            return pids[0]
        time.sleep(0.05)
    raise AssertionError(f"no single worker: {server.worker_pids()}")


@pytest.mark.slow
def test_jobs_survive_a_sigkill_of_the_worker_mid_batch(start_server):
    server = start_server(MAX_BATCH_SIZE=4, JOB_MAX_ATTEMPTS=3)
    server.wait_for_ping()
    server.wait_until_healthy()
    first_worker = _worker_pid(server)
    bodies = [
        {"prompt": f"crash test {i}", "seed": 100 + i, "width": 64, "height": 64, "steps": 8}
        for i in range(8)
    ]
    ids = []
    for body in bodies:
        response = requests.post(f"{server.url}/jobs", json=body, timeout=10)
        assert response.status_code == 202, response.text
        ids.append(response.json()["id"])
    # Kill the worker while a batch is on the device (some job past its first step).
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        states = [requests.get(f"{server.url}/jobs/{i}", timeout=5).json() for i in ids]
        if any(s["status"] == "running" and s["progress"]["step"] >= 1 for s in states):
            break
        time.sleep(0.01)
    else:
        raise AssertionError(f"no batch started: {states}")
    os.kill(first_worker, signal.SIGKILL)
    cut_off = {s["id"] for s in states if s["status"] == "running"}
    assert cut_off and not any(s["status"] == "succeeded" for s in states if s["id"] in cut_off)

    # gunicorn's master starts a new worker, which takes the dead one's jobs over.
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            states = [requests.get(f"{server.url}/jobs/{i}", timeout=5).json() for i in ids]
            if all(s["status"] in ("succeeded", "failed", "cancelled") for s in states):
                break
        except requests.ConnectionError:
            pass  # between the two workers
        time.sleep(0.1)
    assert _worker_pid(server) != first_worker
    assert [s["status"] for s in states] == ["succeeded"] * 8, [s["error"] for s in states]
    for state in states:
        assert state["attempt"] == (2 if state["id"] in cut_off else 1), state
    log = server.log()
    for job_id in ids:  # none ran twice to completion
        assert log.count(f"job {job_id} succeeded") <= 1, job_id
    for job_id, body in zip(ids, bodies, strict=True):
        image = requests.get(f"{server.url}/jobs/{job_id}/image", timeout=10)
        clean = requests.post(f"{server.url}/image/generate", json=body, timeout=60)
        assert image.status_code == clean.status_code == 200
        # The same picture as a clean run of the seed, up to micro-batching's rounding.
        assert_nearly_identical(image.content, clean.content)
