"""The real thing: gunicorn started with gunicorn.conf.py, spoken to over loopback HTTP."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from conftest import ServerProcess, launch_server
from helpers import DEMO_SIZE, assert_nearly_identical, png_size

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(base_settings, tmp_path_factory) -> Iterator[ServerProcess]:
    """One gunicorn server for the module; records what /health said while it started."""
    proc = launch_server(base_settings, tmp_path_factory.mktemp("gunicorn") / "server.log")
    try:
        proc.wait_for_ping()
        # Asked straight after the first pong, while the worker still imports torch.
        proc.generate_while_loading = requests.post(
            f"{proc.url}/image/generate", json={"prompt": "too early"}, timeout=10
        )
        proc.health_during_start = proc.wait_until_healthy()
        yield proc
    finally:
        proc.stop()


def assert_json_error(response: requests.Response, status: int) -> dict:
    assert response.status_code == status, response.text[:300]
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert isinstance(body["error"], str) and set(body) <= {"error", "details"}
    return body


def generate_ok(url: str, **body: object) -> bytes:
    response = requests.post(f"{url}/image/generate", json={"prompt": "ok", **body}, timeout=60)
    assert response.status_code == 200, response.text[:300]
    return response.content


def test_health_is_503_while_loading_then_200(server):
    seen = server.health_during_start
    # The worker answers HTTP before torch is even imported, so /health is seen loading first.
    assert seen[0] == 503 and seen[-1] == 200
    assert set(seen) == {503, 200}
    health = requests.get(f"{server.url}/health", timeout=5).json()
    assert [device["device"] for device in health.pop("devices")] == ["cpu"]
    assert health == {
        "status": "healthy",
        "model_loaded": True,
        "model": "demo",
        "device": "cpu",
        "loaded_models": ["demo"],
    }


def test_generate_while_loading_is_503_with_retry_after(server):
    response = server.generate_while_loading
    error = assert_json_error(response, 503)
    assert "loading" in error["error"]
    assert int(response.headers["Retry-After"]) > 0


def test_ping_is_plain_text_pong(server):
    response = requests.get(f"{server.url}/ping", timeout=5)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    assert response.text == "pong"


def _mapped_libraries(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux /proc")
def test_the_master_never_loads_torch(server):
    master = server.process.pid
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    assert len(children) == 1, "gunicorn.conf.py asks for exactly one worker process"
    assert "libtorch" not in _mapped_libraries(master)
    assert "libtorch" in _mapped_libraries(int(children[0]))


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_readme_curl_writes_a_png(server, tmp_path):
    output = tmp_path / "image.png"
    subprocess.run(
        [
            "curl", "-sS", "--fail-with-body", "-X", "POST", f"{server.url}/image/generate",
            "-H", "Content-Type: application/json",
            "-d", '{"prompt": "a sunset over mountains", "width": 768, "height": 512, "steps": 10}',
            "--output", str(output),
        ],
        check=True,
        timeout=120,
    )  # fmt: skip
    assert png_size(output.read_bytes()) == (768, 512)


def test_same_seed_same_bytes_over_http(server):
    assert generate_ok(server.url, seed=5) == generate_ok(server.url, seed=5)


def test_http_errors_are_json_and_the_server_keeps_serving(server):
    url = f"{server.url}/image/generate"
    too_big = b'{"prompt": "' + b"x" * 70_000 + b'"}'
    headers = {"Content-Type": "application/json"}
    assert_json_error(requests.post(url, data=too_big, headers=headers, timeout=10), 413)
    # Chunked upload: no Content-Length to check up front.
    chunks = (too_big[i : i + 8192] for i in range(0, len(too_big), 8192))
    assert_json_error(requests.post(url, data=chunks, headers=headers, timeout=10), 413)
    assert_json_error(requests.post(url, data=b"{oops", headers=headers, timeout=10), 400)
    assert_json_error(requests.post(url, data="prompt=x", timeout=10), 415)
    assert_json_error(requests.post(url, json={"prompt": "x", "width": 10**9}, timeout=10), 400)
    assert_json_error(requests.get(url, timeout=10), 405)
    assert_json_error(requests.get(f"{server.url}/nothing-here", timeout=10), 404)
    assert png_size(generate_ok(server.url)) == DEMO_SIZE


def test_concurrent_clients_all_get_their_image_and_ping_stays_up(server):
    results: dict[int, bytes] = {}

    def client(seed: int) -> None:
        results[seed] = generate_ok(server.url, seed=seed, steps=8, width=384, height=384)

    threads = [threading.Thread(target=client, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    # While the device works through the queue, liveness answers.
    assert requests.get(f"{server.url}/ping", timeout=5).text == "pong"
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(results) == [0, 1, 2, 3]
    assert len(set(results.values())) == 4  # every client got its own seed's image
    # They may have been micro-batched together; alone, the image is the same picture.
    assert_nearly_identical(
        generate_ok(server.url, seed=2, steps=8, width=384, height=384), results[2]
    )


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_run_builds_the_missing_demo_and_serves_on_port_from_env(start_server, tmp_path):
    models = tmp_path / "fresh-models"
    proc = start_server(["make", "--no-print-directory", "run"], MODELS_DIR=str(models))
    proc.wait_for_ping(timeout=180)
    proc.wait_until_healthy()
    assert (models / "demo" / "model_index.json").is_file()
    image = generate_ok(proc.url)
    assert png_size(image) == DEMO_SIZE
    assert "demo model written to" in proc.log()
    # The log line gunicorn prints proves the port came from the environment, not .env.
    assert f"Listening at: http://127.0.0.1:{proc.port}" in proc.log()
    with io.StringIO(proc.log()) as log:
        assert not [line for line in log if "Traceback" in line]


def test_development_server_serves_the_same_app(start_server):
    proc = start_server([sys.executable, "-m", "backend.main"])
    proc.wait_for_ping()
    proc.wait_until_healthy()
    assert png_size(generate_ok(proc.url)) == DEMO_SIZE
