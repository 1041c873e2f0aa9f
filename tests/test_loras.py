"""LoRA per request, on the trained demo and its all-green LoRA (demo_model/loras/).

The all-green LoRA turns every shape green whatever colour the prompt names: at weight 1 a red
circle comes out green, at weight 0 nothing changes, and without it the server draws exactly
what a server that never loaded a LoRA draws.
"""

from __future__ import annotations

import base64
import io
import json
import shutil
import struct
import time
from pathlib import Path

import numpy as np
import pytest
import webuiapi
from conftest import LOAD_TIMEOUT
from PIL import Image

from backend.main import create_app
from backend.model.errors import LoraError
from backend.model.lora_adapters import LoraAdapters
from backend.model.types import GenerationRequest, LoraChoice
from demo_model.lora_kohya import to_kohya
from demo_model.measures import find_object

RED_CIRCLE = "a red circle in the centre, on a white background"
DRAW = {"seed": 11, "num_images": 4, "width": 64, "height": 64, "response_format": "json"}
QUICK = {
    "seed": 11,
    "num_images": 2,
    "steps": 3,
    "width": 64,
    "height": 64,
    "response_format": "json",
}  # to compare bytes


def write_header_only(path: Path, shapes: dict[str, list[int]]) -> None:
    """A safetensors file of zero-filled float16 tensors with these names and shapes."""
    header, offset = {}, 0
    for name, shape in shapes.items():
        size = 2 * int(np.prod(shape))
        header[name] = {"dtype": "F16", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + bytes(offset))


def write_text_encoder_lora(path: Path, width: int) -> None:
    """A random LoRA on the demo text encoder's first attention (its embeddings change)."""
    import torch
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(0)
    prefix = "text_encoder.text_model.encoder.layers.0.self_attn"
    tensors = {}
    for projection in ("q_proj", "v_proj"):
        tensors[f"{prefix}.{projection}.lora_A.weight"] = torch.randn(4, width, generator=generator)
        tensors[f"{prefix}.{projection}.lora_B.weight"] = torch.randn(width, 4, generator=generator)
    save_file(tensors, str(path))


@pytest.fixture(scope="module")
def loras_dir(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """All-green in both formats, a text-encoder LoRA, and an SDXL-shaped one (header only)."""
    folder = tmp_path_factory.mktemp("loras")
    shutil.copy(models_dir / "loras" / "all-green.safetensors", folder)
    to_kohya(folder / "all-green.safetensors", folder / "kohya-green.safetensors")
    write_header_only(
        folder / "xl-style.safetensors",
        {
            "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.lora_A.weight": [
                4,
                2048,
            ],
            "text_encoder_2.text_model.encoder.layers.0.self_attn.q_proj.lora_A.weight": [4, 1280],
        },
    )
    config = json.loads((models_dir / "demo" / "text_encoder" / "config.json").read_text())
    write_text_encoder_lora(folder / "words.safetensors", config["hidden_size"])
    (folder / "pickled.ckpt").write_bytes(b"not loaded")
    return folder


@pytest.fixture(scope="module")
def lora_app(base_settings: dict[str, object], loras_dir: Path, tmp_path_factory):
    app = create_app(
        {
            **base_settings,
            "LORAS_DIR": str(loras_dir),
            "JOBS_DIR": str(tmp_path_factory.mktemp("lora-jobs")),
        }
    )
    engine = app.extensions["engine"]
    assert engine.wait_until_loaded(LOAD_TIMEOUT)
    yield app
    engine.stop(timeout=30)


@pytest.fixture
def api(lora_app):
    return lora_app.test_client()


def images(response) -> list[np.ndarray]:
    assert response.status_code == 200, response.get_json()
    return [
        np.asarray(Image.open(io.BytesIO(base64.b64decode(each))).convert("RGB"))
        for each in response.get_json()["images"]
    ]


def colours(pictures: list[np.ndarray]) -> list[str | None]:
    return [find_object(picture).colour for picture in pictures]


def test_loras_are_listed_by_name_family_and_format(api):
    listed = {each["name"]: each for each in api.get("/loras").get_json()["loras"]}
    assert set(listed) == {"all-green", "kohya-green", "xl-style", "words"}  # no pickle
    assert listed["all-green"] == {
        "name": "all-green",
        "family": "sd",
        "format": "diffusers",
        "text_encoder": False,
    }
    assert listed["kohya-green"]["format"] == "kohya"
    assert listed["xl-style"]["family"] == "sdxl"
    assert listed["words"]["text_encoder"] is True
    a1111 = {each["name"]: each for each in api.get("/sdapi/v1/loras").get_json()}
    assert a1111["all-green"]["alias"] == "all-green"
    assert a1111["all-green"]["path"] == "all-green.safetensors"  # never a server path
    assert a1111["all-green"]["metadata"]["family"] == "sd"


def test_weight_one_turns_a_red_circle_green_and_weight_zero_changes_nothing(api):
    plain = api.post("/image/generate", json={"prompt": RED_CIRCLE, **DRAW})
    green = api.post(
        "/image/generate",
        json={"prompt": RED_CIRCLE, **DRAW, "loras": [{"name": "all-green", "weight": 1}]},
    )
    zero = api.post(
        "/image/generate",
        json={"prompt": RED_CIRCLE, **DRAW, "loras": [{"name": "all-green", "weight": 0}]},
    )
    assert colours(images(plain)).count("red") >= 3
    assert colours(images(green)).count("green") >= 3
    assert zero.get_json()["images"] == plain.get_json()["images"]  # byte-identical
    assert green.get_json()["parameters"]["loras"] == [{"name": "all-green", "weight": 1.0}]
    assert zero.get_json()["parameters"]["loras"] == []


def test_no_lora_after_loras_is_byte_identical_to_a_fresh_server(api, make_app):
    for name in ("all-green", "kohya-green", "words"):
        body = {"prompt": RED_CIRCLE, **QUICK, "loras": [{"name": name, "weight": 0.7}]}
        assert api.post("/image/generate", json=body).status_code == 200
    after = api.post("/image/generate", json={"prompt": RED_CIRCLE, **QUICK})
    fresh = make_app().test_client().post("/image/generate", json={"prompt": RED_CIRCLE, **QUICK})
    assert after.get_json()["images"] == fresh.get_json()["images"]


def test_the_kohya_layout_loads_and_draws_the_same_image(api):
    def draw(name: str) -> list[str]:
        body = {"prompt": RED_CIRCLE, **QUICK, "loras": [{"name": name}]}
        return api.post("/image/generate", json=body).get_json()["images"]

    assert draw("kohya-green") == draw("all-green")


def test_a_text_encoder_lora_is_not_served_stale_embeddings(api):
    body = {"prompt": RED_CIRCLE, **QUICK}
    first = api.post("/image/generate", json=body).get_json()["images"]
    words = {**body, "loras": [{"name": "words", "weight": 2}]}
    changed = api.post("/image/generate", json=words).get_json()["images"]
    assert changed != first  # the prompt cache did not hand back the plain embeddings
    assert api.post("/image/generate", json=words).get_json()["images"] == changed
    assert api.post("/image/generate", json=body).get_json()["images"] == first


@pytest.mark.parametrize(
    ("loras", "expected"),
    [
        ([{"name": "nope"}], "Available: all-green, kohya-green, words, xl-style"),
        ([{"name": "xl-style"}], "for sdxl models; this model is sd"),
        ([{"name": "all-green", "weight": 5}], "between -4.0 and 4.0"),
        ([{"name": "all-green"}, {"name": "all-green"}], "named twice"),
        ([{"name": "../demo/unet/diffusion_pytorch_model"}], "Unknown LoRA"),
        ([{"name": "pickled"}], "Unknown LoRA"),
        ([{"name": "all-green"}] * 9, "At most 8"),
        ([{"name": "all-green", "scale": 1}], "Unknown field"),
    ],
)
def test_bad_loras_are_a_400_that_says_why(api, loras, expected):
    for path in ("/image/generate", "/jobs"):
        response = api.post(path, json={"prompt": "x", "loras": loras})
        assert response.status_code == 400, response.get_json()
        assert expected in json.dumps(response.get_json()["details"]["loras"])


def test_a1111_tags_are_parsed_out_of_the_prompt(api):
    body = {"prompt": f"<lora:all-green:1> {RED_CIRCLE}", "seed": 11, "batch_size": 4}
    tagged = api.post("/sdapi/v1/txt2img", json=body).get_json()
    plain = api.post("/sdapi/v1/txt2img", json={**body, "prompt": RED_CIRCLE}).get_json()
    assert json.loads(tagged["info"])["prompt"] == RED_CIRCLE
    pictures = [
        np.asarray(Image.open(io.BytesIO(base64.b64decode(each))).convert("RGB"))
        for each in tagged["images"]
    ]
    assert colours(pictures).count("green") >= 3
    assert tagged["images"] != plain["images"]
    unknown = api.post("/sdapi/v1/txt2img", json={"prompt": "<lora:nope:0.5> a cat"})
    assert unknown.status_code == 400
    assert "Available: all-green" in json.dumps(unknown.get_json()["details"]["prompt"])
    bad = api.post("/sdapi/v1/txt2img", json={"prompt": "<lora:all-green:much> a cat"})
    assert bad.status_code == 400 and "not a number" in json.dumps(bad.get_json())


def test_a1111_tags_elsewhere_are_refused_not_read_as_words(api):
    for path, field in (("/image/generate", "prompt"), ("/jobs", "negative_prompt"),
                        ("/v1/images/generations", "prompt")):  # fmt: skip
        body = {"prompt": "a cat", field: "a cat <lora:all-green:0.8>"}
        response = api.post(path, json=body)
        assert response.status_code == 400, response.get_json()
        assert "`loras` field" in json.dumps(response.get_json()), path  # OpenAI's shape too


def test_requests_with_different_lora_sets_never_share_a_batch(make_app):
    app = make_app(MAX_BATCH_SIZE=8, BATCH_WAIT_MS=300)
    client = app.test_client()
    tiny = {"width": 64, "height": 64, "steps": 2}
    bodies = [
        {"prompt": "a", "seed": 1, **tiny},
        {"prompt": "b", "seed": 2, **tiny, "loras": [{"name": "all-green", "weight": 0}]},
        {"prompt": "c", "seed": 3, **tiny, "loras": [{"name": "all-green"}]},
        {"prompt": "d", "seed": 4, **tiny, "loras": [{"name": "all-green", "weight": 0.5}]},
        {"prompt": "e", "seed": 5, **tiny, "loras": [{"name": "all-green"}]},
    ]
    jobs = [client.post("/jobs", json=body).get_json()["id"] for body in bodies]
    deadline, states = time.monotonic() + 60, []
    while time.monotonic() < deadline:
        states = [client.get(f"/jobs/{job}").get_json() for job in jobs]
        if all(state["status"] == "succeeded" for state in states):
            break
        time.sleep(0.05)
    # weight 0 batches with no LoRA; the same set batches together; other sets run alone.
    assert [state["batch_size"] for state in states] == [2, 2, 2, 1, 2]


def test_adapters_are_kept_up_to_max_loras_loaded(make_app, loras_dir):
    app = make_app(LORAS_DIR=str(loras_dir), MAX_LORAS_LOADED=1)
    client = app.test_client()
    for name in ("all-green", "kohya-green", "all-green"):
        body = {"prompt": RED_CIRCLE, **QUICK, "loras": [{"name": name}]}
        assert client.post("/image/generate", json=body).status_code == 200
    adapters = app.extensions["engine"].pipeline().get_list_adapters()
    assert len(adapters["unet"]) == 1  # the least recently used was deleted


def test_a_worker_without_the_file_answers_a_clear_error(lora_app):
    engine = lora_app.extensions["engine"]
    request = GenerationRequest(
        prompt="x", negative_prompt="", width=64, height=64, steps=1, guidance_scale=1.0,
        seed=1, loras=(LoraChoice("gone-from-this-worker"),),
    )  # fmt: skip
    with pytest.raises(LoraError, match="not in this worker's LORAS_DIR"):
        engine.generate(request)


def test_hot_swap_slots_keep_the_modules_and_the_images(models_dir, loras_dir):
    """COMPILE's mode: files swap into fixed slots, so compiled graphs see the same modules."""
    import torch
    from diffusers import StableDiffusionPipeline

    def pipeline():
        loaded = StableDiffusionPipeline.from_pretrained(
            models_dir / "demo", local_files_only=True, dtype=torch.float32
        )
        loaded.set_progress_bar_config(disable=True)
        return loaded

    def draw(target, adapters, name: str | None) -> np.ndarray:
        adapters.apply((LoraChoice(name, 1.0),) if name else ())
        image = target(
            prompt=RED_CIRCLE,
            num_inference_steps=4,
            generator=torch.Generator().manual_seed(3),
            output_type="np",
        ).images[0]
        return image

    plain_pipeline, swapped_pipeline = pipeline(), pipeline()
    plain = LoraAdapters(plain_pipeline, loras_dir, 8, hotswap=False)
    swapped = LoraAdapters(swapped_pipeline, loras_dir, 1, hotswap=True)
    base = draw(plain_pipeline, plain, None)
    for name in ("all-green", "kohya-green", "all-green"):
        # The same image: a slot padded to a higher rank only sums in another order.
        swapped_image = draw(swapped_pipeline, swapped, name)
        assert np.abs(swapped_image - draw(plain_pipeline, plain, name)).max() < 1e-4
        assert list(swapped_pipeline.unet.peft_config) == ["slot0"]  # swapped in place
    assert np.array_equal(draw(swapped_pipeline, swapped, None), base)
    assert swapped.loads == 3


@pytest.mark.slow
def test_webuiapi_txt2img_with_a_lora_tag(api_server):
    client = webuiapi.WebUIApi(baseurl=f"{api_server.url}/sdapi/v1", steps=8)
    tagged = client.txt2img(prompt=f"{RED_CIRCLE} <lora:all-green:1>", seed=11, width=64, height=64)
    plain = client.txt2img(prompt=RED_CIRCLE, seed=11, width=64, height=64)
    assert tagged.image.tobytes() != plain.image.tobytes()
    assert find_object(np.asarray(tagged.image.convert("RGB"))).colour == "green"
    assert "<lora" not in tagged.info["prompt"]
    assert "<lora" not in tagged.images[0].info["parameters"]


@pytest.mark.parametrize(
    ("key", "shape", "family", "layout"),
    [
        ("unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.lora_A.weight",
         [4, 768], "sd", "diffusers"),
        ("unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.lora_A.weight",
         [4, 2048], "sdxl", "diffusers"),
        ("lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight", [4, 320], "sd", "kohya"),
        ("lora_unet_input_blocks_4_1_proj_in.lora_down.weight", [4, 640], "sdxl", "kohya"),
        ("lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_down.weight", [4, 1280], "sdxl",
         "kohya"),
        ("transformer.transformer_blocks.0.attn.add_k_proj.lora_A.weight", [4, 1536], "sd3",
         "diffusers"),
        ("transformer.single_transformer_blocks.0.proj_out.lora_A.weight", [4, 3072], "flux",
         "diffusers"),
        ("lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight", [4, 3072], "flux", "kohya"),
    ],
)  # fmt: skip
def test_the_family_and_layout_are_read_from_the_header(tmp_path, key, shape, family, layout):
    from backend.model.lora_files import describe

    write_header_only(tmp_path / "x.safetensors", {key: shape})
    found = describe(tmp_path / "x.safetensors")
    assert (found.family, found.format, found.rank) == (family, layout, 4)


@pytest.mark.parametrize(
    ("prompt", "text", "loras"),
    [
        ("a cat <lora:all-green:0.8>", "a cat", (("all-green", 0.8),)),
        ("<lora:a> a cat, <lora:b:-1.5>, blue", "a cat, blue", (("a", 1.0), ("b", -1.5))),
        ("a cat <lora:a:0>", "a cat", ()),
        ("a cat", "a cat", ()),
    ],
)
def test_a1111_tags_parse(prompt, text, loras):
    from backend.view.lora_tags import split_prompt

    cleaned, chosen = split_prompt(prompt)
    assert cleaned == text
    assert tuple((each.name, each.weight) for each in chosen) == loras
