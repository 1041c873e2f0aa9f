"""Images in, through our API (`/image/edit`, `/jobs/edit`) and the Flask test client: what is
accepted, how sizes follow the input, and every hostile input a JSON 4xx in the one error shape.

Whether the drawn image is close to the input is the model layer's to test (test_img2img-style
tests on the demo pipelines); here: shapes, sizes, headers, metadata and errors.
"""

from __future__ import annotations

import base64
import io
import json
import struct
import time
import zlib

import pytest
from helpers import png_size
from PIL import Image

URL = "/image/edit"


def encode(image: Image.Image, fmt: str = "PNG", **save: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save)
    return buffer.getvalue()


def photo(size: tuple[int, int] = (96, 64), mode: str = "RGB") -> Image.Image:
    """A small picture with structure (a gradient and a block), in `mode`."""
    image = Image.linear_gradient("L").resize(size).convert("RGB")
    image.paste((200, 30, 30), (8, 8, size[0] // 2, size[1] // 2))
    return image.convert(mode)


def white_box_mask(size: tuple[int, int] = (96, 64)) -> bytes:
    mask = Image.new("L", size, 0)
    mask.paste(255, (size[0] // 4, size[1] // 4, size[0] * 3 // 4, size[1] * 3 // 4))
    return encode(mask)


def post_form(client, fields: dict[str, object], url: str = URL, **files: bytes):
    data: dict[str, object] = {key: str(value) for key, value in fields.items()}
    for name, content in files.items():
        data[name] = (io.BytesIO(content), f"{name}.png")
    return client.post(url, data=data, content_type="multipart/form-data")


def assert_error(response, status: int, field: str | None = None, text: str = "") -> dict:
    assert response.status_code == status, (response.status_code, response.data[:400])
    body = response.get_json()
    assert isinstance(body, dict) and isinstance(body["error"], str), body
    if field is not None:
        assert field in body["details"], body
    assert text.lower() in body["error"].lower(), body
    return body


# --- what works -------------------------------------------------------------------------------


def test_multipart_img2img_answers_like_generate(client):
    response = post_form(
        client,
        {"prompt": "a red square", "strength": 0.6, "seed": 7, "steps": 4},
        image=encode(photo()),
    )
    assert response.status_code == 200, response.get_json()
    assert response.mimetype == "image/png"
    assert png_size(response.data) == (96, 64)  # the image's own size by default
    assert response.headers["X-Seed"] == "7"
    assert {"X-Seeds", "X-Model", "X-Generation-Time"} <= set(response.headers.keys())
    assert response.headers["X-Task"] == "img2img"
    assert response.headers["X-Steps-Run"] == "2"  # int(4 * 0.6)


def test_json_with_a_data_url_and_a_mask_answers_json_without_the_bytes(client):
    image = "data:image/png;base64," + base64.b64encode(encode(photo())).decode()
    mask = base64.b64encode(white_box_mask()).decode()
    response = client.post(
        URL,
        json={
            "prompt": "a cat",
            "image": image,
            "mask": mask,
            "denoising_strength": 0.5,
            "response_format": "json",
            "num_images": 2,
            "width": 64,
            "height": 64,
        },
    )
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert len(body["images"]) == 2
    assert [png_size(base64.b64decode(each)) for each in body["images"]] == [(64, 64)] * 2
    summary = body["parameters"]["init_image"]
    assert summary == {
        "images": 1,
        "mask": True,
        "strength": 0.5,
        "fill": "original",
        "full_res": False,
    }
    assert len(response.data) < 4 * len(body["image"]) + 4096  # no input image in it
    # The trained demo's UNet takes 8 latent channels: no inpainting variant, mask blending.
    info = body["info"]
    assert info["task"] == "inpaint" and info["inpaint_mode"] == "mask blending on the base model"
    assert info["steps_run"] == int(body["parameters"]["steps"] * 0.5)


def test_form_fields_are_typed_by_the_schema(client):
    response = post_form(
        client,
        {
            "prompt": "x",
            "mask_invert": "true",
            "inpaint_full_res": "1",
            "mask_blur": "0",
            "loras": "[]",
            "inpainting_fill": "latent noise",
            "resize_mode": "crop",
            "width": 64,
            "height": 64,
            "response_format": "json",
        },
        image=encode(photo()),
        mask=white_box_mask(),
    )
    assert response.status_code == 200, response.get_json()
    summary = response.get_json()["parameters"]["init_image"]
    assert summary["fill"] == "latent noise" and summary["full_res"] is True


@pytest.mark.parametrize(
    "mode, fmt",
    [
        ("CMYK", "JPEG"),
        ("I;16", "PNG"),
        ("P", "PNG"),
        ("RGBA", "PNG"),
        ("LA", "PNG"),
        ("L", "JPEG"),
    ],
)
def test_unusual_image_modes_are_converted(client, mode, fmt):
    source = photo((64, 64))
    image = source.convert("L").convert("I;16") if mode == "I;16" else source.convert(mode)
    response = post_form(client, {"prompt": "x", "steps": 2}, image=encode(image, fmt))
    assert response.status_code == 200, response.get_json()
    assert png_size(response.data) == (64, 64)


def test_exif_rotation_is_honoured_in_the_default_size(client):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display: 96x64 stored shows as 64x96
    data = encode(photo((96, 64)), "JPEG", exif=exif)
    response = post_form(client, {"prompt": "x", "steps": 2}, image=data)
    assert response.status_code == 200, response.get_json()
    assert png_size(response.data) == (64, 96)


def test_a_mask_of_another_size_is_resized_to_the_image(client):
    response = post_form(
        client, {"prompt": "x", "steps": 2}, image=encode(photo()), mask=white_box_mask((40, 30))
    )
    assert response.status_code == 200, response.get_json()
    assert png_size(response.data) == (96, 64)


def test_jobs_edit_takes_a_form_and_its_job_succeeds(client):
    response = post_form(
        client, {"prompt": "x", "steps": 2, "seed": 3}, url="/jobs/edit", image=encode(photo())
    )
    assert response.status_code == 202, response.get_json()
    job = response.get_json()
    assert job["parameters"]["init_image"]["images"] == 1
    deadline = time.monotonic() + 60
    while job["status"] not in ("succeeded", "failed") and time.monotonic() < deadline:
        time.sleep(0.05)
        job = client.get(f"/jobs/{job['id']}").get_json()
    assert job["status"] == "succeeded", job
    assert png_size(client.get(job["images"][0]).data) == (96, 64)


def test_hires_fix_and_its_fields_are_accepted_on_generate(client):
    body = {
        "prompt": "x",
        "steps": 2,
        "enable_hr": True,
        "hr_scale": 2,
        "hr_upscaler": "Lanczos",
        "hr_second_pass_steps": 2,
        "denoising_strength": 0.5,
        "response_format": "json",
    }
    response = client.post("/image/generate", json=body)
    assert response.status_code == 200, response.get_json()
    hires = response.get_json()["parameters"]["hires"]
    assert hires == {
        "width": 128,
        "height": 128,
        "upscaler": "lanczos",
        "steps": 2,
        "strength": 0.5,
    }


@pytest.mark.parametrize(
    "body, field",
    [
        ({"enable_hr": True, "hr_scale": 8}, "hr_scale"),
        ({"enable_hr": True, "hr_upscaler": "ESRGAN_4x"}, "hr_upscaler"),
        ({"enable_hr": True, "denoising_strength": 1.5}, "denoising_strength"),
        ({"refiner": "sdxl-refiner"}, "refiner"),
        ({"refiner_switch_at": 1.5}, "refiner_switch_at"),
    ],
)
def test_bad_hires_and_refiner_fields_are_400s_naming_them(client, body, field):
    response = client.post("/image/generate", json={"prompt": "x", **body})
    assert_error(response, 400, field)


# --- hostile input ----------------------------------------------------------------------------


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid PNG head claiming a huge size, and a few bytes of data: a decompression bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    head = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = zlib.compress(b"\x00" * 4096, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", head) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    "data, text",
    [
        (b"this is not an image", "image"),
        (encode(photo())[:200], ""),
        (encode(photo(), "JPEG")[:300], ""),
        (bomb_png(), ""),
    ],
    ids=["not-an-image", "truncated-png", "truncated-jpeg", "bomb"],
)
def test_bad_images_are_400s_naming_the_field(client, data, text):
    start = time.perf_counter()
    response = post_form(client, {"prompt": "x"}, image=data)
    assert_error(response, 400, "image", text)
    assert time.perf_counter() - start < 5  # the bomb's size is read from its head, not decoded


def test_an_all_black_mask_is_refused(client):
    black = encode(Image.new("L", (96, 64), 0))
    body = assert_error(
        post_form(client, {"prompt": "x"}, image=encode(photo()), mask=black), 400, "mask"
    )
    assert "nothing to repaint" in body["error"]


@pytest.mark.parametrize(
    "field, value",
    [
        ("strength", 1.5),
        ("strength", -0.1),
        ("denoising_strength", 2),
        ("mask_blur", 500),
        ("resize_mode", "latent"),
        ("inpainting_fill", "x"),
    ],
)
def test_out_of_range_fields_are_400s(client, field, value):
    image = base64.b64encode(encode(photo())).decode()
    assert_error(client.post(URL, json={"prompt": "x", "image": image, field: value}), 400, field)


@pytest.mark.parametrize("image", ["not base64 at all!", "data:image/png;base64,@@@", "", 12])
def test_invalid_base64_is_a_400(client, image):
    assert_error(client.post(URL, json={"prompt": "x", "image": image}), 400, "image")


def test_multipart_without_the_image_is_a_400_naming_it(client):
    body = assert_error(post_form(client, {"prompt": "x"}), 400, "image")
    assert "image" in body["error"]


def test_json_without_the_image_is_a_400_naming_it(client):
    assert_error(client.post(URL, json={"prompt": "x"}), 400, "image")


def test_another_content_type_is_a_415(client):
    response = client.post(URL, data=b"x", content_type="text/plain")
    assert_error(response, 415, None, "multipart/form-data")


def test_the_hires_fix_is_not_an_edit_field(client):
    image = base64.b64encode(encode(photo())).decode()
    assert_error(
        client.post(URL, json={"prompt": "x", "image": image, "enable_hr": True}), 400, "enable_hr"
    )


# --- body limits ------------------------------------------------------------------------------


def test_upload_routes_take_bodies_over_the_json_limit(client):
    noisy = Image.effect_noise((1024, 1024), 100).convert("RGB")  # about 3 MB as PNG: no squeeze
    data = encode(noisy, compress_level=0)
    assert len(data) > 2_000_000
    response = post_form(client, {"prompt": "x", "steps": 1, "width": 64, "height": 64}, image=data)
    assert response.status_code == 200, response.get_json()


def test_an_upload_over_max_upload_length_is_a_413(make_app):
    client = make_app(MAX_UPLOAD_LENGTH=200_000).test_client()
    response = post_form(client, {"prompt": "x"}, image=b"\0" * 300_000)
    body = assert_error(response, 413, None, "200000 bytes")
    assert "details" not in body or body["details"]


def test_the_json_routes_keep_max_content_length(client):
    response = client.post("/image/generate", json={"prompt": "x" * 70_000})
    assert_error(response, 413, None, "65536 bytes")
    response = client.post("/jobs", json={"prompt": "x" * 70_000})
    assert_error(response, 413, None, "65536 bytes")


def test_a_form_of_ten_thousand_parts_is_refused(client):
    boundary = "b0undary"
    part = f'--{boundary}\r\nContent-Disposition: form-data; name="f"\r\n\r\nx\r\n'
    body = (part * 10_000 + f"--{boundary}--\r\n").encode()
    response = client.post(URL, data=body, content_type=f"multipart/form-data; boundary={boundary}")
    assert response.status_code in (400, 413), response.data[:300]
    assert response.get_json()["error"]


def test_a_json_edit_with_a_large_base64_image_works(client):
    noisy = Image.effect_noise((512, 512), 100).convert("RGB")
    image = base64.b64encode(encode(noisy, compress_level=0)).decode()
    assert len(image) > 65536
    body = {"prompt": "x", "image": image, "steps": 1, "width": 64, "height": 64}
    response = client.post(URL, data=json.dumps(body), content_type="application/json")
    assert response.status_code == 200, response.get_json()


def test_the_worker_picks_the_body_limit_from_the_request_line():
    from backend.http_worker import StageLimits
    from backend.uploads import UPLOAD_PATHS

    limits = StageLimits(max_body=65536, max_upload=2**25, upload_paths=UPLOAD_PATHS)
    for path in ("/image/edit", "/jobs/edit?x=1", "/v1/images/edits", "/sdapi/v1/img2img"):
        assert limits.body_limit(f"POST {path} HTTP/1.1".encode()) == 2**25, path
    for line in (b"POST /image/generate HTTP/1.1", b"POST /jobs HTTP/1.1", b"garbage"):
        assert limits.body_limit(line) == 65536, line
