"""Textual-inversion embeddings, per-request VAEs and switching the default model, on the demo."""

from __future__ import annotations

import base64
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL
from safetensors.numpy import save_file as save_numpy
from safetensors.torch import save_file
from transformers import CLIPTextModel, CLIPTokenizer

from tests.helpers import pixels

URL = "/image/generate"
TOKEN = "verdant"  # not a word the demo's tokenizer knows
PLAIN_KEY = "plain-key-0123456789"
ADMIN_KEY = "admin-key-0123456789"


def embedding_of(demo: Path, word: str) -> torch.Tensor:
    """The demo text encoder's input vectors for `word`: an embedding that means that word."""
    tokenizer = CLIPTokenizer.from_pretrained(demo / "tokenizer")
    encoder = CLIPTextModel.from_pretrained(demo / "text_encoder")
    ids = tokenizer(word, add_special_tokens=False).input_ids
    return encoder.get_input_embeddings().weight[ids].detach().clone()


def original_layout(state: dict[str, torch.Tensor], levels: int) -> dict[str, torch.Tensor]:
    """A diffusers VAE state dict in the original (LDM) layout, as single-file VAEs ship."""
    rules = [
        (r"down_blocks\.(\d+)\.resnets\.(\d+)", r"down.\1.block.\2"),
        (r"down_blocks\.(\d+)\.downsamplers\.0", r"down.\1.downsample"),
        (r"mid_block\.resnets\.(\d+)", lambda m: f"mid.block_{int(m[1]) + 1}"),
        (r"conv_shortcut", "nin_shortcut"),
        (r"conv_norm_out", "norm_out"),
    ]
    converted = {}
    for key, value in state.items():
        new = re.sub(  # the decoder's up blocks count from the other end
            r"up_blocks\.(\d+)\.(resnets|upsamplers)\.(\d+)",
            lambda m: (
                f"up.{levels - 1 - int(m[1])}."
                + (f"block.{m[3]}" if m[2] == "resnets" else "upsample")
            ),
            key,
        )
        for pattern, replacement in rules:
            new = re.sub(pattern, replacement, new)
        converted[new] = value.contiguous()
    return converted


@pytest.fixture(scope="module")
def asset_dirs(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """EMBEDDINGS_DIR and VAES_DIR for the demo: a 'green' token, a tinted VAE in three
    layouts, a VAE of another family, a pickle and an embedding for another text encoder."""
    root = tmp_path_factory.mktemp("assets")
    demo = models_dir / "demo"
    embeddings, vaes = root / "embeddings", root / "vaes"
    embeddings.mkdir()
    vaes.mkdir()
    info = {"step": "100", "sd_checkpoint": "0123abcd", "sd_checkpoint_name": "demo"}
    save_file(
        {"emb_params": embedding_of(demo, "green")}, embeddings / f"{TOKEN}.safetensors", info
    )
    save_file({"emb_params": torch.zeros(2, 768)}, embeddings / "sd15-only.safetensors")
    # diffusers' layout, two vectors: the token stands for two words.
    save_file({"<pair>": embedding_of(demo, "green ring")}, embeddings / "greenring.safetensors")
    vae = AutoencoderKL.from_pretrained(demo / "vae")
    with torch.no_grad():
        vae.decoder.conv_out.bias += 0.25  # every image a little lighter
    vae.save_pretrained(vaes / "tinted", safe_serialization=True)
    state = vae.state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, vaes / "tinted-file.safetensors")
    levels = len(vae.config.block_out_channels)
    save_file(original_layout(state, levels), vaes / "tinted-ldm.safetensors")
    save_numpy(
        {"decoder.conv_in.weight": np.zeros((4, 16, 3, 3), np.float32)}, vaes / "sd3.safetensors"
    )
    (vaes / "pickled.pt").write_bytes(b"not loaded, ever")
    return {"embeddings": embeddings, "vaes": vaes}


@pytest.fixture(scope="module")
def asset_app(base_settings, asset_dirs):
    """The demo app with the asset folders."""
    from backend.main import create_app

    app = create_app(
        {
            **base_settings,
            "EMBEDDINGS_DIR": str(asset_dirs["embeddings"]),
            "VAES_DIR": str(asset_dirs["vaes"]),
        }
    )
    engine = app.extensions["engine"]
    assert engine.wait_until_loaded(120)
    yield app
    engine.stop(timeout=30)


def draw(client, url: str = URL, **body: object) -> np.ndarray:
    """The pixels of one generated image (the prompt is in PNG metadata: compare pixels)."""
    body = {"prompt": "a green ring", "seed": 7, "steps": 4, **body}
    response = client.post(url, json=body)
    assert response.status_code == 200, response.get_json()
    if url == "/sdapi/v1/txt2img":
        return pixels(base64.b64decode(response.get_json()["images"][0]))
    return pixels(response.data)


def same(first: np.ndarray, second: np.ndarray) -> bool:
    return first.shape == second.shape and bool((first == second).all())


# --- embeddings ---


def test_an_embedding_token_draws_as_its_word(asset_app):
    client = asset_app.test_client()
    green, red = draw(client), draw(client, prompt="a red ring")
    token = draw(client, prompt=f"a {TOKEN} ring")
    assert same(token, green) and not same(token, red)
    assert same(draw(client, prompt="a greenring"), green)
    # On AUTOMATIC1111's endpoint too, where clients use embeddings most.
    a1111 = draw(client, "/sdapi/v1/txt2img", prompt=f"a {TOKEN} ring", steps=4, cfg_scale=5.0)
    assert same(a1111, green)


def test_embeddings_are_listed_as_automatic1111_lists_them(asset_app):
    listing = asset_app.test_client().get("/sdapi/v1/embeddings").get_json()
    assert listing["loaded"] == {
        TOKEN: {
            "step": 100,
            "sd_checkpoint": "0123abcd",
            "sd_checkpoint_name": "demo",
            "shape": 64,
            "vectors": 1,
        },
        "greenring": {
            "step": None,
            "sd_checkpoint": None,
            "sd_checkpoint_name": None,
            "shape": 64,
            "vectors": 2,
        },
    }
    # A width of 768 extends SD 1.5's text encoder, not the demo's.
    assert listing["skipped"]["sd15-only"]["shape"] == 768
    assert listing["skipped"]["sd15-only"]["vectors"] == 2


def test_an_embedding_added_later_is_not_hidden_by_the_prompt_cache(
    make_app, models_dir, asset_dirs, tmp_path
):
    folder = tmp_path / "embeddings"
    folder.mkdir()
    client = make_app(EMBEDDINGS_DIR=str(folder)).test_client()
    prompt = f"a {TOKEN} ring"
    before = draw(client, prompt=prompt)  # the token is plain text, and its embedding cached
    shutil.copy(asset_dirs["embeddings"] / f"{TOKEN}.safetensors", folder)
    after = draw(client, prompt=prompt)
    assert not same(before, after)
    assert same(after, draw(client))  # as "green" draws


# --- VAEs ---


def test_a_request_vae_changes_the_image_and_then_leaves_no_trace(asset_app, make_app):
    client = asset_app.test_client()
    own = draw(client)
    tinted = draw(client, vae="tinted")
    assert not same(tinted, own)
    assert tinted.mean() > own.mean()  # the decoder's output was shifted up
    # The same weights as one file, in diffusers' layout and in the original one.
    assert same(draw(client, vae="tinted-file.safetensors"), tinted)
    assert same(draw(client, vae="tinted-ldm"), tinted)
    assert same(draw(client, vae="None"), own)
    # AUTOMATIC1111 clients choose it in override_settings.
    a1111 = {"steps": 4, "cfg_scale": 5.0}
    chosen = {"override_settings": {"sd_vae": "tinted"}, **a1111}
    assert same(draw(client, "/sdapi/v1/txt2img", **chosen), tinted)
    # Afterwards, byte for byte what a server that never swapped draws.
    fresh = make_app().test_client()
    assert same(draw(client), draw(fresh))
    assert same(
        draw(client, "/sdapi/v1/txt2img", **a1111), draw(fresh, "/sdapi/v1/txt2img", **a1111)
    )


def test_vaes_are_listed_by_name_never_by_path(asset_app, asset_dirs):
    listing = asset_app.test_client().get("/sdapi/v1/sd-vae").get_json()
    assert listing == [
        {"model_name": "sd3", "filename": "sd3.safetensors"},
        {"model_name": "tinted", "filename": "tinted"},
        {"model_name": "tinted-file", "filename": "tinted-file.safetensors"},
        {"model_name": "tinted-ldm", "filename": "tinted-ldm.safetensors"},
    ]
    assert str(asset_dirs["vaes"]) not in str(listing)


@pytest.mark.parametrize(
    ("vae", "says"),
    [
        ("missing", "Unknown VAE 'missing'. Known: None, Automatic, sd3.safetensors, tinted"),
        ("../vaes/tinted", "Unknown VAE"),
        ("pickled.pt", "pickle file"),
        ("sd3", "decodes 16-channel latents; model 'demo' (sd) makes 8-channel ones"),
    ],
)
def test_a_vae_that_cannot_be_used_is_a_400_naming_it(asset_app, vae, says):
    client = asset_app.test_client()
    response = client.post(URL, json={"prompt": "a ring", "vae": vae})
    assert response.status_code == 400
    assert says in response.get_json()["details"]["vae"][0]
    body = {"prompt": "a ring", "override_settings": {"sd_vae": vae}}
    response = client.post("/sdapi/v1/txt2img", json=body)
    assert response.status_code == 400
    assert says in response.get_json()["details"]["override_settings"]["sd_vae"][0]


def test_default_vae_serves_requests_that_name_none(make_app, asset_dirs, asset_app):
    reference = asset_app.test_client()
    client = make_app(VAES_DIR=str(asset_dirs["vaes"]), DEFAULT_VAE="tinted").test_client()
    response = client.post(
        URL, json={"prompt": "a green ring", "seed": 7, "response_format": "json"}
    )
    assert response.get_json()["parameters"]["vae"] == "tinted"
    assert same(draw(client), draw(reference, vae="tinted"))
    assert same(draw(client, vae="Automatic"), draw(reference, vae="tinted"))
    assert same(draw(client, vae="None"), draw(reference))


# --- options and admin keys ---


def test_posting_options_switches_the_default_model(make_app, two_models_dir):
    client = make_app(MODELS_DIR=str(two_models_dir)).test_client()
    response = client.post("/sdapi/v1/options", json={"sd_model_checkpoint": "other [0123abcd]"})
    assert response.status_code == 200 and response.get_json() is None
    assert client.get("/sdapi/v1/options").get_json()["sd_model_checkpoint"] == "other"
    assert client.get("/models").get_json()["default"] == "other"
    response = client.post(URL, json={"prompt": "a ring"})
    assert response.status_code == 200 and response.headers["X-Model"] == "other"
    # The configured default stays servable by name, wherever its folder is.
    assert client.post(URL, json={"prompt": "a ring", "model": "demo"}).status_code == 200
    # Other options are accepted and ignored; an unknown model is a 404 naming those there are.
    assert client.post("/sdapi/v1/options", json={"CLIP_stop_at_last_layers": 2}).status_code == 200
    response = client.post("/sdapi/v1/options", json={"sd_model_checkpoint": "nope"})
    assert response.status_code == 404 and "demo" in str(response.get_json())
    assert client.get("/sdapi/v1/options").get_json()["sd_model_checkpoint"] == "other"


def test_only_an_admin_key_may_post_options(make_app, two_models_dir):
    client = make_app(
        MODELS_DIR=str(two_models_dir), API_KEYS=PLAIN_KEY, ADMIN_API_KEYS=ADMIN_KEY
    ).test_client()
    body = {"sd_model_checkpoint": "other"}
    assert client.post("/sdapi/v1/options", json=body).status_code == 401
    response = client.post("/sdapi/v1/options", json=body, headers={"X-API-Key": PLAIN_KEY})
    assert response.status_code == 403
    assert "admin key" in response.get_json()["error"]
    assert client.get("/models", headers={"X-API-Key": PLAIN_KEY}).get_json()["default"] == "demo"
    bearer = {"Authorization": f"Bearer {ADMIN_KEY}"}
    assert client.post("/sdapi/v1/options", json=body, headers=bearer).status_code == 200
    # An admin key is an API key everywhere else too.
    assert client.get("/models", headers=bearer).get_json()["default"] == "other"


def test_in_celery_mode_listings_need_no_torch_nor_redis(make_app, asset_dirs):
    # No Redis is reached: the API process lists folders itself; a switch needs Redis.
    app = make_app(
        wait=False,
        QUEUE_BACKEND="celery",
        BROKER_URL="redis://127.0.0.1:9/0",
        EMBEDDINGS_DIR=str(asset_dirs["embeddings"]),
        VAES_DIR=str(asset_dirs["vaes"]),
    )
    client = app.test_client()
    response = client.post("/sdapi/v1/options", json={"sd_model_checkpoint": "demo"})
    assert response.status_code == 503
    assert "Redis" in response.get_json()["error"]
    assert TOKEN in client.get("/sdapi/v1/embeddings").get_json()["loaded"]
    assert len(client.get("/sdapi/v1/sd-vae").get_json()) == 4
    body = {"prompt": "a ring", "vae": "missing"}
    assert client.post(URL, json=body).status_code == 400
