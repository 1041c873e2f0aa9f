"""GPU-only behaviour: float16, offload, real out-of-memory, idle unload, several GPUs,
micro-batching fidelity.

Skipped without CUDA (CI has none). Run them on a GPU host with `pytest -m gpu`.
"""

from __future__ import annotations

import time

import pytest
import torch
from helpers import DEMO_SIZE, png_size

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]
URL = "/image/generate"


def gpu_app(make_app, **overrides):
    return make_app(DEVICE="cuda:0", **overrides)


@pytest.mark.parametrize("offload", ["model", "sequential"])
def test_cpu_offload_generates_and_keeps_weights_off_the_gpu(make_app, offload):
    resident = gpu_app(make_app)
    client = resident.test_client()
    assert client.post(URL, json={"prompt": "x", "seed": 1}).status_code == 200
    torch.cuda.synchronize()
    resident_bytes = torch.cuda.memory_allocated(0)
    resident.extensions["engine"].stop(timeout=30)
    del resident, client
    torch.cuda.empty_cache()

    app = gpu_app(make_app, CPU_OFFLOAD=offload)
    response = app.test_client().post(URL, json={"prompt": "x", "seed": 1})
    assert png_size(response.data) == DEMO_SIZE
    torch.cuda.synchronize()
    # Between requests the offloaded pipeline's weights sit in host memory.
    assert torch.cuda.memory_allocated(0) < resident_bytes


def test_a_gpu_server_keeps_glibcs_default_malloc_behaviour(make_app):
    from backend.model import host_memory

    # DEVICE=auto may have meant the CPU, so the engine tuned malloc first; on finding a GPU
    # it turns large-block mmap and trimming back on.
    app = make_app(DEVICE="auto")
    assert app.extensions["engine"].workers[0].device_name == "cuda:0"
    assert not host_memory.tuned()


def test_a_real_oversized_request_is_507_and_the_next_succeeds(make_app):
    app = gpu_app(
        make_app, MAX_WIDTH=2048, MAX_HEIGHT=2048, MAX_PIXELS=2048 * 2048, MAX_IMAGES=8,
        VAE_TILING="false",
    )  # fmt: skip
    client = app.test_client()
    assert client.post(URL, json={"prompt": "warm up"}).status_code == 200
    total = torch.cuda.get_device_properties(0).total_memory
    # Leave the process about 512 MiB on top of what it holds: plenty for 256x256, far too
    # little to decode eight 2048x2048 images at once.
    budget = torch.cuda.memory_reserved(0) + 512 * 2**20
    torch.cuda.set_per_process_memory_fraction(budget / total, 0)
    try:
        huge = {"prompt": "x", "width": 2048, "height": 2048, "num_images": 8, "steps": 2}
        response = client.post(URL, json=huge)
        assert response.status_code == 507, response.get_json()
        assert "ran out of memory" in response.get_json()["error"]
        assert client.post(URL, json={"prompt": "x"}).status_code == 200
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, 0)


def test_idle_unload_gives_the_memory_back(make_app):
    torch.cuda.empty_cache()
    baseline = torch.cuda.memory_allocated(0)
    app = gpu_app(make_app, IDLE_UNLOAD_SECONDS="0.5")
    client = app.test_client()
    assert client.post(URL, json={"prompt": "x"}).status_code == 200
    loaded = torch.cuda.memory_allocated(0)
    assert loaded > baseline
    deadline = time.monotonic() + 10
    while client.get("/health").get_json()["loaded_models"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client.get("/health").get_json()["loaded_models"] == []
    assert torch.cuda.memory_allocated(0) <= baseline + 1024 * 1024
    memory = client.get("/health").get_json()["devices"][0]["memory"]
    assert memory["total"] > 0 and memory["allocated"] <= baseline + 1024 * 1024


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_every_gpu_gets_a_worker(make_app):
    app = make_app(DEVICES="auto")
    devices = app.test_client().get("/health").get_json()["devices"]
    assert [d["device"] for d in devices] == [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    assert all(d["loaded_models"] == ["demo"] for d in devices)


def test_batched_images_are_invisibly_close_to_solo_ones_on_a_gpu(models_dir):
    from bench.batch_fidelity import compare

    overrides = {"MODELS_DIR": str(models_dir), "DEVICE": "cuda:0", "LOG_LEVEL": "warning"}
    fidelity = compare(overrides, size=256, steps=4, count=4)
    print(f"GPU batch fidelity: {fidelity}")  # figures for docs/serving.md (pytest -s)
    assert fidelity.batch_size == 4
    assert fidelity.psnr_db >= 40  # float16 kernels differ by batch size more than CPU ones
    assert compare(overrides, size=256, steps=4, count=1).identical
