"""The files users bring, in the scale-out mode: the API lists and checks them, workers use them.

A real redis-server, a gunicorn API process and a worker process, as in test_scale_out.py: a
single-file checkpoint, a LoRA, an embedding-free weighted prompt and a long one must draw in
celery mode exactly what one process draws, and a worker that lacks a file the API process knows
must fail the job with a clear error, not a 500.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from backend.model.demo import save_demo_model
from bench.cluster import Cluster
from demo_model.single_file import write
from tests.redis_server import redis_server  # noqa: F401  (the fixture)

FAST = {"width": 64, "height": 64, "steps": 2, "seed": 3}
BODIES = [
    {"prompt": "a (red:1.3) circle [top left]", **FAST},
    {"prompt": " ".join(["a red circle, a blue star, a green square"] * 8), **FAST},
    {"prompt": "a red circle", "loras": [{"name": "all-green", "weight": 1.0}], **FAST},
    {"prompt": "a red star", "model": "twin-file", **FAST},
]


@pytest.fixture(scope="module")
def files_dir(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MODELS_DIR with the trained demo and an SD single file (its config folder beside it);
    `loras/` for the worker, `api-loras/` with one more LoRA only the API process sees."""
    folder = tmp_path_factory.mktemp("files")
    shutil.copytree(models_dir / "demo", folder / "demo")
    shutil.copytree(models_dir / "loras", folder / "loras")
    shutil.copytree(models_dir / "loras", folder / "api-loras")
    shutil.copy(
        folder / "loras" / "all-green.safetensors", folder / "api-loras" / "api-only.safetensors"
    )
    save_demo_model(folder / "twin", "sd")
    write(folder / "twin", folder / "twin-file.safetensors")
    return folder


@pytest.fixture(scope="module")
def cluster(
    base_settings: dict[str, object],
    redis_server,  # noqa: F811
    files_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Cluster]:
    """Two API processes (the first's LORAS_DIR has one LoRA more) and one worker."""
    settings = {
        **base_settings,
        "MODELS_DIR": str(files_dir),
        "LORAS_DIR": str(files_dir / "loras"),
        "MAX_BATCH_SIZE": 1,
        "MAX_LOADED_MODELS": 2,
    }
    cluster = Cluster(settings, redis_server.url, tmp_path_factory.mktemp("cluster"))
    try:
        cluster.add_worker()
        cluster.add_api(LORAS_DIR=str(files_dir / "api-loras"))
        cluster.add_api()
        yield cluster
    finally:
        cluster.stop()


def test_the_api_process_lists_files_without_torch(cluster: Cluster):
    url = cluster.apis[0].url
    models = requests.get(f"{url}/models", timeout=10).json()
    assert "twin-file" in {model["name"] for model in models["models"]}
    loras = requests.get(f"{url}/loras", timeout=10).json()
    assert {"all-green", "api-only"} <= {lora["name"] for lora in loras["loras"]}
    assert requests.get(f"{url}/sdapi/v1/loras", timeout=10).status_code == 200
    maps = "".join(Path(f"/proc/{pid}/maps").read_text() for pid in cluster.apis[0].worker_pids())
    assert "libtorch" not in maps


def test_celery_mode_draws_what_one_process_draws(cluster: Cluster, files_dir: Path, start_server):
    # The same torch thread count as the worker: float sums depend on how they are split.
    local = start_server(
        MODELS_DIR=str(files_dir),
        LORAS_DIR=str(files_dir / "loras"),
        MAX_BATCH_SIZE=1,
        MAX_LOADED_MODELS=2,
        OMP_NUM_THREADS=1,
    )
    local.wait_for_ping()
    local.wait_until_healthy()
    drawn = set()
    for body in BODIES:
        expected = requests.post(f"{local.url}/image/generate", json=body, timeout=120)
        got = requests.post(f"{cluster.apis[0].url}/image/generate", json=body, timeout=120)
        assert got.status_code == expected.status_code == 200, got.text
        assert got.content == expected.content, body
        drawn.add(got.content)
    assert len(drawn) == len(BODIES)


def test_a_worker_without_the_requested_lora_fails_the_job_clearly(cluster: Cluster):
    body = {"prompt": "a red circle", "loras": [{"name": "api-only", "weight": 1.0}], **FAST}
    response = requests.post(f"{cluster.apis[0].url}/image/generate", json=body, timeout=120)
    assert 400 <= response.status_code < 500 or response.status_code == 503, response.text
    assert "api-only" in response.json()["error"]
    # The worker is fine afterwards.
    ok = requests.post(f"{cluster.apis[0].url}/image/generate", json=BODIES[0], timeout=120)
    assert ok.status_code == 200


def _default_seen(api_url: str, name: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        options = requests.get(f"{api_url}/sdapi/v1/options", timeout=10).json()
        if options["sd_model_checkpoint"] == name:
            return
        time.sleep(0.1)
    raise AssertionError(f"{api_url} never took up the default {name}")


def test_switching_the_default_on_one_api_process_holds_on_every_one(cluster: Cluster):
    first, second = (api.url for api in cluster.apis)
    switch = {"sd_model_checkpoint": "twin-file.safetensors [0123abcd]"}  # an A1111 title
    try:
        assert requests.post(f"{first}/sdapi/v1/options", json=switch, timeout=10).ok
        _default_seen(second, "twin-file")
        response = requests.post(f"{second}/image/generate", json=FAST | {"prompt": "a star"},
                                 timeout=120)  # fmt: skip
        assert response.status_code == 200, response.text
        assert response.headers["X-Model"] == "twin-file"
        missing = {"sd_model_checkpoint": "no-such-model"}
        assert (
            requests.post(f"{second}/sdapi/v1/options", json=missing, timeout=10).status_code == 404
        )
    finally:
        back = {"sd_model_checkpoint": "demo"}
        assert requests.post(f"{second}/sdapi/v1/options", json=back, timeout=10).ok
    _default_seen(first, "demo")
