"""Speed settings: each is applied as configured, and none changes what an image looks like
(the prompt cache not even a bit)."""

from __future__ import annotations

import base64
import shutil
import time
from pathlib import Path

import pytest
import requests
import torch
from helpers import assert_nearly_identical, png_size

from backend.model.demo import build_tiny_vae, save_pipeline

URL = "/image/generate"
SMALL = {"width": 64, "height": 64, "steps": 2}
FAMILIES = ("demo", "demo-sdxl", "demo-sd3")
# Speed settings pinned off, so each test turns on only what it checks.
OFF = {
    "CHANNELS_LAST": "none",
    "FUSE_QKV": "false",
    "COMPILE": "false",
    "PROMPT_CACHE_SIZE": 0,
    "TINY_VAE": "false",
}


def _images(client, body: dict) -> list[bytes]:
    response = client.post(URL, json={**body, "response_format": "json"})
    assert response.status_code == 200, response.get_json()
    return [base64.b64decode(image) for image in response.get_json()["images"]]


def _metric(client, name: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no metric {name}")


def _pipeline(app, model: str = "demo"):
    """The loaded pipeline (only read here, while the worker is idle)."""
    return app.extensions["engine"].workers[0].pipeline(model)


@pytest.fixture(scope="module")
def cache_clients(family_models_dir, base_settings):
    """Two apps on every family: the prompt cache off, and on."""
    from backend.main import create_app

    apps = [
        create_app(
            {
                **base_settings,
                **OFF,
                "MODELS_DIR": str(family_models_dir),
                "MAX_LOADED_MODELS": 3,
                "JOBS_DIR": "off",
                "PROMPT_CACHE_SIZE": size,
            }
        )
        for size in (0, 64)
    ]
    for app in apps:
        assert app.extensions["engine"].wait_until_loaded(120)
    yield [app.test_client() for app in apps]
    for app in apps:
        app.extensions["engine"].stop(timeout=30)


@pytest.mark.parametrize("model", FAMILIES)
@pytest.mark.parametrize(
    "texts",
    [
        {"guidance_scale": 0},
        {"guidance_scale": 7},  # guidance with the family's own unconditional embedding
        {"guidance_scale": 7, "negative_prompt": "fog, rain"},
    ],
    ids=["no-guidance", "guidance", "negative-prompt"],
)
def test_the_prompt_cache_gives_byte_identical_images(cache_clients, model, texts):
    uncached, cached = cache_clients
    body = {"prompt": f"a lighthouse, {texts}", "model": model, "seed": 5, "num_images": 2}
    body.update(SMALL, **texts)
    expected = _images(uncached, body)
    first = _images(cached, body)  # computed and stored
    again = _images(cached, body)  # from the cache
    assert first == expected
    assert again == expected
    assert expected[0] != expected[1]


def test_the_prompt_cache_counts_hits_and_keeps_the_latest_prompts(make_app):
    app = make_app(**{**OFF, "PROMPT_CACHE_SIZE": 2})
    client = app.test_client()
    for prompt in ("a", "a", "b", "c", "a"):  # "c" pushes "a" out: the last "a" is a miss
        _images(client, {"prompt": prompt, "seed": 1, **SMALL})
    assert _metric(client, 't2i_prompt_cache_lookups_total{result="hit"}') == 1
    assert _metric(client, 't2i_prompt_cache_lookups_total{result="miss"}') == 4
    # The demo guides by default, which needs negative embeddings too; without guidance the
    # same prompt is another entry, not a wrong hit.
    _images(client, {"prompt": "a", "seed": 1, **SMALL, "guidance_scale": 0})
    assert _metric(client, 't2i_prompt_cache_lookups_total{result="miss"}') == 5


def test_micro_batches_use_the_cached_embeddings(make_app):
    from concurrent.futures import ThreadPoolExecutor

    app = make_app(**{**OFF, "PROMPT_CACHE_SIZE": 64}, MAX_BATCH_SIZE=4, BATCH_WAIT_MS=2000)
    bodies = [{"prompt": f"picture {i % 2}", "seed": 10 + i, **SMALL} for i in range(4)]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda body: _images(app.test_client(), body)[0], bodies))
    client = app.test_client()
    # Two prompts, four images: two misses; the solo runs below hit.
    assert _metric(client, 't2i_prompt_cache_lookups_total{result="miss"}') == 2
    alone = [_images(client, body)[0] for body in bodies]
    for batched, single in zip(together, alone, strict=True):
        assert_nearly_identical(batched, single)


def test_channels_last_and_fused_projections_are_applied_and_change_nothing_visible(make_app):
    plain = make_app(**OFF)
    fast = make_app(**{**OFF, "CHANNELS_LAST": "unet,vae", "FUSE_QKV": "true"})
    pipeline = _pipeline(fast)
    channels_last = torch.channels_last
    assert pipeline.unet.conv_in.weight.is_contiguous(memory_format=channels_last)
    assert pipeline.vae.decoder.conv_in.weight.is_contiguous(memory_format=channels_last)
    processors = {type(p).__name__ for p in pipeline.unet.attn_processors.values()}
    assert processors == {"FusedAttnProcessor2_0"}
    assert not _pipeline(plain).unet.conv_in.weight.is_contiguous(memory_format=channels_last)
    body = {"prompt": "a lighthouse", "seed": 3, **SMALL, "guidance_scale": 7}
    assert_nearly_identical(
        _images(plain.test_client(), body)[0], _images(fast.test_client(), body)[0]
    )


def test_auto_stores_only_the_vae_channels_last_on_the_cpu(make_app):
    app = make_app(**{**OFF, "CHANNELS_LAST": "auto", "FUSE_QKV": "auto"})
    pipeline = _pipeline(app)
    assert pipeline.vae.decoder.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    assert not pipeline.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    processors = {type(p).__name__ for p in pipeline.unet.attn_processors.values()}
    assert "FusedAttnProcessor2_0" not in processors


def test_compile_happens_while_loading_not_in_requests(make_app):
    from torch._dynamo.utils import counters

    # The VAE decoder only: the demo UNet would add more minutes of compiling on 2 cores.
    compiled = make_app(**{**OFF, "COMPILE": "vae"})
    client = compiled.test_client()
    assert _metric(client, "t2i_model_warmup_seconds") > 0  # compiled before /health said ready
    assert client.get("/health").status_code == 200
    pipeline = _pipeline(compiled)
    assert pipeline.vae.decoder._compiled_call_impl is not None
    assert pipeline.unet._compiled_call_impl is None
    graphs = counters["stats"]["unique_graphs"]
    assert graphs > 0
    # At the model's default size, single images and batches reuse the warm-up's graphs.
    body = {"prompt": "a lighthouse", "seed": 3, "steps": 2}
    first = _images(client, body)[0]
    assert len(_images(client, {**body, "num_images": 3, "guidance_scale": 0})) == 3
    assert counters["stats"]["unique_graphs"] == graphs
    assert_nearly_identical(first, _images(make_app(**OFF).test_client(), body)[0])


def test_a_failed_compilation_names_the_setting(start_server, tmp_path):
    # No C compiler, as in a slim container: TorchInductor cannot build its kernels.
    server = start_server(
        **{
            **OFF,
            "COMPILE": "vae",
            "CXX": str(tmp_path / "no-such-compiler"),
            # Nothing compiled by an earlier test to reuse.
            "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor"),
        }
    )
    server.wait_for_ping()
    deadline = time.monotonic() + 180
    while True:  # until loading has ended, one way or the other
        response = requests.post(f"{server.url}{URL}", json={"prompt": "x", **SMALL}, timeout=60)
        if "still loading" not in response.text or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert response.status_code == 503, server.log()
    message = response.json()["error"]
    assert "COMPILE=vae" in message and "COMPILE=false" in message
    assert "Traceback" not in message and str(tmp_path) not in message


@pytest.fixture(scope="module")
def tiny_models_dir(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo model with a tiny VAE for it in taesd/."""
    folder = tmp_path_factory.mktemp("tiny")
    shutil.copytree(models_dir / "demo", folder / "demo")
    save_pipeline(build_tiny_vae(latent_channels=8, seed=7, scale=4), folder / "taesd")
    return folder


def test_tiny_vae_decodes_the_same_latents_another_way(make_app, tiny_models_dir):
    tiny = make_app(**{**OFF, "TINY_VAE": "true"}, MODELS_DIR=str(tiny_models_dir))
    assert type(_pipeline(tiny).vae).__name__ == "AutoencoderTiny"
    body = {"prompt": "a lighthouse", "seed": 3, "width": 128, "height": 64, "steps": 2}
    image = tiny.test_client().post(URL, json=body)
    assert image.status_code == 200 and png_size(image.data) == (128, 64)
    full = make_app(**OFF, MODELS_DIR=str(tiny_models_dir)).test_client().post(URL, json=body)
    assert image.data != full.data  # another decoder: another picture of the same latents


def test_tiny_vae_missing_names_its_folder(make_app):
    app = make_app(**{**OFF, "TINY_VAE": "true"})
    response = app.test_client().post(URL, json={"prompt": "x", **SMALL})
    assert response.status_code == 503
    message = response.get_json()["error"]
    assert "taesd" in message and "TINY_VAE=false" in message


def test_tiny_vae_for_another_latent_space_is_refused(make_app, models_dir, tmp_path):
    shutil.copytree(models_dir / "demo", tmp_path / "demo")
    save_pipeline(build_tiny_vae(latent_channels=4), tmp_path / "taesd")  # SD's usual latents
    app = make_app(**{**OFF, "TINY_VAE": "true"}, MODELS_DIR=str(tmp_path))
    response = app.test_client().post(URL, json={"prompt": "x", **SMALL})
    assert response.status_code == 503
    assert "4-channel" in response.get_json()["error"]


def test_tiny_vae_of_another_scale_is_refused(make_app, models_dir, tmp_path):
    shutil.copytree(models_dir / "demo", tmp_path / "demo")
    save_pipeline(build_tiny_vae(latent_channels=8, scale=8), tmp_path / "taesd")  # SD's 8x
    app = make_app(**{**OFF, "TINY_VAE": "true"}, MODELS_DIR=str(tmp_path))
    response = app.test_client().post(URL, json={"prompt": "x", **SMALL})
    assert response.status_code == 503
    assert "8 pixels per latent pixel" in response.get_json()["error"]
