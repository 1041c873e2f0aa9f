"""FLUX.1, SD3.5, PixArt-Σ and Sana through the server, on their tiny random-weight demos."""

from __future__ import annotations

import base64
import io
import json
import shutil
import time

import pytest
from helpers import assert_nearly_identical, pixels, png_size
from PIL import Image

from backend.model.demo import save_demo_model

URL = "/image/generate"
FAMILIES = {"demo-flux": "flux", "demo-sd35": "sd3", "demo-pixart": "pixart", "demo-sana": "sana"}
BUILT_AS = {"demo-flux": "flux", "demo-sd35": "sd35", "demo-pixart": "pixart", "demo-sana": "sana"}
SMALL = {"width": 128, "height": 128, "steps": 2}


@pytest.fixture(scope="module")
def new_models_dir(models_dir, tmp_path_factory):
    """A MODELS_DIR with the demo and one demo of each new family (built once: under a second)."""
    folder = tmp_path_factory.mktemp("new-families")
    shutil.copytree(models_dir / "demo", folder / "demo")
    for name, family in BUILT_AS.items():
        save_demo_model(folder / name, family)
    save_demo_model(folder / "demo-flux-schnell", "flux-schnell")
    return folder


def _app(base_settings, folder, **overrides):
    from backend.main import create_app

    settings = {**base_settings, "MODELS_DIR": str(folder), "MAX_LOADED_MODELS": 5}
    app = create_app({**settings, "JOBS_DIR": "off", **overrides})
    assert app.extensions["engine"].wait_until_loaded(120)
    return app


@pytest.fixture(scope="module")
def cache_clients(new_models_dir, base_settings):
    """Two apps on every new family: the prompt cache off, and on."""
    apps = [_app(base_settings, new_models_dir, PROMPT_CACHE_SIZE=size) for size in (0, 64)]
    yield [app.test_client() for app in apps]
    for app in apps:
        app.extensions["engine"].stop(timeout=30)


@pytest.fixture(scope="module")
def client(cache_clients):
    return cache_clients[1]


def _images(client, body: dict) -> list[bytes]:
    response = client.post(URL, json={**body, "response_format": "json"})
    assert response.status_code == 200, response.get_json()
    return [base64.b64decode(image) for image in response.get_json()["images"]]


@pytest.mark.parametrize("model", FAMILIES)
def test_each_new_family_generates_with_its_defaults(client, model):
    response = client.post(URL, json={"prompt": "a lighthouse", "model": model, "seed": 3})
    assert response.status_code == 200, response.get_json()
    assert png_size(response.data) == (256, 256)  # the demos' default size
    text = Image.open(io.BytesIO(response.data)).text["parameters"]
    assert "Steps: 4," in text  # the demos' default steps
    listing = {m["name"]: m for m in client.get("/models").get_json()["models"]}
    assert listing[model]["family"] == FAMILIES[model] and listing[model]["loaded"]


@pytest.mark.parametrize("model", FAMILIES)
def test_guidance_changes_the_image_and_seeds_repeat(client, model):
    body = {"prompt": "a lighthouse", "model": model, "seed": 3, **SMALL}
    low = _images(client, {**body, "guidance_scale": 1.0})
    high = _images(client, {**body, "guidance_scale": 6.0})
    assert low != high  # FLUX-dev embeds the scale; the others guide with CFG
    assert _images(client, {**body, "guidance_scale": 6.0}) == high
    two = _images(client, {**body, "num_images": 2, "guidance_scale": 6.0})
    assert len(two) == 2 and two[0] != two[1]
    assert_nearly_identical(two[0], high[0])  # image k is seed+k's, batched or not


def test_flux_schnell_ignores_guidance(client):
    body = {"prompt": "a lighthouse", "model": "demo-flux-schnell", "seed": 3, **SMALL}
    unguided = _images(client, {**body, "guidance_scale": 0})[0]
    guided = _images(client, {**body, "guidance_scale": 7})[0]
    assert (pixels(unguided) == pixels(guided)).all()  # only the metadata's CFG scale differs


@pytest.mark.parametrize(
    ("model", "multiple"), [("demo-flux", 16), ("demo-sd35", 16), ("demo-sana", 32)]
)
def test_sizes_follow_each_family_rule(client, model, multiple):
    bad = client.post(URL, json={"prompt": "x", "model": model, "width": 128 + multiple // 2})
    assert bad.status_code == 400
    assert bad.get_json()["details"]["width"] == [f"Must be a multiple of {multiple}."]
    ok = client.post(URL, json={"prompt": "x", "model": model, "width": 128 + multiple, "steps": 1})
    assert png_size(ok.data) == (128 + multiple, 256)


def test_pixart_draws_any_multiple_of_8(client):
    # It draws at its nearest aspect-ratio bin and resizes to exactly the size asked for.
    body = {"prompt": "x", "model": "demo-pixart", "width": 136, "height": 200, "steps": 1}
    assert png_size(client.post(URL, json=body).data) == (136, 200)


@pytest.mark.parametrize(
    ("model", "refused", "known"),
    [
        ("demo-flux", "ddim", "Known: euler."),
        ("demo-sd35", "dpmpp_2m", "Known: euler."),
        ("demo-sana", "euler_a", "Known: dpmpp_2m."),
        ("demo-pixart", "lcm", "Known: euler, euler_a,"),
    ],
)
def test_a_scheduler_of_another_kind_is_refused_with_the_list(client, model, refused, known):
    bad = client.post(URL, json={"prompt": "x", "model": model, "scheduler": refused})
    assert bad.status_code == 400
    assert known in bad.get_json()["details"]["scheduler"][0]


@pytest.mark.parametrize(
    ("model", "scheduler", "label"),
    [
        ("demo-flux", "euler", "Euler"),
        ("demo-sana", "dpmpp_2m", "DPM++ 2M"),
        ("demo-pixart", "ddim", "DDIM"),
        ("demo-pixart", "dpmpp_2m_karras", "DPM++ 2M Karras"),
        ("demo-pixart", "euler_a", "Euler a"),
    ],
)
def test_each_family_runs_its_schedulers(client, model, scheduler, label):
    body = {"prompt": "x", "model": model, "scheduler": scheduler, **SMALL}
    response = client.post(URL, json=body)
    assert response.status_code == 200, response.get_json()
    assert f"Sampler: {label}," in Image.open(io.BytesIO(response.data)).text["parameters"]


def test_flux_refuses_a_negative_prompt_by_name(client):
    body = {"prompt": "x", "model": "demo-flux", "negative_prompt": "fog"}
    response = client.post(URL, json=body)
    assert response.status_code == 400
    assert "negative_prompt" in response.get_json()["details"]
    assert "FLUX.1" in response.get_json()["details"]["negative_prompt"][0]
    a1111 = client.post(
        "/sdapi/v1/txt2img",
        json={
            "prompt": "x",
            "negative_prompt": "fog",
            "override_settings": {"sd_model_checkpoint": "demo-flux"},
        },
    )
    assert a1111.status_code == 400 and "negative_prompt" in a1111.get_json()["details"]
    # An empty one is no negative prompt at all.
    assert client.post(URL, json={**body, "negative_prompt": "", **SMALL}).status_code == 200


TEXTS = {
    "no-guidance": {"guidance_scale": 0},
    "guidance": {"guidance_scale": 5},
    "negative-prompt": {"guidance_scale": 5, "negative_prompt": "fog"},
}


@pytest.mark.parametrize(
    ("model", "texts"),
    [
        pytest.param(model, texts, id=f"{model}-{name}")
        for model in FAMILIES
        for name, texts in TEXTS.items()
        if not (model == "demo-flux" and "negative_prompt" in texts)  # refused, tested above
    ],
)
def test_the_prompt_cache_gives_byte_identical_images(cache_clients, model, texts):
    uncached, cached = cache_clients
    body = {"prompt": f"a lighthouse {texts}", "model": model, "seed": 5, "num_images": 2}
    body.update(SMALL, **texts)
    expected = _images(uncached, body)
    assert _images(cached, body) == expected  # a miss: encoded by encode()
    assert _images(cached, body) == expected  # a hit


def test_the_jobs_api_and_a1111_serve_a_new_family(new_models_dir, base_settings, tmp_path):
    app = _app(base_settings, new_models_dir, JOBS_DIR=str(tmp_path / "jobs"))
    api = app.test_client()
    try:
        job = api.post("/jobs", json={"prompt": "x", "model": "demo-pixart", **SMALL}).get_json()
        deadline = time.monotonic() + 60
        while (state := api.get(f"/jobs/{job['id']}").get_json())["status"] not in (
            "succeeded",
            "failed",
        ):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert state["status"] == "succeeded", state
        # PixArt-Σ reports progress through its older callback.
        assert state["progress"]["step"] == state["progress"]["total"] == 2
        assert png_size(api.get(f"/jobs/{job['id']}/image").data) == (128, 128)
        body = {
            "prompt": "x",
            "steps": 2,
            "sampler_name": "Euler",
            "override_settings": {"sd_model_checkpoint": "demo-flux"},
        }
        response = api.post("/sdapi/v1/txt2img", json=body)
        assert response.status_code == 200, response.get_json()
        image = base64.b64decode(response.get_json()["images"][0])
        assert png_size(image) == (256, 256)
        assert "demo-flux" in json.loads(response.get_json()["info"])["sd_model_name"]
    finally:
        app.extensions["engine"].stop(timeout=30)


def test_a_new_family_demo_can_be_the_default(make_app, new_models_dir):
    client = make_app(MODELS_DIR=str(new_models_dir), DEFAULT_MODEL="demo-sana").test_client()
    assert client.get("/health").get_json()["model"] == "demo-sana"
    assert png_size(client.post(URL, json={"prompt": "x", "steps": 1}).data) == (256, 256)


def test_tiny_vae_is_refused_clearly_for_sana(make_app, new_models_dir):
    app = make_app(MODELS_DIR=str(new_models_dir), DEFAULT_MODEL="demo-sana", TINY_VAE="true")
    error = app.test_client().get("/health").get_json()["error"]
    assert "no tiny VAE for sana" in error


def test_demo_cli_builds_the_new_families(tmp_path, monkeypatch):
    from backend.model.demo_install import main

    monkeypatch.setenv("MODELS_DIR", str(tmp_path))
    assert main(["demo-flux", "demo-pixart", "demo-sana", "demo-sd35"]) == 0
    classes = {
        name: json.loads((tmp_path / name / "model_index.json").read_text())["_class_name"]
        for name in ("demo-flux", "demo-pixart", "demo-sana", "demo-sd35")
    }
    assert classes == {
        "demo-flux": "FluxPipeline",
        "demo-pixart": "PixArtSigmaPipeline",
        "demo-sana": "SanaPipeline",
        "demo-sd35": "StableDiffusion3Pipeline",
    }
    assert not list(tmp_path.rglob("*.bin")) and list(tmp_path.rglob("*.safetensors"))


@pytest.mark.parametrize(
    ("name", "family", "steps", "guidance"),
    [
        ("flux-schnell", "flux", 4, 0.0),
        ("flux-dev", "flux", 28, 3.5),
        ("sd3.5-large", "sd3", 28, 3.5),
        ("sd3.5-large-turbo", "sd3", 4, 0.0),
        ("sd3.5-medium", "sd3", 40, 4.5),
        ("pixart-sigma", "pixart", 20, 4.5),
        ("sana", "sana", 20, 4.5),
    ],
)
def test_catalogue_defaults_of_the_new_models(tmp_path, name, family, steps, guidance):
    from backend.model.registry import resolve_model

    spec = resolve_model(name, tmp_path)
    assert (spec.family.value, spec.defaults.steps, spec.defaults.guidance_scale) == (
        family,
        steps,
        guidance,
    )
    assert (spec.defaults.width, spec.defaults.height) == (1024, 1024)
    assert spec.source.startswith("https://huggingface.co/")


@pytest.mark.parametrize(
    ("demo", "family", "size"),
    [("demo-flux", "flux", 1024), ("demo-pixart", "pixart", 256), ("demo-sana", "sana", 512)],
)
def test_a_folder_of_a_new_family_gets_its_family_defaults(
    new_models_dir, tmp_path, demo, family, size
):
    from backend.model.registry import resolve_model

    # Not a catalogue name: the family comes from model_index.json, the size from the configs
    # where they tell it (sample_size x the VAE's scale: 32 x 8, 16 x 32), else the family's
    # (FLUX's transformer config has no sample_size).
    copy = shutil.copytree(new_models_dir / demo, tmp_path / f"mine-{demo}")
    spec = resolve_model(str(copy), new_models_dir)
    assert spec.family.value == family
    assert (spec.defaults.width, spec.defaults.height) == (size, size)


def test_memory_settings_apply_to_every_new_family(make_app, new_models_dir):
    # Offloading needs CUDA (ignored on the CPU with a warning); the rest runs here.
    app = make_app(
        MODELS_DIR=str(new_models_dir),
        MAX_LOADED_MODELS=5,
        ATTENTION_SLICING="true",
        VAE_SLICING="true",
        VAE_TILING="true",
        TORCH_DTYPE="bfloat16",
    )
    client = app.test_client()
    for model in FAMILIES:
        body = {"prompt": "x", "model": model, "num_images": 2, **SMALL}
        response = client.post(URL, json=body)
        assert response.status_code == 200, (model, response.get_json())
    import torch

    flux = app.extensions["engine"].workers[0].pipeline("demo-flux")
    assert flux.transformer.dtype == torch.bfloat16  # what docs/models.md advises for FLUX


@pytest.mark.parametrize("cache", [0, 64])
def test_micro_batches_of_each_new_family_match_lone_requests(
    make_app, new_models_dir, cache_clients, cache
):
    from concurrent.futures import ThreadPoolExecutor

    app = make_app(
        MODELS_DIR=str(new_models_dir),
        MAX_LOADED_MODELS=5,
        MAX_BATCH_SIZE=2,
        BATCH_WAIT_MS=2000,
        PROMPT_CACHE_SIZE=cache,
    )
    for model in FAMILIES:
        # Without a negative prompt: PixArt-Σ and Sana must get "" for each, not None.
        bodies = [
            {"prompt": f"picture {i}", "model": model, "seed": 10 + i, "guidance_scale": 5, **SMALL}
            for i in range(2)
        ]
        with ThreadPoolExecutor(2) as pool:
            together = list(pool.map(lambda body: _images(app.test_client(), body)[0], bodies))
        for batched, body in zip(together, bodies, strict=True):
            assert_nearly_identical(batched, _images(cache_clients[0], body)[0])  # unbatched
    metrics = app.test_client().get("/metrics").text
    assert 't2i_batch_images_bucket{le="1.0"} 0.0' in metrics  # every call drew both images


def test_the_flux_memory_bench_places_the_demo_with_the_loaders_code():
    from bench.flux_memory import SETTINGS, measure

    assert set(SETTINGS) >= {"none", "model_offload", "sequential_offload"}
    result = measure("vae_tiling", "demo", steps=1, side=128, device_name="cpu")
    assert result["setting"] == "vae_tiling" and result["peak_gib"] is None  # no CUDA here
    assert result["seconds"] > 0


def test_speed_settings_load_for_every_new_family(make_app, new_models_dir):
    # What FUSE_QKV=auto and CHANNELS_LAST=auto turn on for GPUs, tried here on the CPU.
    app = make_app(
        MODELS_DIR=str(new_models_dir),
        MAX_LOADED_MODELS=5,
        FUSE_QKV="true",
        CHANNELS_LAST="transformer,vae",
    )
    client = app.test_client()
    for model in FAMILIES:
        response = client.post(URL, json={"prompt": "x", "model": model, **SMALL})
        assert response.status_code == 200, (model, response.get_json())
    worker = app.extensions["engine"].workers[0]

    def fused(model: str) -> bool:
        transformer = worker.pipeline(model).transformer
        processors = {type(p).__name__ for p in transformer.attn_processors.values()}
        flags = [getattr(m, "fused_projections", False) for m in transformer.modules()]
        return any("Fused" in name for name in processors) or any(flags)

    assert fused("demo-flux") and fused("demo-pixart")
    # SD3.5's dual attention cannot be fused (diffusers gives it the wrong processor).
    assert not fused("demo-sd35")


@pytest.mark.parametrize(("model", "folder"), [("demo-flux", "taef1"), ("demo-pixart", "taesdxl")])
def test_the_tiny_vae_of_each_family_decodes_it(make_app, new_models_dir, tmp_path, model, folder):
    from backend.model.demo import build_tiny_vae, save_pipeline

    models = tmp_path / "models"
    shutil.copytree(new_models_dir / model, models / model)
    save_pipeline(build_tiny_vae(latent_channels=4), models / folder)
    app = make_app(MODELS_DIR=str(models), DEFAULT_MODEL=model, TINY_VAE="true")
    response = app.test_client().post(URL, json={"prompt": "x", **SMALL})
    assert response.status_code == 200, response.get_json()
    assert type(app.extensions["engine"].pipeline().vae).__name__ == "AutoencoderTiny"


def test_flux_honours_emphasis_and_long_prompts_with_the_cache_on_or_off(cache_clients):
    body = {"prompt": "a castle on a hill", "model": "demo-flux", **SMALL, "seed": 5}
    off, on = cache_clients
    plain = _images(on, body)[0]
    weighted = {**body, "prompt": "a (castle:1.5) on a [hill]"}
    assert _images(on, weighted)[0] != plain
    assert _images(off, weighted) == _images(on, weighted)
    # Well past CLIP's 77 tokens: T5 reads it all in FLUX's 512-token window.
    long = "a quiet town by the sea with boats " * 12
    first = _images(on, {**body, "prompt": long + "and a red kite"})[0]
    assert first != _images(on, {**body, "prompt": long + "and a blue fish"})[0]


@pytest.mark.parametrize("model", ["demo-pixart", "demo-sana"])
def test_pixart_and_sana_refuse_emphasis_naming_the_field(client, model):
    body = {"prompt": "a (castle:1.3)", "model": model, **SMALL}
    response = client.post(URL, json=body)
    assert response.status_code == 400
    assert "plain prompts" in response.get_json()["details"]["prompt"][0]
    assert client.post(URL, json={**body, "prompt": "a castle"}).status_code == 200
