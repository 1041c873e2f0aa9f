"""The deliberately naive reference server, written the way simple tutorials do it.

One global pipeline, a Flask route that calls it under a lock and encodes the PNG: the
baseline `make bench` compares this server with. Served by gunicorn like ours
(`gunicorn -k gthread --threads 16 bench.naive_server:app`); configured by NAIVE_MODEL (a
model folder) and NAIVE_DEVICE. `local_files_only` keeps it offline like ours.
"""

from __future__ import annotations

import io
import os
import threading

import torch
from diffusers import AutoPipelineForText2Image
from flask import Flask, Response, request

DEVICE = os.environ.get("NAIVE_DEVICE", "cuda" if torch.cuda.is_available() else "cpu")
pipe = AutoPipelineForText2Image.from_pretrained(
    os.environ["NAIVE_MODEL"],
    local_files_only=True,
    use_safetensors=True,
    dtype=torch.float16 if DEVICE.startswith("cuda") else torch.float32,
).to(DEVICE)
lock = threading.Lock()
app = Flask(__name__)


@app.post("/image/generate")
def generate() -> Response:
    """Generate one PNG."""
    body = request.get_json()
    with lock:
        image = pipe(
            prompt=body["prompt"],
            width=body["width"],
            height=body["height"],
            num_inference_steps=body["steps"],
            guidance_scale=body["guidance_scale"],
            generator=torch.Generator("cpu").manual_seed(body["seed"]),
        ).images[0]
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return Response(buffer.getvalue(), mimetype="image/png")


@app.get("/health")
def health() -> str:
    """Ready once imported: the model loads at import time."""
    return "ok"
