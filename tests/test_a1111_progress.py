"""AUTOMATIC1111's progress, interrupt and skip, with the real `webuiapi` client during a slow
txt2img, and per API key: a caller sees and stops only its own generations."""

from __future__ import annotations

import base64
import io
import threading
import time

import pytest
import requests
import webuiapi
from live_server import serve, wait_for
from PIL import Image

STEP_SECONDS = 0.1
STEPS = 60  # 6 s at full length: an interrupt shows as a much shorter run
KEY_A, KEY_B = "key-a-0123456789abcdef", "key-b-0123456789abcdef"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(base_settings, tmp_path_factory):
    from backend.main import create_app

    jobs = str(tmp_path_factory.mktemp("jobs"))
    app = create_app({**base_settings, "JOBS_DIR": jobs, "A1111_PREVIEW_EVERY": 1})
    engine = app.extensions["engine"]
    assert engine.wait_until_loaded(120)
    with serve(app, STEP_SECONDS) as url:
        yield url
    engine.stop(timeout=30)


def start_txt2img(api: webuiapi.WebUIApi) -> tuple[threading.Thread, dict]:
    out: dict = {}

    def run() -> None:
        out["result"] = api.txt2img(prompt="a red circle", width=64, height=64, steps=STEPS)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


def running(api: webuiapi.WebUIApi, step: int = 2) -> dict | None:
    progress = api.get_progress()
    return progress if progress["state"]["sampling_step"] >= step else None


@pytest.mark.parametrize("how", ["interrupt", "skip"])
def test_webuiapi_watches_and_stops_a_slow_txt2img(server: str, how: str):
    api = webuiapi.WebUIApi(baseurl=f"{server}/sdapi/v1")
    idle = api.get_progress()
    assert idle["progress"] == 0 and idle["state"]["job_count"] == 0
    assert idle["current_image"] is None
    thread, out = start_txt2img(api)
    progress = wait_for(lambda: running(api) if api.get_progress()["current_image"] else None)
    state = progress["state"]
    assert state["job"] == "txt2img" and state["job_count"] == 1
    assert state["sampling_steps"] == STEPS and 0 < progress["progress"] < 1
    assert progress["eta_relative"] > 0
    assert not state["interrupted"] and not state["skipped"]
    preview = Image.open(io.BytesIO(base64.b64decode(progress["current_image"])))
    assert preview.size == (64, 64)
    # skip_current_image leaves the preview out, as in AUTOMATIC1111.
    bare = requests.get(f"{server}/sdapi/v1/progress?skip_current_image=true", timeout=10).json()
    assert bare["current_image"] is None
    getattr(api, how)()
    thread.join(60)
    result = out["result"]
    assert result.info["interrupted"] is True
    assert result.info["steps_run"] < STEPS  # stopped well before its last step
    assert len(result.images) == 1 and result.image.size == (64, 64)  # its images are kept
    assert api.get_progress()["state"]["job_count"] == 0


def test_an_interrupt_skips_the_hires_pass(server: str):
    api = webuiapi.WebUIApi(baseurl=f"{server}/sdapi/v1")
    out: dict = {}

    def run() -> None:
        out["result"] = api.txt2img(
            prompt="a red circle", width=64, height=64, steps=STEPS, enable_hr=True, hr_scale=2,
            hr_upscaler="Latent", denoising_strength=0.5,
        )  # fmt: skip

    thread = threading.Thread(target=run)
    thread.start()
    wait_for(lambda: running(api))
    api.interrupt()
    thread.join(60)
    # The first pass's images, upscaled: the rest of it and the second pass never ran.
    assert out["result"].image.size == (128, 128)
    assert out["result"].info["interrupted"] is True
    assert out["result"].info["steps_run"] < STEPS


@pytest.mark.parametrize(("how", "images"), [("interrupt", 1), ("skip", 3)])
def test_interrupt_ends_the_batches_and_skip_goes_on(server: str, how: str, images: int):
    api = webuiapi.WebUIApi(baseurl=f"{server}/sdapi/v1")
    out: dict = {}

    def run() -> None:
        out["result"] = api.txt2img(prompt="x", width=64, height=64, steps=20, n_iter=3)

    thread = threading.Thread(target=run)
    thread.start()
    wait_for(lambda: running(api))
    getattr(api, how)()
    thread.join(60)
    # As in AUTOMATIC1111: interrupt stops the request, skip only the batch drawing now.
    assert len(out["result"].images) == images


def test_interrupt_shows_in_the_state_and_the_job(server: str):
    job = requests.post(f"{server}/jobs", json={"prompt": "x", "steps": STEPS}, timeout=10).json()
    url = f"{server}/sdapi/v1/progress"
    wait_for(lambda: requests.get(url, timeout=10).json()["state"]["sampling_step"] >= 2)
    assert requests.post(f"{server}/sdapi/v1/skip", timeout=10).json() == {}
    state = requests.get(url, timeout=10).json()["state"]
    assert state["skipped"] or state["job_count"] == 0  # (or it already ended)
    done = wait_for(
        lambda: (
            (body := requests.get(f"{server}/jobs/{job['id']}", timeout=10).json())["status"]
            == "succeeded"
            and body
        )
    )
    assert done["interrupted"] is True
    assert done["progress"]["step"] < STEPS
    image = requests.get(f"{server}{done['images'][0]}", timeout=10)
    assert Image.open(io.BytesIO(image.content)).size == (64, 64)


def test_each_key_sees_and_stops_only_its_own(make_app):
    app = make_app(API_KEYS=f"{KEY_A},{KEY_B}", BATCH_WAIT_MS=1000)
    with serve(app, STEP_SECONDS) as url:
        a = webuiapi.WebUIApi(baseurl=f"{url}/sdapi/v1")
        b = webuiapi.WebUIApi(baseurl=f"{url}/sdapi/v1")
        a.session.headers["X-API-Key"] = KEY_A
        b.session.headers["X-API-Key"] = KEY_B
        body = {"prompt": "x", "steps": 30}
        jobs = {
            key: requests.post(f"{url}/jobs", json=body, headers={"X-API-Key": key}, timeout=10)
            for key in (KEY_A, KEY_B)
        }
        ids = {key: response.json()["id"] for key, response in jobs.items()}
        wait_for(lambda: running(a))
        assert a.get_progress()["state"]["job_count"] == 1
        assert b.get_progress()["state"]["job_count"] == 1  # each its own, not two
        anonymous = requests.get(f"{url}/sdapi/v1/progress", timeout=10)
        assert anonymous.status_code == 401
        a.interrupt()  # a's job shares its batch with b's: b's images still get every step

        def final(key: str) -> dict | None:
            job = requests.get(f"{url}/jobs/{ids[key]}", headers={"X-API-Key": key}, timeout=10)
            return job.json() if job.json()["status"] == "succeeded" else None

        job_a, job_b = wait_for(lambda: final(KEY_A)), wait_for(lambda: final(KEY_B))
        assert job_a["batch_size"] == job_b["batch_size"] == 2
        assert job_b["interrupted"] is False and job_b["progress"]["step"] == 30
        assert job_a["interrupted"] is True and job_a["progress"]["step"] == 30
        # Alone on the device, b's interrupt stops b's job, and a's interrupt does not.
        job = requests.post(f"{url}/jobs", json=body, headers={"X-API-Key": KEY_B}, timeout=10)
        ids[KEY_B] = job.json()["id"]
        wait_for(lambda: running(b))
        a.interrupt()
        time.sleep(0.5)
        assert b.get_progress()["state"]["interrupted"] is False
        b.interrupt()
        stopped = wait_for(lambda: final(KEY_B))
        assert stopped["interrupted"] is True and stopped["progress"]["step"] < 30
