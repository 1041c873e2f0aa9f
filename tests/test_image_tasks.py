"""img2img, inpainting, hires fix and the SDXL refiner in the model layer, on the demo pipelines.

Through the Engine (no Flask views): the requests are what the views build, ImageInput with PNG
bytes. The trained demo (`demo`, 8-channel latents) inpaints by latent blending; `demo-inpaint`
is a random 9-channel inpainting UNet; `demo-sdxl-refiner` the refiner of `demo-sdxl`.
"""

from __future__ import annotations

import io
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import LOAD_TIMEOUT
from PIL import Image, ImageDraw

from backend.distributed.job_state import job_record, new_record
from backend.main import create_app
from backend.model.demo import save_demo_model
from backend.model.errors import ImageTaskError, ModelNotFoundError
from backend.model.job_record import JobStatus
from backend.model.task_pipelines import BLENDED, DEDICATED
from backend.model.task_steps import planned_steps
from backend.model.types import (
    GenerationRequest,
    HiresOptions,
    ImageInput,
    OutputOptions,
    RefinerOptions,
)
from demo_model.measures import colour_share, find_object

SIZE = 64


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.float64)


def psnr(first: np.ndarray, second: np.ndarray) -> float:
    error = np.mean((first - second) ** 2)
    return float("inf") if error == 0 else 10 * np.log10(255**2 / error)


def shape_image(colour: str, box: tuple[int, int, int, int] = (18, 18, 46, 46)) -> Image.Image:
    """A coloured circle on white, as the trained demo draws them."""
    image = Image.new("RGB", (SIZE, SIZE), "white")
    ImageDraw.Draw(image).ellipse(box, fill=colour)
    return image


def box_mask(box: tuple[int, int, int, int]) -> Image.Image:
    mask = Image.new("L", (SIZE, SIZE), 0)
    mask.paste(255, box)
    return mask


CENTRE = (16, 16, 48, 48)
INSIDE = (slice(CENTRE[1], CENTRE[3]), slice(CENTRE[0], CENTRE[2]))


def outside(box: tuple[int, int, int, int] = CENTRE) -> np.ndarray:
    keep = np.ones((SIZE, SIZE), bool)
    keep[box[1] : box[3], box[0] : box[2]] = False
    return keep


def request(prompt: str = "a blue square, on a white background", **fields) -> GenerationRequest:
    values = {"width": SIZE, "height": SIZE, "steps": 10, "guidance_scale": 5.0, "seed": 3}
    return GenerationRequest(prompt, "", **{**values, **fields})


@pytest.fixture(scope="module")
def task_models(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("task-models")
    shutil.copytree(models_dir / "demo", folder / "demo")
    save_demo_model(folder / "demo-inpaint", "sd-inpaint")
    save_demo_model(folder / "demo-sdxl", "sdxl")
    save_demo_model(folder / "demo-sdxl-refiner", "sdxl-refiner")
    return folder


@pytest.fixture(scope="module")
def engine(task_models: Path, base_settings: dict[str, object]):
    overrides = {"MODELS_DIR": str(task_models), "MAX_LOADED_MODELS": 3}
    app = create_app({**base_settings, **overrides, "REFINER_MODEL": "demo-sdxl-refiner"})
    engine = app.extensions["engine"]
    assert engine.wait_until_loaded(LOAD_TIMEOUT)
    yield engine
    engine.stop(timeout=30)


def draw(engine, req: GenerationRequest) -> tuple[list[np.ndarray], dict]:
    result = engine.generate(req)
    return [pixels(each.data) for each in result.images], result.notes


def steps_seen(engine, req: GenerationRequest) -> tuple[list[tuple[int, int]], list, dict]:
    """The (step, total) pairs the step hook saw while drawing `req`, its images and notes."""
    seen: list[tuple[int, int]] = []
    worker = engine.workers[0]
    worker.step_hook = lambda step, total: seen.append((step, total))
    try:
        images, notes = draw(engine, req)
    finally:
        worker.step_hook = None
    return seen, images, notes


# --- img2img ---


def test_strength_zero_returns_the_input(engine):
    given = shape_image("red")
    (image,), notes = draw(engine, request(init_image=ImageInput((png(given),), 0.0)))
    assert psnr(image, np.asarray(given, np.float64)) > 30
    assert notes == {"task": "img2img", "steps_run": 0}


def test_low_strength_stays_close_to_the_input(engine):
    given = shape_image("red")
    (image,), notes = draw(engine, request(init_image=ImageInput((png(given),), 0.2)))
    assert notes["steps_run"] == 2
    assert psnr(image, np.asarray(given, np.float64)) > 15  # measured: about 20 dB


def test_strength_one_ignores_the_input(engine):
    red, blue = shape_image("red"), Image.new("RGB", (SIZE, SIZE), (20, 200, 30))
    first, _ = draw(engine, request(init_image=ImageInput((png(red),), 1.0)))
    second, _ = draw(engine, request(init_image=ImageInput((png(blue),), 1.0)))
    halfway, _ = draw(engine, request(init_image=ImageInput((png(blue),), 0.5)))
    # The inputs differ everywhere; from pure noise the images nearly agree.
    assert psnr(first[0], second[0]) > 25
    assert psnr(first[0], halfway[0]) < psnr(first[0], second[0])


def test_progress_total_is_the_steps_that_run(engine):
    given = png(shape_image("red"))
    seen, _, notes = steps_seen(engine, request(steps=10, init_image=ImageInput((given,), 0.5)))
    assert notes["steps_run"] == 5
    assert seen == [(step, 5) for step in range(1, 6)]


def test_a_cancelled_img2img_job_stops(engine):
    worker = engine.workers[0]
    started = threading.Event()
    worker.step_hook = lambda step, total: (started.set(), time.sleep(0.2))
    try:
        req = request(steps=40, init_image=ImageInput((png(shape_image("red")),), 0.9))
        job = engine.submit_job(req)
        assert job.total_steps == 36
        assert started.wait(60)
        engine.cancel_job(job.id)
        deadline = time.monotonic() + 60
        while engine.job(job.id).status is not JobStatus.CANCELLED and time.monotonic() < deadline:
            time.sleep(0.05)
        record = engine.job(job.id)
        assert record.status is JobStatus.CANCELLED
        assert record.step < 36
    finally:
        worker.step_hook = None


def test_batched_img2img_jobs_keep_their_own_inputs(make_app, task_models):
    app = make_app(MODELS_DIR=str(task_models), MAX_BATCH_SIZE=4, BATCH_WAIT_MS=1500)
    engine = app.extensions["engine"]
    reqs = [
        request(seed=5, init_image=ImageInput((png(shape_image("red")),), 0.6)),
        request(seed=6, init_image=ImageInput((png(shape_image("blue", (4, 4, 30, 30))),), 0.6)),
    ]
    jobs = [engine.submit_job(each) for each in reqs]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        records = [engine.job(job.id) for job in jobs]
        if all(each.status.final for each in records):
            break
        time.sleep(0.05)
    assert [each.batch_size for each in records] == [2, 2]
    together = [pixels(engine.job_result(job.id).images[0].data) for job in jobs]
    for batched, req in zip(together, reqs, strict=True):
        (alone,), _ = draw(engine, req)
        assert np.abs(batched - alone).max() <= 2


# --- inpainting ---


def test_inpainting_keeps_the_unmasked_pixels(engine):
    given = np.asarray(shape_image("red"), np.float64)
    image_input = ImageInput((png(shape_image("red")),), 0.9, png(box_mask(CENTRE)))
    (image,), notes = draw(engine, request(init_image=image_input))
    assert notes["inpaint_mode"] == BLENDED and notes["task"] == "inpaint"
    assert psnr(image[outside()], given[outside()]) > 30
    assert psnr(image[INSIDE], given[INSIDE]) < 25  # the masked area was repainted


@pytest.mark.parametrize("fill", ["fill", "latent noise", "latent nothing"])
def test_every_fill_repaints_only_the_mask(engine, fill):
    given = np.asarray(shape_image("red"), np.float64)
    image_input = ImageInput((png(shape_image("red")),), 0.8, png(box_mask(CENTRE)), fill=fill)
    (image,), _ = draw(engine, request(steps=5, init_image=image_input))
    assert psnr(image[outside()], given[outside()]) > 30


def test_full_res_inpainting_pastes_back_into_the_whole_image(engine):
    given = shape_image("red")
    small = (24, 24, 40, 40)
    image_input = ImageInput((png(given),), 0.8, png(box_mask(small)), full_res=True)
    images, _ = draw(engine, request(steps=5, num_images=2, init_image=image_input))
    for image in images:
        assert image.shape == (SIZE, SIZE, 3)
        reference = np.asarray(given, np.float64)
        assert psnr(image[outside(small)], reference[outside(small)]) > 30


def test_a_dedicated_inpainting_model_is_used_and_named(engine):
    given = np.asarray(shape_image("red"), np.float64)
    image_input = ImageInput((png(shape_image("red")),), 1.0, png(box_mask(CENTRE)))
    (image,), notes = draw(engine, request(model="demo-inpaint", steps=3, init_image=image_input))
    assert notes["inpaint_mode"] == DEDICATED
    assert psnr(image[outside()], given[outside()]) > 30


def test_an_inpainting_model_refuses_text_only_requests(engine):
    with pytest.raises(ImageTaskError) as error:
        engine.generate(request(model="demo-inpaint", steps=2))
    assert error.value.code == "image_task"


# --- hires fix and refiner ---


@pytest.mark.parametrize("upscaler", ["latent", "lanczos", "nearest"])
def test_hires_fix_returns_the_final_size_and_counts_both_passes(engine, upscaler):
    hires = HiresOptions(128, 96, upscaler, steps=6, strength=0.5)
    seen, images, notes = steps_seen(engine, request(steps=4, hires=hires))
    assert notes["steps_run"] == 4 + 3
    assert [step for step, _ in seen] == list(range(1, 8))  # one scale, growing
    assert {total for _, total in seen} == {7}
    assert images[0].shape == (96, 128, 3)


def test_the_refiner_ensemble_runs(engine):
    refiner = RefinerOptions("demo-sdxl-refiner", 0.5)
    req = request(model="demo-sdxl", width=128, height=128, steps=4, refiner=refiner)
    seen, images, _ = steps_seen(engine, req)
    assert images[0].shape == (128, 128, 3)
    assert seen[-1][0] == seen[-1][1] == 4  # base and refiner share one schedule


def test_the_refiner_is_not_offered_as_a_model(engine):
    available = engine.catalog.available()
    assert "demo-sdxl" in available and "demo-sdxl-refiner" not in available
    with pytest.raises(ModelNotFoundError):
        engine.catalog.resolve("demo-sdxl-refiner")


def test_the_refiner_refuses_non_sdxl_models(engine):
    with pytest.raises(ImageTaskError):
        engine.generate(request(steps=2, refiner=RefinerOptions("demo-sdxl-refiner", 0.5)))


# --- meaning, on the trained demo ---


def test_low_strength_keeps_the_input_and_high_strength_follows_the_prompt(engine):
    # Measured over 8 seeds: strength 0.3 keeps the red circle 8/8; 0.9 turns blue 8/8.
    given = png(shape_image("red"))
    prompt = "a blue square, on a white background"
    kept, _ = draw(engine, request(prompt, num_images=4, init_image=ImageInput((given,), 0.3)))
    found = [find_object(image.astype(np.uint8)) for image in kept]
    assert sum(each.colour == "red" for each in found) >= 3, found
    followed, _ = draw(engine, request(prompt, num_images=4, init_image=ImageInput((given,), 0.9)))
    followed = [image.astype(np.uint8) for image in followed]
    assert sum(colour_share(image, "blue") > colour_share(image, "red") for image in followed) >= 3


def test_inpainting_paints_what_the_prompt_names_inside_the_mask_only(engine):
    white = Image.new("RGB", (SIZE, SIZE), "white")
    image_input = ImageInput((png(white),), 1.0, png(box_mask(CENTRE)))
    prompt = "a green circle in the centre, on a white background"
    for seed in range(3):
        (image,), _ = draw(engine, request(prompt, seed=seed, init_image=image_input))
        assert colour_share(image[INSIDE].astype(np.uint8), "green") > 0.2  # measured 0.34-0.46
        assert psnr(image[outside()], np.full((outside().sum(), 3), 255.0)) > 30


# --- step totals without torch (jobs, the scale-out mode's Redis states) ---


def test_planned_steps_count_what_runs():
    given = ImageInput((b"png",), 0.35)
    assert planned_steps(request(steps=20, init_image=given)) == 7
    assert (
        planned_steps(request(steps=20, hires=HiresOptions(128, 128, steps=0, strength=0.5))) == 30
    )
    assert (
        planned_steps(request(steps=20, hires=HiresOptions(128, 128, steps=8, strength=0.5))) == 24
    )
    assert planned_steps(request(steps=20, init_image=ImageInput((b"png",), 0.0))) == 0


def test_a_queued_scale_out_job_shows_the_steps_it_will_run():
    req = request(steps=20, init_image=ImageInput((png(shape_image("red")),), 0.5))
    state = {**new_record(req, OutputOptions(), None, None, True), "status": "queued"}
    assert job_record(state).total_steps == 10
    assert job_record({**state, "total": 12}).total_steps == 12  # a worker's report wins


def test_task_pipelines_and_the_refiner_share_the_loaded_modules(engine):
    given = png(shape_image("red"))
    engine.generate(request(steps=2, init_image=ImageInput((given,), 0.5)))
    engine.generate(request(steps=2, init_image=ImageInput((given,), 0.5, png(box_mask(CENTRE)))))
    loaded = engine.workers[0].models._loaded
    demo = loaded["demo"]
    for task in ("img2img", "inpaint"):
        for name in ("unet", "vae", "text_encoder", "tokenizer"):
            assert getattr(demo.tasks[task], name) is getattr(demo.pipeline, name), (task, name)
    refiner = RefinerOptions("demo-sdxl-refiner", 0.5)
    engine.generate(request(model="demo-sdxl", width=128, height=128, steps=2, refiner=refiner))
    sdxl = engine.workers[0].models._loaded["demo-sdxl"]
    loaded_refiner = sdxl.tasks["refiners"]["demo-sdxl-refiner"]
    assert loaded_refiner.text_encoder_2 is sdxl.pipeline.text_encoder_2
    assert loaded_refiner.vae is sdxl.pipeline.vae
