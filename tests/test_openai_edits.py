"""OpenAI's `images.edit` with the official `openai` client, and large uploads through real
gunicorn (the buffering worker gives the upload routes MAX_UPLOAD_LENGTH, the rest keeps
MAX_CONTENT_LENGTH)."""

from __future__ import annotations

import base64
import io
import json
import socket
import time

import openai
import pytest
import requests
from helpers import png_size
from PIL import Image

pytestmark = pytest.mark.slow


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def picture(size: tuple[int, int] = (96, 64)) -> Image.Image:
    image = Image.linear_gradient("L").resize(size).convert("RGB")
    image.paste((30, 30, 200), (8, 8, size[0] // 2, size[1] // 2))
    return image


def alpha_mask(size: tuple[int, int] = (96, 64)) -> bytes:
    """OpenAI's mask: opaque keeps, fully transparent is painted."""
    mask = Image.new("RGBA", size, (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (size[0] // 4, size[1] // 4, size[0] * 3 // 4, size[1] * 3 // 4))
    return png(mask)


@pytest.fixture(scope="module")
def client(api_server):
    return openai.OpenAI(base_url=f"{api_server.url}/v1", api_key="sk-local", max_retries=0)


def sizes(response) -> list[tuple[int, int]]:
    return [png_size(base64.b64decode(item.b64_json)) for item in response.data]


def test_edit_with_a_mask_n_and_size(client, tmp_path):
    (tmp_path / "in.png").write_bytes(png(picture()))
    (tmp_path / "mask.png").write_bytes(alpha_mask())
    with open(tmp_path / "in.png", "rb") as image, open(tmp_path / "mask.png", "rb") as mask:
        response = client.images.edit(
            image=image, mask=mask, prompt="a red ball", n=2, size="128x128"
        )
    assert response.created > 0
    assert sizes(response) == [(128, 128), (128, 128)]
    assert response.data[0].b64_json != response.data[1].b64_json


def test_edit_defaults_to_the_images_own_size_and_takes_openai_fields(client):
    response = client.images.edit(
        image=("in.png", png(picture()), "image/png"),
        prompt="a lake",
        model="gpt-image-1",
        quality="high",
        input_fidelity="low",
        background="auto",
        output_format="png",
        user="someone",
        extra_body={"steps": 2, "seed": 5},
    )
    assert sizes(response) == [(96, 64)]
    assert response.data[0].seed == 5


def test_several_images_are_each_edited_n_times(client):
    first = ("a.png", png(picture((64, 64))), "image/png")
    second = ("b.png", png(picture((64, 64)).rotate(90)), "image/png")
    response = client.images.edit(image=[first, second], prompt="x", n=2, size="64x64")
    assert sizes(response) == [(64, 64)] * 4


def test_a_transparent_image_without_a_mask_is_its_own_mask(client):
    image = picture((64, 64)).convert("RGBA")
    image.paste((0, 0, 0, 0), (16, 16, 48, 48))
    response = client.images.edit(image=("t.png", png(image), "image/png"), prompt="a hole")
    assert sizes(response) == [(64, 64)]


@pytest.mark.parametrize(
    "kwargs, param",
    [
        ({"mask": ("m.png", png(Image.new("L", (96, 64), 255)), "image/png")}, "mask"),
        ({"image": ("x.png", b"not an image", "image/png")}, "image"),
        ({"response_format": "url"}, "response_format"),
        ({"background": "transparent"}, "background"),
    ],
)
def test_refusals_are_openai_400s_naming_the_param(client, kwargs, param):
    arguments = {"image": ("in.png", png(picture()), "image/png"), "prompt": "x", **kwargs}
    with pytest.raises(openai.BadRequestError) as caught:
        client.images.edit(**arguments)
    error = caught.value.body
    assert error["param"] == param, error
    assert error["type"] == "invalid_request_error"


def test_a_5_mb_multipart_upload_reaches_the_app_through_the_worker(api_server):
    noisy = Image.effect_noise((1400, 1400), 100).convert("RGB")
    buffer = io.BytesIO()
    noisy.save(buffer, format="PNG", compress_level=0)
    data = buffer.getvalue()
    assert len(data) > 5_000_000
    response = requests.post(
        f"{api_server.url}/image/edit",
        files={"image": ("big.png", data, "image/png")},
        data={"prompt": "x", "steps": "1", "width": "64", "height": "64"},
        timeout=120,
    )
    assert response.status_code == 200, response.text[:400]
    assert png_size(response.content) == (64, 64)


def read_answer(sock: socket.socket) -> bytes:
    """Everything the server sends before it closes (these answers close the connection)."""
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    return answer


def test_the_same_body_elsewhere_is_refused_at_once(api_server):
    """A declared 5 MB body to a JSON route: a 413 before a byte of it is sent."""
    with socket.create_connection(("127.0.0.1", api_server.port), timeout=10) as sock:
        start = time.perf_counter()
        sock.sendall(
            b"POST /image/generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 5000000\r\n\r\n{"
        )
        answer = read_answer(sock)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert b"65536 bytes" in answer
        assert time.perf_counter() - start < 5


def test_a_declared_body_over_max_upload_length_is_refused_at_once(api_server):
    with socket.create_connection(("127.0.0.1", api_server.port), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/images/edits HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: multipart/form-data; boundary=b\r\n"
            b"Content-Length: 900000000\r\n\r\n--b\r\n"
        )
        answer = read_answer(sock)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert b"request_too_large" in answer


def test_a_chunked_json_edit_over_the_json_limit_is_buffered_and_served(api_server):
    noisy = Image.effect_noise((256, 256), 100).convert("RGB")
    image = base64.b64encode(png(noisy)).decode()
    body = json.dumps({"prompt": "x", "image": image, "steps": 1, "width": 64, "height": 64})
    assert len(body) > 65536

    def pieces():
        for start in range(0, len(body), 30_000):
            yield body[start : start + 30_000].encode()

    response = requests.post(
        f"{api_server.url}/image/edit",
        data=pieces(),  # a generator: requests sends it chunked, with no Content-Length
        headers={"Content-Type": "application/json"},
        timeout=60,
    )
    assert response.status_code == 200, response.text[:400]
    assert png_size(response.content) == (64, 64)
