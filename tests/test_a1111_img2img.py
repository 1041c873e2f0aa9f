"""AUTOMATIC1111's img2img (`/sdapi/v1/img2img`), the hires fix on its txt2img, and the
upscaler listings: A1111's own API test cases, the real `webuiapi` client, and bad input.

The pixels (img2img close to its input, inpainting leaving the unmasked area) are the model
layer's tests; these check what this dialect promises: sizes, parameters, info and errors.
"""

from __future__ import annotations

import base64
import io
import json

import pytest
import webuiapi
from PIL import Image

from bench.cluster import one_of_each
from tests.helpers import png_size
from tests.redis_server import redis_server  # noqa: F401  (the fixture)

IMG2IMG = "/sdapi/v1/img2img"
TXT2IMG = "/sdapi/v1/txt2img"
# The hires fix's final size is drawn by the model layer's branch (issue 17): until it is
# merged, the engine answers a hires request at the first pass's size. Remove once merged.


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _b64(image: Image.Image, prefix: bool = False) -> str:
    text = base64.b64encode(_png(image)).decode()
    return f"data:image/png;base64,{text}" if prefix else text


def _picture(size: tuple[int, int] = (64, 64)) -> Image.Image:
    """A red square on blue: something with shapes to keep."""
    image = Image.new("RGB", size, (20, 40, 200))
    image.paste((220, 30, 30), (size[0] // 4, size[1] // 4, 3 * size[0] // 4, 3 * size[1] // 4))
    return image


def _mask(size: tuple[int, int] = (64, 64)) -> Image.Image:
    """White (repaint) on the left half."""
    mask = Image.new("L", size, 0)
    mask.paste(255, (0, 0, size[0] // 2, size[1]))
    return mask


@pytest.fixture
def simple_img2img_request() -> dict:
    """A1111's test/test_img2img.py body, as its test suite sends it."""
    return {
        "batch_size": 1, "cfg_scale": 7, "denoising_strength": 0.75, "eta": 0, "height": 64,
        "include_init_images": False, "init_images": [_b64(_picture(), prefix=True)],
        "inpaint_full_res": False, "inpaint_full_res_padding": 0, "inpainting_fill": 0,
        "inpainting_mask_invert": False, "mask": None, "mask_blur": 4, "n_iter": 1,
        "negative_prompt": "", "override_settings": {}, "prompt": "example prompt",
        "resize_mode": 0, "restore_faces": False, "s_churn": 0, "s_noise": 1, "s_tmax": 0,
        "s_tmin": 0, "sampler_index": "Euler a", "seed": -1, "seed_resize_from_h": -1,
        "seed_resize_from_w": -1, "steps": 3, "styles": [], "subseed": -1,
        "subseed_strength": 0, "tiling": False, "width": 64,
    }  # fmt: skip


@pytest.fixture
def simple_txt2img_request() -> dict:
    """A1111's test/test_txt2img.py body."""
    return {
        "batch_size": 1, "cfg_scale": 7, "denoising_strength": 0, "enable_hr": False, "eta": 0,
        "firstphase_height": 0, "firstphase_width": 0, "height": 64, "n_iter": 1,
        "negative_prompt": "", "prompt": "example prompt", "restore_faces": False, "s_churn": 0,
        "s_noise": 1, "s_tmax": 0, "s_tmin": 0, "sampler_index": "Euler a", "seed": -1,
        "seed_resize_from_h": -1, "seed_resize_from_w": -1, "steps": 3, "styles": [],
        "subseed": -1, "subseed_strength": 0, "tiling": False, "width": 64,
    }  # fmt: skip


def _post(client, path: str, body: dict) -> tuple[dict, dict]:
    response = client.post(path, json=body)
    assert response.status_code == 200, response.get_json()
    answer = response.get_json()
    return answer, json.loads(answer["info"])


def _sizes(answer: dict) -> list[tuple[int, int]]:
    return [png_size(base64.b64decode(image)) for image in answer["images"]]


# A1111's test/test_img2img.py, case by case.


def test_img2img_simple_performed(client, simple_img2img_request):
    answer, info = _post(client, IMG2IMG, simple_img2img_request)
    assert _sizes(answer) == [(64, 64)]
    assert answer["parameters"]["init_images"] is None  # A1111 echoes them only when asked
    assert answer["parameters"]["denoising_strength"] == 0.75
    assert info["denoising_strength"] == 0.75
    assert info["sampler_name"] == "Euler a" and info["width"] == 64
    assert "Denoising strength: 0.75" in info["infotexts"][0]
    assert info["steps_run"] == int(info["steps"] * 0.75) and "inpaint_mode" not in info


def test_inpainting_masked_performed(client, simple_img2img_request):
    simple_img2img_request["mask"] = _b64(_mask())
    answer, info = _post(client, IMG2IMG, simple_img2img_request)
    assert _sizes(answer) == [(64, 64)]
    assert info["extra_generation_params"]["Mask blur"] == 4
    assert "Mask blur: 4" in info["infotexts"][0]
    # The trained demo's UNet takes 8 latent channels: no inpainting variant, mask blending.
    assert info["inpaint_mode"] == "mask blending on the base model"


def test_inpainting_with_inverted_masked_performed(client, simple_img2img_request):
    simple_img2img_request["mask"] = _b64(_mask())
    simple_img2img_request["inpainting_mask_invert"] = True
    answer, _ = _post(client, IMG2IMG, simple_img2img_request)
    assert answer["parameters"]["inpainting_mask_invert"] == 1


def test_img2img_sd_upscale_is_refused_clearly(client, simple_img2img_request):
    simple_img2img_request["script_name"] = "sd upscale"
    simple_img2img_request["script_args"] = ["", 8, "Lanczos", 2.0]
    response = client.post(IMG2IMG, json=simple_img2img_request)
    assert response.status_code == 400
    assert "script_name" in response.get_json()["details"]


# A1111's test/test_txt2img.py hires case: now drawn, no longer refused.


def test_txt2img_with_hrfix_performed(client, simple_txt2img_request):
    simple_txt2img_request["enable_hr"] = True
    _, info = _post(client, TXT2IMG, simple_txt2img_request)
    assert (info["width"], info["height"]) == (64, 64)  # A1111: the first pass's size
    extra = info["extra_generation_params"]
    assert extra == {"Denoising strength": 0, "Hires upscale": 2.0, "Hires upscaler": "Latent"}
    assert "Hires upscale: 2, Hires upscaler: Latent" in info["infotexts"][0]


def test_txt2img_with_hrfix_is_hr_scale_times_the_size(client, simple_txt2img_request):
    simple_txt2img_request.update(enable_hr=True, denoising_strength=0.5, height=128)
    answer, _ = _post(client, TXT2IMG, simple_txt2img_request)
    assert _sizes(answer) == [(128, 256)]


def test_hires_fields_reach_the_request_and_info(client, simple_txt2img_request):
    body = {
        **simple_txt2img_request,
        "enable_hr": True,
        "hr_resize_x": 96,
        "hr_upscaler": "Nearest",
        "hr_second_pass_steps": 2,
        "denoising_strength": 0.4,
        "hr_sampler_name": "Euler a",  # the same as the first pass: accepted
        "hr_prompt": "example prompt",
        "hr_checkpoint_name": "Use same checkpoint",
    }
    answer, info = _post(client, TXT2IMG, body)
    extra = info["extra_generation_params"]
    assert extra["Hires resize"] == "96x96" and extra["Hires steps"] == 2
    assert extra["Hires upscaler"] == "Nearest" and extra["Denoising strength"] == 0.4
    assert answer["parameters"]["enable_hr"] is True


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"hr_upscaler": "R-ESRGAN 4x+"}, "hr_upscaler"),
        ({"hr_scale": 9}, "hr_scale"),
        ({"hr_resize_x": 100000}, "hr_resize_x"),
        ({"hr_sampler_name": "DDIM"}, "hr_sampler_name"),
        ({"hr_prompt": "something else"}, "hr_prompt"),
        ({"hr_negative_prompt": "blurry"}, "hr_negative_prompt"),
        ({"hr_checkpoint_name": "other"}, "hr_checkpoint_name"),
        ({"hr_scheduler": "Karras"}, "hr_scheduler"),
        ({"hr_cfg": 3.0}, "hr_cfg"),
        ({"denoising_strength": 1.5}, "denoising_strength"),
        ({"firstphase_width": 60, "firstphase_height": 64}, "firstphase_width"),
        ({"refiner_checkpoint": "sdxl-refiner"}, "refiner_checkpoint"),
    ],
)
def test_hires_values_we_cannot_draw_are_400s_naming_the_field(
    client, simple_txt2img_request, extra, field
):
    body = {**simple_txt2img_request, "enable_hr": True, **extra}
    response = client.post(TXT2IMG, json=body)
    assert response.status_code == 400, response.get_json()
    assert field in response.get_json()["details"], response.get_json()


def test_hires_fields_are_ignored_without_enable_hr(client, simple_txt2img_request):
    body = {**simple_txt2img_request, "hr_upscaler": "R-ESRGAN 4x+", "hr_prompt": "other"}
    _, info = _post(client, TXT2IMG, body)
    assert info["extra_generation_params"] == {}


def test_old_firstphase_fields_make_width_and_height_the_final_size(client, simple_txt2img_request):
    body = {**simple_txt2img_request, "enable_hr": True, "width": 128, "height": 128}
    body.update(firstphase_width=64, firstphase_height=64)
    _, info = _post(client, TXT2IMG, body)
    assert (info["width"], info["height"]) == (64, 64)
    assert info["extra_generation_params"]["Hires resize"] == "128x128"


# The img2img fields.


@pytest.mark.parametrize("mode", [0, 1, 2, 3])
def test_every_resize_mode_gives_width_by_height(client, simple_img2img_request, mode):
    # A wide input: A1111 draws at width x height whatever the input's size.
    body = {**simple_img2img_request, "resize_mode": mode, "height": 128}
    body["init_images"] = [_b64(_picture((96, 48)))]
    answer, _ = _post(client, IMG2IMG, body)
    assert _sizes(answer) == [(64, 128)]


def test_the_mask_is_resized_as_the_images_are(client, simple_img2img_request):
    # A wide input and its mask, white only in the right-most quarter: "crop and resize" cuts
    # that quarter away from the image, so from the mask too (nothing is left to paint).
    mask = Image.new("L", (128, 64), 0)
    mask.paste(255, (100, 0, 128, 64))
    body = {**simple_img2img_request, "init_images": [_b64(_picture((128, 64)))]}
    body.update(mask=_b64(mask), mask_blur=0)
    assert client.post(IMG2IMG, json={**body, "resize_mode": 0}).status_code == 200
    cropped = client.post(IMG2IMG, json={**body, "resize_mode": 1})
    assert cropped.status_code == 400 and "mask" in cropped.get_json()["details"]


def test_include_init_images_echoes_them(client, simple_img2img_request):
    mask = _b64(_mask())
    body = {**simple_img2img_request, "include_init_images": True, "mask": mask}
    answer, _ = _post(client, IMG2IMG, body)
    assert answer["parameters"]["init_images"] == simple_img2img_request["init_images"]
    assert answer["parameters"]["mask"] == mask


def test_batches_and_defaults(client, simple_img2img_request):
    body = {**simple_img2img_request, "batch_size": 2, "n_iter": 2, "seed": 40}
    for name in ("denoising_strength", "mask_blur", "inpainting_fill", "resize_mode"):
        body.pop(name)
    answer, info = _post(client, IMG2IMG, body)
    assert len(answer["images"]) == 4 and info["all_seeds"] == [40, 41, 42, 43]
    parameters = answer["parameters"]
    assert parameters["denoising_strength"] == 0.75  # A1111's defaults
    assert (parameters["mask_blur"], parameters["inpainting_fill"]) == (4, 0)


def test_equal_mask_blur_x_and_y_are_accepted(client, simple_img2img_request):
    body = {**simple_img2img_request, "mask": _b64(_mask()), "mask_blur_x": 8, "mask_blur_y": 8}
    body.pop("mask_blur")
    _, info = _post(client, IMG2IMG, body)
    assert info["extra_generation_params"]["Mask blur"] == 8


def _black_mask() -> str:
    return _b64(Image.new("L", (64, 64), 0))


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"init_images": None}, "init_images"),
        ({"init_images": []}, "init_images"),
        ({"init_images": [base64.b64encode(b"not an image at all").decode()]}, "init_images"),
        ({"init_images": ["%%% not base64 %%%"]}, "init_images"),
        ({"init_images": "one string"}, "init_images"),
        ({"mask": _black_mask()}, "mask"),
        ({"mask": base64.b64encode(b"GIF89a, cut").decode()}, "mask"),
        ({"denoising_strength": 1.5}, "denoising_strength"),
        ({"resize_mode": 7}, "resize_mode"),
        ({"inpainting_fill": 9}, "inpainting_fill"),
        ({"mask_blur": 500}, "mask_blur"),
        ({"mask_blur": None, "mask_blur_x": 2, "mask_blur_y": 6}, "mask_blur_y"),
        ({"inpaint_full_res_padding": -1}, "inpaint_full_res_padding"),
        ({"initial_noise_multiplier": 1.5}, "initial_noise_multiplier"),
        ({"restore_faces": True}, "restore_faces"),
        ({"width": 60}, "width"),
        ({"sampler_name": "Warp Drive"}, "sampler_name"),
        ({"refiner_checkpoint": "sdxl-refiner"}, "refiner_checkpoint"),
    ],
)
def test_bad_img2img_input_is_a_400_naming_the_field(client, simple_img2img_request, change, field):
    response = client.post(IMG2IMG, json={**simple_img2img_request, **change})
    assert response.status_code == 400, response.get_json()
    body = response.get_json()
    assert field in body["details"], body


def test_an_all_black_mask_says_there_is_nothing_to_paint(client, simple_img2img_request):
    response = client.post(IMG2IMG, json={**simple_img2img_request, "mask": _black_mask()})
    assert "black" in json.dumps(response.get_json()).lower()


def test_upscaler_listings(client):
    upscalers = client.get("/sdapi/v1/upscalers").get_json()
    assert [each["name"] for each in upscalers] == ["None", "Lanczos", "Nearest"]
    assert set(upscalers[0]) == {"name", "model_name", "model_path", "model_url", "scale"}
    modes = client.get("/sdapi/v1/latent-upscale-modes").get_json()
    assert modes == [{"name": "Latent"}]


def test_the_hires_final_size_keeps_max_width(make_app, simple_txt2img_request):
    client = make_app(MAX_WIDTH=128, MAX_HEIGHT=128).test_client()
    body = {**simple_txt2img_request, "enable_hr": True, "hr_scale": 4}
    response = client.post(TXT2IMG, json=body)
    assert response.status_code == 400
    assert "hr_scale" in response.get_json()["details"]


# The real `webuiapi` client against a real gunicorn server.


@pytest.fixture(scope="module")
def api(api_server):
    return webuiapi.WebUIApi(baseurl=f"{api_server.url}/sdapi/v1", steps=3)


def _webuiapi_img2img(api: webuiapi.WebUIApi) -> None:
    """img2img, then inpainting with a mask, as webuiapi's users write them."""
    result = api.img2img(
        images=[_picture()], prompt="a red square", denoising_strength=0.5, seed=5,
        width=64, height=64,
    )  # fmt: skip
    assert [image.size for image in result.images] == [(64, 64)]
    assert result.info["denoising_strength"] == 0.5 and result.info["seed"] == 5
    assert result.parameters["init_images"] is None
    inpainted = api.img2img(
        images=[_picture()], mask_image=_mask(), inpainting_fill=1, prompt="a green circle",
        denoising_strength=0.9, seed=5, width=64, height=64, batch_size=2,
    )  # fmt: skip
    assert [image.size for image in inpainted.images] == [(64, 64)] * 2
    assert inpainted.parameters["inpainting_fill"] == 1
    assert "Mask blur: 4" in inpainted.info["infotexts"][0]


def _webuiapi_hires(api: webuiapi.WebUIApi) -> webuiapi.WebUIApiResult:
    result = api.txt2img(
        prompt="a lighthouse", enable_hr=True, hr_scale=2,
        hr_upscaler=webuiapi.HiResUpscaler.Latent, denoising_strength=0.5, seed=9,
        width=64, height=64,
    )  # fmt: skip
    assert result.info["extra_generation_params"]["Hires upscale"] == 2
    assert (result.info["width"], result.info["height"]) == (64, 64)
    return result


@pytest.mark.slow
def test_webuiapi_img2img_and_inpainting(api):
    _webuiapi_img2img(api)


@pytest.mark.slow
def test_webuiapi_hires_txt2img(api):
    _webuiapi_hires(api)


@pytest.mark.slow
def test_webuiapi_hires_txt2img_is_twice_the_size(api):
    assert _webuiapi_hires(api).image.size == (128, 128)


@pytest.mark.slow
def test_webuiapi_lists_the_upscalers(api):
    assert [each["name"] for each in api.get_upscalers()] == ["None", "Lanczos", "Nearest"]
    assert [each["name"] for each in api.get_latent_upscale_modes()] == ["Latent"]


# The same through the scale-out mode: a real Redis, a gunicorn API and a Celery worker.


@pytest.fixture(scope="module")
def cluster_api(base_settings, redis_server, tmp_path_factory):  # noqa: F811
    settings = {**base_settings, "MAX_BATCH_SIZE": 1}
    with one_of_each(settings, redis_server.url, tmp_path_factory.mktemp("c")) as cluster:
        yield webuiapi.WebUIApi(baseurl=f"{cluster.apis[0].url}/sdapi/v1", steps=3)


@pytest.mark.slow
def test_celery_mode_webuiapi_img2img_and_hires(cluster_api):
    _webuiapi_img2img(cluster_api)
    _webuiapi_hires(cluster_api)
