"""Live previews on the real demo pipeline: every N steps, per job (a batch's jobs each get
their own), from the tiny VAE in VAES_DIR or the linear projection; none without asking."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

import pytest
from live_server import wait_for
from PIL import Image

from backend.model.demo import build_tiny_vae
from backend.model.latent_preview import Previewer
from backend.model.latent_rgb import fitted_factors
from backend.model.types import GenerationRequest

STEP_SECONDS = 0.15


def request(**values: object) -> GenerationRequest:
    fields = {"prompt": "a red circle on a blue background", "negative_prompt": "",
              "guidance_scale": 5.0, "width": 64, "height": 64, "steps": 8, "seed": 3}  # fmt: skip
    return GenerationRequest(**{**fields, **values})


def slow(app, seconds: float = STEP_SECONDS):
    engine = app.extensions["engine"]
    engine.workers[0].step_hook = lambda _step, _total: time.sleep(seconds)
    return engine


def follow(engine, job_id: str) -> tuple[object, list]:
    """The job once final, and the distinct previews seen while it ran."""
    seen = {}
    while True:
        record = engine.job(job_id)
        preview = engine.job_preview(job_id)
        if preview is not None:
            seen[preview.step] = preview
        if record.status.final:
            return record, [seen[step] for step in sorted(seen)]
        time.sleep(0.02)


@pytest.fixture(scope="module")
def tiny_vaes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A VAES_DIR with a `taesd` for the trained demo's 8-channel latents."""
    folder = tmp_path_factory.mktemp("vaes")
    build_tiny_vae(latent_channels=8).save_pretrained(folder / "taesd")
    return folder


def test_previews_every_n_steps(make_app):
    engine = slow(make_app())
    record, previews = follow(engine, engine.submit_job(request(preview_every=2)).id)
    assert record.status.value == "succeeded"
    steps = [preview.step for preview in previews]
    assert steps and set(steps) <= {2, 4, 6}  # never the last step: the images come anyway
    assert record.preview_step == steps[-1]
    assert engine.job_preview(record.id) is None  # let go of once the job ended
    last = previews[-1]
    image = Image.open(io.BytesIO(last.data))
    assert image.format == "PNG" and last.media_type == "image/png"
    assert image.size == (last.width, last.height) == (64, 64)
    assert last.total_steps == 8
    # The demo's 8 latent channels have no published factors: fitted once on its own VAE.
    vae = engine.pipeline().vae
    weights, bias = fitted_factors(vae, 8)
    assert weights.shape == (8, 3) and bias.shape == (3,)
    assert fitted_factors(vae, 8)[0] is weights  # once per VAE


def test_no_previews_unless_asked(make_app):
    engine = slow(make_app(), 0.05)
    record, previews = follow(engine, engine.submit_job(request()).id)
    assert record.status.value == "succeeded"
    assert previews == [] and record.preview_step is None


def test_a_batch_gives_each_job_its_own_preview(make_app):
    engine = slow(make_app(BATCH_WAIT_MS=1000, MAX_BATCH_SIZE=4))
    first = engine.submit_job(request(preview_every=1, seed=1))
    plain = engine.submit_job(request(seed=2))
    pair = engine.submit_job(request(preview_every=1, seed=3, num_images=2))
    results = {}

    def watch(job_id: str) -> None:
        results[job_id] = follow(engine, job_id)

    threads = [threading.Thread(target=watch, args=(job.id,)) for job in (first, plain, pair)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    (one, one_previews), (two, two_previews), (three, three_previews) = (
        results[job.id] for job in (first, plain, pair)
    )
    assert one.batch_size == two.batch_size == three.batch_size == 4  # one pipeline call
    assert two_previews == [] and two.preview_step is None
    assert (one_previews[-1].width, one_previews[-1].height) == (64, 64)
    assert (three_previews[-1].width, three_previews[-1].height) == (128, 64)  # two, side by side
    assert one_previews[-1].data != three_previews[-1].data


def test_previews_from_the_tiny_vae(make_app, tiny_vaes: Path):
    assert Previewer("sd", (tiny_vaes,)).decoder == "tiny_vae"
    assert Previewer("sdxl", (tiny_vaes,)).decoder == "linear"  # no taesdxl there
    engine = slow(make_app(VAES_DIR=str(tiny_vaes)))
    record, previews = follow(engine, engine.submit_job(request(preview_every=3)).id)
    assert record.status.value == "succeeded" and previews
    assert Image.open(io.BytesIO(previews[-1].data)).size == (64, 64)


def test_the_two_decoders_differ(models_dir: Path, tiny_vaes: Path):
    import torch

    latents = torch.randn(1, 8, 8, 8, generator=torch.Generator().manual_seed(0))
    tiny = Previewer("sd", (tiny_vaes,)).preview(None, latents, (64, 64), 1, 4)
    linear = Previewer("sd", ()).preview(None, latents, (64, 64), 1, 4)
    assert tiny.data != linear.data
    # SDXL's 4 channels and FLUX's packed 16: the known factors, at the request's aspect.
    sdxl = Previewer("sdxl", ()).preview(None, torch.randn(2, 4, 16, 8), (64, 128), 1, 4)
    assert (sdxl.width, sdxl.height) == (128, 128)
    flux = Previewer("flux", ()).preview(None, torch.randn(1, 32, 64), (128, 256), 1, 4)
    assert (flux.width, flux.height) == (128, 256)


def test_preview_every_on_the_api(make_app):
    app = make_app()
    client = app.test_client()
    body = {"prompt": "x", "steps": 4}
    for bad in (5, -1, "two", 1.5):
        response = client.post("/jobs", json={**body, "preview_every": bad})
        assert response.status_code == 400, bad
        assert "preview_every" in response.json["details"]
    response = client.post("/jobs", json={**body, "preview_every": 2})
    assert response.status_code == 202 and response.json["preview_step"] is None
    job = wait_for(lambda: (j := client.get(f"/jobs/{response.json['id']}").json)["status"]
                   == "succeeded" and j)  # fmt: skip
    assert job["preview_step"] == 2 and job["interrupted"] is False
    assert "preview_every" not in job["parameters"]  # how it was watched, not drawn
    generated = client.post("/image/generate", json={**body, "preview_every": 1})
    assert generated.status_code == 200
    document = client.get("/openapi.json").json
    assert "preview_every" in document["components"]["schemas"]["GenerateRequest"]["properties"]


def test_a_failing_preview_never_fails_the_generation(make_app, tmp_path: Path):
    # A tiny VAE folder that claims to be one but holds no usable weights: previews fall back to
    # the projection, and the images come as always.
    folder = tmp_path / "vaes" / "taesd"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text('{"_class_name": "AutoencoderTiny"}')
    (folder / "diffusion_pytorch_model.safetensors").write_bytes(b"not safetensors")
    engine = slow(make_app(VAES_DIR=str(tmp_path / "vaes")), 0.05)
    record, previews = follow(engine, engine.submit_job(request(preview_every=2)).id)
    assert record.status.value == "succeeded" and previews

    from backend.model.step_progress import Progress

    class Broken:
        def preview(self, *_: object) -> None:
            raise RuntimeError("decoder trouble")

    seen: list = []

    class Control:
        def progress(self, step: int, total: int) -> None: ...
        def should_stop(self) -> bool:
            return False

        def interrupted(self) -> bool:
            return False

        def take_preview(self, preview: object) -> None:
            seen.append(preview)

    import torch

    progress = Progress([Control()], lambda *_: None, [request(preview_every=1)], Broken())
    callback = progress.callback(8)
    for step in range(3):  # the first failure turns previews off for the call; steps go on
        callback(None, step, None, {"latents": torch.zeros(1, 8, 8, 8)})
    assert progress.previews == [] and progress.reached == 3 and seen == []
