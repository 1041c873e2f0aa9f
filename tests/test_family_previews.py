"""Live previews on every family's real demo pipeline: SDXL's and SD3's known factors, FLUX's
packed latents, PixArt-Σ's older callback, Sana's 32-channel latents (fitted factors)."""

from __future__ import annotations

import io
import shutil
import time

import pytest
from PIL import Image

from backend.model.demo import save_demo_model

BUILT_AS = {"demo-sdxl": "sdxl", "demo-sd35": "sd35", "demo-flux": "flux",
            "demo-pixart": "pixart", "demo-sana": "sana"}  # fmt: skip


@pytest.fixture(scope="module")
def engine(models_dir, base_settings, tmp_path_factory):
    from backend.main import create_app

    folder = tmp_path_factory.mktemp("preview-families")
    shutil.copytree(models_dir / "demo", folder / "demo")
    for name, family in BUILT_AS.items():
        save_demo_model(folder / name, family)
    settings = {**base_settings, "MODELS_DIR": str(folder), "MAX_LOADED_MODELS": 6}
    app = create_app({**settings, "JOBS_DIR": "off"})
    engine = app.extensions["engine"]
    assert engine.wait_until_loaded(120)
    # Slow steps, so that a poll sees a preview before the next replaces it.
    engine.workers[0].step_hook = lambda _step, _total: time.sleep(0.05)
    yield engine
    engine.stop(timeout=30)


@pytest.mark.parametrize("model", list(BUILT_AS))
def test_each_family_previews_its_latents(engine, model: str):
    from backend.model.types import GenerationRequest

    request = GenerationRequest(
        prompt="a red circle", negative_prompt="", width=128, height=64, steps=4,
        guidance_scale=4.0, seed=1, model=model, preview_every=1,
    )  # fmt: skip
    job = engine.submit_job(request)
    previews = {}
    while not (record := engine.job(job.id)).status.final:
        if (preview := engine.job_preview(job.id)) is not None:
            previews[preview.step] = preview
        time.sleep(0.01)
    assert record.status.value == "succeeded", record.error
    assert previews and record.preview_step in (1, 2, 3)
    image = Image.open(io.BytesIO(previews[max(previews)].data))
    assert image.size == (128, 64)  # the request's aspect, however the latents are laid out
    assert any(low < high for low, high in image.getextrema())  # a picture, not a blank
