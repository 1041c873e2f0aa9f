"""Images in, in the scale-out mode: a real redis-server, a gunicorn API process (no torch) and a
worker process. A multipart `/image/edit`, a queued `/jobs/edit` and the real `openai` client's
`images.edit` go end to end; the input travels in the job's Redis record (`to_dict`), and the
Celery message carries only the job's id."""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Iterator

import openai
import pytest
import requests
from helpers import png_size
from PIL import Image

from backend.model.types import GenerationRequest, ImageInput
from bench.cluster import Cluster, one_of_each
from tests.redis_server import redis_server  # noqa: F401  (the fixture)

pytestmark = pytest.mark.slow


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


PHOTO = Image.linear_gradient("L").resize((96, 64)).convert("RGB")
MASK = Image.new("L", (96, 64), 0)
MASK.paste(255, (24, 16, 72, 48))


@pytest.fixture(scope="module")
def cluster(
    base_settings: dict[str, object],
    redis_server,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Cluster]:
    folder = tmp_path_factory.mktemp("cluster")
    with one_of_each(base_settings, redis_server.url, folder) as cluster:
        yield cluster


def test_a_multipart_edit_with_a_mask(cluster: Cluster):
    response = requests.post(
        f"{cluster.apis[0].url}/image/edit",
        files={"image": ("p.png", png(PHOTO)), "mask": ("m.png", png(MASK))},
        data={"prompt": "a red circle", "steps": "2", "seed": "4", "response_format": "json"},
        timeout=120,
    )
    assert response.status_code == 200, response.text[:400]
    body = response.json()
    assert png_size(base64.b64decode(body["image"])) == (96, 64)
    assert body["parameters"]["init_image"]["mask"] is True


def test_a_queued_edit(cluster: Cluster):
    url = cluster.apis[0].url
    response = requests.post(
        f"{url}/jobs/edit",
        files={"image": ("p.png", png(PHOTO))},
        data={"prompt": "x", "steps": "2", "strength": "0.5"},
        timeout=30,
    )
    assert response.status_code == 202, response.text[:400]
    job = response.json()
    deadline = time.monotonic() + 120
    while job["status"] not in ("succeeded", "failed") and time.monotonic() < deadline:
        time.sleep(0.1)
        job = requests.get(f"{url}/jobs/{job['id']}", timeout=10).json()
    assert job["status"] == "succeeded", job
    assert job["parameters"]["init_image"]["strength"] == 0.5
    image = requests.get(f"{url}{job['images'][0]}", timeout=10)
    assert png_size(image.content) == (96, 64)


def test_the_openai_client_edits(cluster: Cluster):
    client = openai.OpenAI(base_url=f"{cluster.apis[0].url}/v1", api_key="x", max_retries=0)
    mask = Image.new("RGBA", (96, 64), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (24, 16, 72, 48))
    response = client.images.edit(
        image=("p.png", png(PHOTO), "image/png"),
        mask=("m.png", png(mask), "image/png"),
        prompt="a star",
        n=2,
        extra_body={"steps": 2},
    )
    sizes = [png_size(base64.b64decode(item.b64_json)) for item in response.data]
    assert sizes == [(96, 64), (96, 64)]


def test_the_request_survives_its_record():
    request = GenerationRequest(
        prompt="x", negative_prompt="", width=96, height=64, steps=2, guidance_scale=7.0,
        init_image=ImageInput(images=(png(PHOTO),), strength=0.5, mask=png(MASK)),
    )  # fmt: skip
    assert GenerationRequest.from_dict(request.to_dict()) == request
