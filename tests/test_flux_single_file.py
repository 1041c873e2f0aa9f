"""FLUX.1 single files: an all-in-one file, or BFL's transformer alone paired with a folder.

The tiny demo FLUX (dev-like with a guidance embedding, schnell-like without) is written by
`demo_model/single_file.py` in ComfyUI's all-in-one layout and in Black Forest Labs'
transformer-only layout; each must draw, through the server, what its diffusers folder draws.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest
from PIL import Image

from backend.model.checkpoint_file import inspect_checkpoint
from backend.model.demo import save_demo_model
from backend.model.single_file import resolve_checkpoint
from demo_model.single_file import write

URL = "/image/generate"
# single file -> (the folder it was written from, kind, components it lacks)
FILES = {
    "dev-full": ("demo-flux", "flux-dev", ()),
    "dev-transformer": ("demo-flux", "flux-dev", ("vae", "text_encoder", "text_encoder_2")),
    "schnell-transformer": (
        "demo-flux-schnell",
        "flux-schnell",
        ("vae", "text_encoder", "text_encoder_2"),
    ),
}
_CONFIGS_ONLY = shutil.ignore_patterns("*.safetensors")


@pytest.fixture(scope="module")
def flux_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A MODELS_DIR with the two demo FLUX folders and the files written from them."""
    folder = tmp_path_factory.mktemp("flux")
    save_demo_model(folder / "demo-flux", "flux")
    save_demo_model(folder / "demo-flux-schnell", "flux-schnell")
    write(folder / "demo-flux", folder / "dev-full.safetensors")
    write(folder / "demo-flux", folder / "dev-transformer.safetensors", layout="transformer")
    write(
        folder / "demo-flux-schnell",
        folder / "schnell-transformer.safetensors",
        layout="transformer",
    )
    # configs/flux-dev holds configs alone: enough for the full file; the transformer-only
    # file needs weights for the parts it lacks, so the search passes it over for demo-flux.
    shutil.copytree(folder / "demo-flux", folder / "configs" / "flux-dev", ignore=_CONFIGS_ONLY)
    return folder


@pytest.fixture(scope="module")
def flux_client(flux_dir: Path, base_settings: dict):
    from backend.main import create_app

    app = create_app({**base_settings, "MODELS_DIR": str(flux_dir), "MAX_LOADED_MODELS": 4})
    assert app.extensions["engine"].wait_until_loaded(120)
    yield app.test_client()
    app.extensions["engine"].stop(timeout=30)


def _pixels(client, model: str) -> bytes:
    body = {"prompt": "a red star", "model": model, "seed": 5, "steps": 2, "guidance_scale": 3.5}
    response = client.post(URL, json={**body, "width": 64, "height": 64})
    assert response.status_code == 200, response.get_json()
    with Image.open(io.BytesIO(response.data)) as image:
        return image.tobytes()


@pytest.mark.parametrize("name", FILES)
def test_a_flux_file_draws_what_its_folder_draws(flux_client, name):
    assert _pixels(flux_client, name) == _pixels(flux_client, FILES[name][0])


def test_detection_tells_dev_from_schnell_and_full_from_transformer_only(flux_dir):
    for name, (_folder, kind, missing) in FILES.items():
        found = inspect_checkpoint(flux_dir / f"{name}.safetensors")
        assert (found.kind, found.missing, found.pipeline_class) == (kind, missing, "FluxPipeline")


def test_each_variant_has_its_defaults(flux_dir):
    dev = resolve_checkpoint("dev-transformer", flux_dir).defaults
    schnell = resolve_checkpoint("schnell-transformer", flux_dir).defaults
    assert (dev.steps, dev.guidance_scale) == (28, 3.5)
    assert (schnell.steps, schnell.guidance_scale) == (4, 0.0)


def test_flux_files_are_listed(flux_client):
    models = {m["name"]: m for m in flux_client.get("/models").get_json()["models"]}
    assert all(models[name]["family"] == "flux" for name in FILES)
    openai = {m["id"] for m in flux_client.get("/v1/models").get_json()["data"]}
    assert set(FILES) <= openai


def test_a_transformer_alone_without_its_folder_names_what_to_fetch(make_app, flux_dir, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(flux_dir / "dev-transformer.safetensors", models)
    # A config folder without the weights the file lacks does not do either.
    shutil.copytree(flux_dir / "demo-flux", models / "configs" / "flux-dev", ignore=_CONFIGS_ONLY)
    app = make_app(MODELS_DIR=str(models), DEFAULT_MODEL="dev-transformer")
    error = app.extensions["engine"].status().error
    assert "hf download black-forest-labs/FLUX.1-dev" in error, error
    assert "configs/flux-dev" in error and '--include "model_index.json"' in error
    assert all(f'--include "{c}/*"' in error for c in ("vae", "text_encoder", "text_encoder_2"))
    assert "no weights for vae, text_encoder, text_encoder_2" in error


def _header_only(path: Path, names: list[str], shapes: dict[str, list[int]]) -> Path:
    """A file with a safetensors header naming these tensors (and no data)."""
    import json
    import struct

    header = {n: {"dtype": "F16", "shape": shapes.get(n, [1]), "data_offsets": [0, 0]}
              for n in names}  # fmt: skip
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)
    return path


_BFL = [
    "double_blocks.0.img_attn.norm.key_norm.scale",
    "img_in.weight",
    "vector_in.in_layer.weight",
]
_COMFY = ["model.diffusion_model." + n for n in _BFL]
_ALL = ("vae", "text_encoder", "text_encoder_2")
_PARTS = [
    "vae.decoder.conv_in.weight",
    "text_encoders.clip_l.transformer.text_model.embeddings.token_embedding.weight",
    "text_encoders.t5xxl.transformer.shared.weight",
]


@pytest.mark.parametrize(
    ("names", "kind", "missing"),
    [
        ([*_BFL, "guidance_in.in_layer.weight"], "flux-dev", _ALL),
        (_BFL, "flux-schnell", _ALL),
        ([*_COMFY, "model.diffusion_model.guidance_in.in_layer.weight", *_PARTS], "flux-dev", ()),
        ([*_COMFY, *_PARTS[:2]], "flux-schnell", ("text_encoder_2",)),
    ],
)  # fmt: skip
def test_detection_from_names(tmp_path, names, kind, missing):
    shapes = {"img_in.weight": [3072, 64], "model.diffusion_model.img_in.weight": [3072, 64]}
    found = inspect_checkpoint(_header_only(tmp_path / "f.safetensors", names, shapes))
    assert (found.kind, found.missing) == (kind, missing)


def test_fill_and_depth_files_are_refused_by_name(tmp_path):
    from backend.model.errors import ModelFolderError

    path = _header_only(tmp_path / "fill.safetensors", _BFL, {"img_in.weight": [3072, 384]})
    with pytest.raises(ModelFolderError, match=r"'fill\.safetensors'.*Fill/Depth/Canny"):
        inspect_checkpoint(path)


def test_the_name_mapping_matches_diffusers_at_full_width():
    """At FLUX.1's real width (3072), the conversion is diffusers' own, tensor for tensor."""
    import torch
    from diffusers.loaders.single_file_utils import (
        convert_flux_transformer_checkpoint_to_diffusers,
    )

    from backend.model.flux_layout import _DOUBLE_FUSED, _pairs, to_diffusers, to_original

    torch.manual_seed(0)
    width = 3072
    single = "single_transformer_blocks.0."
    sizes = {"x_embedder.weight": width, single + "proj_mlp.weight": 4 * width,
             single + "proj_mlp.bias": 4 * width}  # fmt: skip
    sizes.update({f"{single}attn.to_{p}.{k}": width for p in "qkv" for k in ("weight", "bias")})
    names = [d for d, _o in _pairs(1, 1)] + [f"norm_out.linear.{k}" for k in ("weight", "bias")]
    names += [f"transformer_blocks.0.{p}.{k}" for parts in _DOUBLE_FUSED.values() for p in parts
              for k in ("weight", "bias")]  # fmt: skip
    # A trailing dimension of 1 keeps it small; the fused splits only see the first one.
    diffusers = {n: torch.randn(sizes.get(n, 4), 1) for n in [*names, *sizes]}
    original = to_original(diffusers)
    reference = convert_flux_transformer_checkpoint_to_diffusers(
        {f"model.diffusion_model.{n}": t for n, t in original.items()}
    )
    ours = to_diffusers(original)
    assert ours.keys() == reference.keys() == diffusers.keys()
    assert all(torch.equal(ours[n], reference[n]) for n in ours)
    assert all(torch.equal(ours[n], diffusers[n]) for n in ours)
