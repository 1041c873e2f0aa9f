"""Single-file checkpoints: detected, listed, loaded offline, and drawing what their folder draws.

The demo models are written as single files in the original (LDM/SGM/SD3) key layout by
`demo_model/single_file.py`. The trained `demo` cannot be: its UNet has a text-pooled addition
embedding and 8 latent channels, which the original SD layout has no names for; its random-weight
twin (family "sd" of `backend/model/demo.py`) has SD's real architecture and stands in for it.
"""

from __future__ import annotations

import io
import json
import shutil
import socket
import struct
from pathlib import Path

import pytest
from PIL import Image

from backend.model.checkpoint_file import inspect_checkpoint
from backend.model.demo import build_demo_pipeline, save_demo_model, save_pipeline
from backend.model.errors import ModelFolderError
from demo_model.single_file import main as convert_main
from demo_model.single_file import write

URL = "/image/generate"
# single file -> (the folder it was written from, family)
FILES = {
    "twin-file": ("twin", "sd"),
    "sd2-file": ("twin", "sd"),  # the same weights in SD 2.x's layout (OpenCLIP names)
    "sdxl-file": ("demo-sdxl", "sdxl"),
    "sd3-file": ("demo-sd3", "sd3"),
}


@pytest.fixture(scope="module")
def single_dir(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A MODELS_DIR with demo folders, each also written as one file, plus files to refuse."""
    import torch
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("single")
    # The trained demo is an SD folder whose shapes fit none of the files: the config search
    # must pass it over for the twin.
    shutil.copytree(models_dir / "demo", folder / "demo")
    save_demo_model(folder / "twin", "sd")
    save_demo_model(folder / "demo-sdxl", "sdxl")
    sd3 = build_demo_pipeline("sd3")
    # SD3 files carry no CLIP-L projection: diffusers (like SD3's reference code) uses the
    # identity, so the folder must too for the two to draw the same image.
    with torch.no_grad():
        sd3.text_encoder.text_projection.weight.copy_(torch.eye(32))
    save_pipeline(sd3, folder / "demo-sd3")
    write(folder / "twin", folder / "twin-file.safetensors")
    write(folder / "twin", folder / "sd2-file.safetensors", layout="sd2")
    write(folder / "twin", folder / "sd2-vpred.safetensors", layout="sd2", v_pred=True)
    write(folder / "demo-sdxl", folder / "sdxl-file.safetensors")
    write(folder / "demo-sd3", folder / "sd3-file.safetensors")
    (folder / "old.ckpt").write_bytes(b"\x80\x04\x95")  # a pickle's first bytes; never unpickled
    save_file({"lora_unet_a.lora_down.weight": torch.zeros(2, 2)}, folder / "lora.safetensors")
    return folder


@pytest.fixture(scope="module")
def single_client(single_dir: Path, base_settings: dict):
    from backend.main import create_app

    app = create_app({**base_settings, "MODELS_DIR": str(single_dir), "MAX_LOADED_MODELS": 4})
    assert app.extensions["engine"].wait_until_loaded(120)
    yield app.test_client()
    app.extensions["engine"].stop(timeout=30)


def _pixels(client, model: str, **extra) -> bytes:
    # Steps given: a catalogued demo folder has its own defaults, a file its family's.
    body = {"prompt": "a red star", "negative_prompt": "fog", "model": model, "seed": 5, "steps": 4}
    response = client.post(URL, json={**body, "guidance_scale": 5.0, **extra})
    assert response.status_code == 200, response.get_json()
    with Image.open(io.BytesIO(response.data)) as image:
        return image.tobytes()


@pytest.mark.parametrize("name", FILES)
def test_a_single_file_draws_what_its_folder_draws(single_client, name):
    folder, _family = FILES[name]
    # Pixels, not PNG bytes: the PNG's parameters text names the model, which differs.
    assert _pixels(single_client, name) == _pixels(single_client, folder)


def test_the_full_file_name_is_the_same_model(single_client):
    response = single_client.post(
        URL, json={"prompt": "x", "model": "twin-file.safetensors", "response_format": "json"}
    )
    assert response.get_json()["model"] == "twin-file"


def test_the_v_pred_marker_makes_it_predict_v(single_client):
    assert _pixels(single_client, "sd2-vpred") != _pixels(single_client, "sd2-file")
    engine = single_client.application.extensions["engine"]
    assert engine.pipeline("sd2-vpred").scheduler.config.prediction_type == "v_prediction"
    assert engine.pipeline("sd2-file").scheduler.config.prediction_type == "epsilon"


def test_single_files_are_listed_by_every_api(single_client):
    models = {m["name"]: m for m in single_client.get("/models").get_json()["models"]}
    for name, (_folder, family) in FILES.items():
        assert models[name]["family"] == family
    assert "lora" not in models and "old.ckpt" not in models and "old" not in models
    openai = {m["id"] for m in single_client.get("/v1/models").get_json()["data"]}
    a1111 = {m["model_name"] for m in single_client.get("/sdapi/v1/sd-models").get_json()}
    assert set(FILES) <= openai and set(FILES) <= a1111


@pytest.mark.parametrize(
    ("model", "words"),
    [("old.ckpt", ["'old.ckpt'", "pickle"]), ("lora", ["'lora.safetensors'", "not a checkpoint"])],
)
def test_pickles_and_unknown_layouts_are_refused_by_name(single_client, model, words):
    response = single_client.post(URL, json={"prompt": "x", "model": model})
    assert response.status_code == 503
    error = response.get_json()["error"]
    assert all(word in error for word in words), error


def test_a_missing_config_folder_says_what_to_fetch_and_where(make_app, single_dir, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(single_dir / "sdxl-file.safetensors", models)
    app = make_app(MODELS_DIR=str(models), DEFAULT_MODEL="sdxl-file")
    error = app.extensions["engine"].status().error
    assert "hf download stabilityai/stable-diffusion-xl-base-1.0" in error
    assert '--include "model_index.json"' in error and "configs/sdxl" in error
    # The configs alone (no weights), where the message says, are enough.
    configs = models / "configs" / "sdxl"
    shutil.copytree(single_dir / "demo-sdxl", configs, ignore=shutil.ignore_patterns("*.safet*"))
    app = make_app(MODELS_DIR=str(models), DEFAULT_MODEL=str(models / "sdxl-file.safetensors"))
    client = app.test_client()
    assert client.get("/health").status_code == 200
    assert _pixels(client, "sdxl-file")


def test_loading_makes_no_network_attempt(single_dir, monkeypatch):
    import torch

    from backend.model.catalogue import FAMILY_DEFAULTS, Family
    from backend.model.single_file import CheckpointSpec, inspect_single_file
    from backend.model.single_file_loader import load_checkpoint

    def refuse(*_args, **_kwargs):
        raise AssertionError("network attempt")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    spec = CheckpointSpec(
        "sd3-file", single_dir / "sd3-file.safetensors", Family.SD3,
        FAMILY_DEFAULTS[Family.SD3], models_dir=single_dir,
    )  # fmt: skip
    folder = inspect_single_file(spec)
    assert folder.config == single_dir / "demo-sd3" and folder.absent
    assert load_checkpoint(folder, torch.float32).text_encoder_3 is None


def test_detection_names_each_family(single_dir):
    kinds = {
        name: inspect_checkpoint(single_dir / f"{name}.safetensors").kind
        for name in ("twin-file", "sd2-file", "sdxl-file", "sd3-file")
    }
    assert kinds == {"twin-file": "sd1", "sd2-file": "sd2", "sdxl-file": "sdxl", "sd3-file": "sd3"}


@pytest.mark.parametrize(
    "content",
    [
        b"\x01",  # too short
        struct.pack("<Q", 2**62) + b"{}",  # a header length far past the file's end
        struct.pack("<Q", 4) + b"\xff\xfe{]",  # not JSON
        struct.pack("<Q", 2) + b"[]",  # JSON, but not a header
        struct.pack("<Q", 200_000) + b"[" * 200_000,  # nested past Python's recursion limit
        struct.pack("<Q", 31) + b'{"a": {"dtype": "F32"}, "b": 1}',  # entries without shapes
    ],
)
def test_hostile_headers_are_refused_by_name(tmp_path, content):
    path = tmp_path / "evil.safetensors"
    path.write_bytes(content)
    with pytest.raises(ModelFolderError, match=r"'evil\.safetensors'"):
        inspect_checkpoint(path)


def test_the_converter_command_line(single_dir, tmp_path):
    out = tmp_path / "x.safetensors"
    assert convert_main([str(single_dir / "twin"), str(out), "--layout", "sd2"]) == 0
    assert inspect_checkpoint(out).kind == "sd2"
    header = json.loads(out.read_bytes()[8 : 8 + struct.unpack("<Q", out.read_bytes()[:8])[0]])
    assert "cond_stage_model.model.token_embedding.weight" in header


def test_an_a1111_title_names_the_file(single_client):
    body = {"prompt": "x", "steps": 2, "seed": 1, "width": 64, "height": 64}
    titled = {**body, "override_settings": {"sd_model_checkpoint": "twin-file.safetensors [0a1b]"}}
    response = single_client.post("/sdapi/v1/txt2img", json=titled)
    assert response.status_code == 200, response.get_json()
    assert "Model: twin-file" in json.loads(response.get_json()["info"])["infotexts"][0]


def _header_only(path: Path, names: dict[str, list[int]], metadata: dict | None = None) -> Path:
    """A file with a safetensors header naming tensors of these shapes (and no data)."""
    header: dict = {
        n: {"dtype": "F16", "shape": s, "data_offsets": [0, 0]} for n, s in names.items()
    }
    if metadata:
        header["__metadata__"] = metadata
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)
    return path


_VAE = {"first_stage_model.decoder.conv_in.weight": [512, 4, 3, 3]}
_UNET = {"model.diffusion_model.input_blocks.0.0.weight": [320, 4, 3, 3]}
_CLIPS = {
    f"text_encoders.clip_{n}.transformer.text_model.embeddings.token_embedding.weight": [49408, w]
    for n, w in (("l", 768), ("g", 1280))
}


_T5 = {"text_encoders.t5xxl.transformer.shared.weight": [32128, 4096]}
_XL_CLIP_G = {"conditioner.embedders.1.model.positional_embedding": [77, 1280]}
_REFINER = {"conditioner.embedders.0.model.text_projection": [1280, 1280]}
_OPEN_CLIP = {"cond_stage_model.model.token_embedding.weight": [49408, 1024]}
_V = {"modelspec.prediction_type": "v"}


def _mmdit(depth: int, attn2: bool = False) -> dict[str, list[int]]:
    names = {
        f"model.diffusion_model.joint_blocks.{i}.context_block.adaLN_modulation.1.bias": [9216]
        for i in range(depth)
    }
    if attn2:
        names["model.diffusion_model.joint_blocks.0.x_block.attn2.qkv.weight"] = [4608, 1536]
    return {
        **names,
        **{
            n.replace("context", "x").replace("adaLN_modulation.1.bias", "mlp.fc1.weight"): [1, 1]
            for n in names
        },
    }


@pytest.mark.parametrize(
    ("names", "metadata", "expected"),
    [
        ({**_mmdit(24), **_CLIPS, **_VAE}, None, ("sd3", False, False)),
        ({**_mmdit(24), **_CLIPS, **_VAE, **_T5}, None, ("sd3", True, False)),
        ({**_mmdit(24, attn2=True), **_CLIPS, **_VAE}, None, ("sd3.5-medium", False, False)),
        ({**_mmdit(38), **_CLIPS, **_VAE}, None, ("sd3.5-large", False, False)),
        ({**_UNET, **_VAE, **_XL_CLIP_G}, _V, ("sdxl", False, True)),
        ({**_UNET, **_VAE, **_OPEN_CLIP, "v_pred": [0]}, None, ("sd2", False, True)),
        ({**_UNET, **_VAE, **_OPEN_CLIP}, None, ("sd2", False, False)),
    ],
)  # fmt: skip
def test_detection_from_names_and_shapes(tmp_path, names, metadata, expected):
    kind = inspect_checkpoint(_header_only(tmp_path / "m.safetensors", names, metadata))
    assert (kind.kind, kind.has_t5, kind.v_prediction) == expected


@pytest.mark.parametrize(
    ("names", "words"),
    [
        ({"double_blocks.0.img_attn.norm.key_norm.scale": [128]}, "FLUX checkpoint"),
        ({**_mmdit(24), **_VAE}, "without its CLIP text encoders"),
        ({"model.diffusion_model.input_blocks.0.0.weight": [320, 9, 3, 3], **_VAE}, "inpainting"),
        ({**_UNET, **_VAE, **_REFINER}, "refiner"),
        ({**_UNET, **_OPEN_CLIP}, "no VAE"),
        ({"lora_unet_a.lora_down.weight": [4, 320]}, "not a checkpoint layout"),
    ],
)  # fmt: skip
def test_layouts_the_server_does_not_serve_are_refused_by_name(tmp_path, names, words):
    with pytest.raises(ModelFolderError, match=r"'m\.safetensors'") as refusal:
        inspect_checkpoint(_header_only(tmp_path / "m.safetensors", names))
    assert words in str(refusal.value)


def test_a_file_linked_from_outside_models_dir_is_unknown(single_dir, tmp_path):
    from backend.model.errors import ModelNotFoundError
    from backend.model.model_catalog import ModelCatalog

    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(single_dir / "twin-file.safetensors", models / "inside.safetensors")
    (models / "escape.safetensors").symlink_to(single_dir / "twin-file.safetensors")
    catalog = ModelCatalog("inside", models)
    assert catalog.available() == ["inside"]
    assert catalog.resolve("inside.safetensors").name == "inside"
    for name in ("escape", "escape.safetensors", "../single0/twin-file"):
        with pytest.raises(ModelNotFoundError):
            catalog.resolve(name)
