"""Long prompts, AUTOMATIC1111's emphasis syntax and clip skip, on every dialect and family."""

from __future__ import annotations

import base64

import pytest
from helpers import assert_nearly_identical, pixels

from backend.model.prompt_syntax import parse_prompt_attention, problem

URL = "/image/generate"
SMALL = {"width": 64, "height": 64, "steps": 2, "seed": 11}
# The trained demo's vocabulary words are one token each; its window is 32 tokens (30 of text).
WORDS = "a red circle on the left and a blue square at the top right in the big green background"


def _image(client, body: dict, url: str = URL) -> bytes:
    response = client.post(url, json={**body, "response_format": "json"})
    assert response.status_code == 200, response.get_json()
    return base64.b64decode(response.get_json()["image"])


# AUTOMATIC1111's own doctests of parse_prompt_attention (modules/prompt_parser.py).
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("normal text", [["normal text", 1.0]]),
        ("an (important) word", [["an ", 1.0], ["important", 1.1], [" word", 1.0]]),
        ("(unbalanced", [["unbalanced", 1.1]]),
        ("\\(literal\\]", [["(literal]", 1.0]]),
        ("(unnecessary)(parens)", [["unnecessaryparens", 1.1]]),
        (
            "a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
            [
                ["a ", 1.0],
                ["house", 1.5730000000000004],
                [" ", 1.1],
                ["on", 1.0],
                [" a ", 1.1],
                ["hill", 0.55],
                [", sun, ", 1.1],
                ["sky", 1.4641000000000006],
                [".", 1.1],
            ],
        ),
        ("a BREAK b", [["a", 1.0], ["BREAK", -1], ["b", 1.0]]),
        ("(cat: 1.5 ) [dog]", [["cat", 1.5], [" ", 1.0], ["dog", 1 / 1.1]]),
        ("", [["", 1.0]]),
    ],
)
def test_emphasis_parses_as_automatic1111_parses_it(text, expected):
    assert parse_prompt_attention(text) == expected


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("a [cat:dog:0.5]", "Prompt editing"),
        ("a [dog:5]", "Prompt editing"),
        ("a [cat::0.25]", "Prompt editing"),
        ("a [(cat:1.2): 3]", "Prompt editing"),
        ("a [cat|dog]", "Alternation"),
        ("a cat AND a dog", "Composable"),
        ("(cat:1.2.3)", "not a number"),
    ],
)
def test_unsupported_syntax_is_named(text, named):
    assert named in problem(text)


@pytest.mark.parametrize(
    "text", ["a [cat] (dog:1.2)", "a [unbalanced", "\\[cat:dog:1\\]", "a:b | c", "[a:b]", "and"]
)
def test_ordinary_text_and_emphasis_are_accepted(text):
    assert problem(text) is None


REFUSED = "a [cat:dog:0.5]"


@pytest.mark.parametrize(
    ("url", "body"),
    [
        (URL, {}),
        ("/generate", {}),
        ("/jobs", {}),
        ("/v1/images/generations", {}),
        ("/sdapi/v1/txt2img", {}),
    ],
)
@pytest.mark.parametrize("field", ["prompt", "negative_prompt"])
def test_every_dialect_refuses_unsupported_syntax_naming_the_field(client, url, body, field):
    body = {"prompt": "a cat", field: REFUSED}
    response = client.post(url, json=body)
    assert response.status_code == 400, response.get_json()
    error = response.get_json()
    if url.startswith("/v1/"):  # OpenAI's shape: the field is `param`
        assert error["error"]["param"] == field
        assert "Prompt editing" in error["error"]["message"]
    else:
        assert "Prompt editing" in error["details"][field][0]


def test_emphasis_changes_the_image_and_plain_prompts_are_unchanged(client, make_app):
    body = {"prompt": "red circle", **SMALL}
    plain = _image(client, body)
    # With the prompt cache off a lone plain prompt goes to the pipeline as text, as always.
    uncached = make_app(PROMPT_CACHE_SIZE=0).test_client()
    assert _image(uncached, body) == plain
    same = _image(client, {**body, "prompt": "(red circle:1.0)"})  # the same pieces
    assert (pixels(same) == pixels(plain)).all()
    weighted = _image(client, {**body, "prompt": "(red:1.5) circle"})
    assert (pixels(weighted) != pixels(plain)).any()
    assert _image(uncached, {**body, "prompt": "(red:1.5) circle"}) == weighted
    assert _image(client, {**body, "prompt": "red circle", "negative_prompt": "[blue]"}) != plain


def test_a1111_and_our_api_draw_the_same_weighted_prompt(client):
    prompt, negative = "a (red:1.3) circle, [small]", "(blue square)"
    ours = _image(client, {"prompt": prompt, "negative_prompt": negative, **SMALL})
    response = client.post(
        "/sdapi/v1/txt2img",
        json={"prompt": prompt, "negative_prompt": negative, **SMALL},
    )
    assert response.status_code == 200, response.get_json()
    theirs = base64.b64decode(response.get_json()["images"][0])
    assert (pixels(theirs) == pixels(ours)).all()


def test_clip_skip_one_is_no_skip_and_two_changes_the_image(client):
    body = {"prompt": "red circle", **SMALL}
    plain = _image(client, body)
    assert _image(client, {**body, "clip_skip": 1}) == plain
    skipped = _image(client, {**body, "clip_skip": 2})
    assert skipped != plain
    response = client.post(
        "/sdapi/v1/txt2img",
        json={
            "prompt": "red circle",
            **SMALL,
            "override_settings": {"CLIP_stop_at_last_layers": 2},
        },
    )
    info = response.get_json()["info"]
    assert '"clip_skip": 2' in info
    assert (pixels(base64.b64decode(response.get_json()["images"][0])) == pixels(skipped)).all()


def test_clip_skip_is_bounded_by_the_text_encoder(client):
    # The demo's text encoder has two layers.
    response = client.post(URL, json={"prompt": "x", "clip_skip": 3})
    assert response.status_code == 400
    assert "at most 2" in response.get_json()["details"]["clip_skip"][0]
    response = client.post(URL, json={"prompt": "x", "clip_skip": 13})
    assert "between 1 (no skip) and 12" in response.get_json()["details"]["clip_skip"][0]
    response = client.post(
        "/sdapi/v1/txt2img",
        json={"prompt": "x", "override_settings": {"CLIP_stop_at_last_layers": 3}},
    )
    details = response.get_json()["details"]
    assert "at most 2" in details["override_settings"]["CLIP_stop_at_last_layers"][0]


def test_long_prompts_are_not_cut_on_the_demo(client):
    long = " ".join([WORDS] * 10)  # 190 tokens: seven chunks of the demo's 30
    assert len(long.split()) == 190
    body = {"prompt": long + " red circle", **SMALL}
    assert _image(client, body) != _image(client, {**body, "prompt": long + " blue star"})
    # BREAK pads the chunk: a different conditioning than the same words run together.
    assert _image(client, {**body, "prompt": "red circle BREAK blue star"}) != _image(
        client, {**body, "prompt": "red circle blue star"}
    )


@pytest.mark.parametrize("model", ["demo-sdxl", "demo-sd3"])
def test_long_prompts_are_not_cut_on_sdxl_and_sd3(family_client, model):
    # Their demo tokenizer makes each letter a token: 200 letters is 200 tokens.
    long = "abcdefghij " * 20
    body = {"prompt": long + "xyz", "model": model, **SMALL, "negative_prompt": "(fog:1.2)"}
    first = _image(family_client, body)
    assert first != _image(family_client, {**body, "prompt": long + "uvw"})
    assert _image(family_client, body) == first  # and from the cache, the same


@pytest.mark.parametrize("model", ["demo-sdxl", "demo-sd3"])
def test_sdxl_and_sd3_weights_change_the_image_and_clip_skip_two_is_their_default(
    family_client, model
):
    body = {"prompt": "a lighthouse", "model": model, **SMALL}
    plain = _image(family_client, body)
    assert _image(family_client, {**body, "prompt": "a (lighthouse:1.4)"}) != plain
    same = _image(family_client, {**body, "clip_skip": 2})
    assert (pixels(same) == pixels(plain)).all()


def test_a_batch_of_long_and_short_prompts_draws_what_each_draws_alone(make_app, client):
    import time

    app = make_app(MAX_BATCH_SIZE=8, BATCH_WAIT_MS=500)
    jobs_client = app.test_client()
    long = " ".join([WORDS] * 4)
    texts = ("red circle", long, "(blue:1.2) star", "green ring")
    bodies = [{"prompt": text, **SMALL} for text in texts]
    jobs = [jobs_client.post("/jobs", json=body).get_json()["id"] for body in bodies]
    deadline, states = time.monotonic() + 120, []
    while time.monotonic() < deadline:
        states = [jobs_client.get(f"/jobs/{job}").get_json() for job in jobs]
        if all(state["status"] == "succeeded" for state in states):
            break
        time.sleep(0.05)
    assert [state["batch_size"] for state in states] == [4, 4, 4, 4]  # one batch in the queue
    batched = [jobs_client.get(f"/jobs/{job}/image").data for job in jobs]
    # The shared app runs them one by one: the long prompt did not change the short ones.
    alone = [_image(client, body) for body in bodies]
    for one, other in zip(batched, alone, strict=True):
        assert_nearly_identical(one, other)
    assert len(set(batched)) == len(bodies)


@pytest.fixture(scope="module")
def sd3_with_t5():
    """demo-sd3 with a tiny T5 as its third encoder (the demo itself has none)."""
    import torch
    from transformers import T5Config, T5EncoderModel

    from backend.model.demo import build_demo_pipeline
    from backend.model.demo_families import build_t5_tokenizer

    pipeline = build_demo_pipeline("sd3")
    tokenizer = build_t5_tokenizer()
    torch.manual_seed(7)
    width = pipeline.transformer.config.joint_attention_dim  # T5's width feeds the transformer
    config = T5Config(
        vocab_size=len(tokenizer), d_model=width, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    t5 = T5EncoderModel(config).eval()  # as from_pretrained leaves it: no dropout
    pipeline.register_modules(text_encoder_3=t5, tokenizer_3=tokenizer)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def test_sd3s_t5_reads_past_its_256_token_window(sd3_with_t5):
    import torch

    from backend.model.catalogue import Family
    from backend.model.prompt_plan import plan
    from backend.model.prompt_weights import encode

    def t5_states(prompt: str) -> torch.Tensor:
        text = plan(sd3_with_t5, Family.SD3, prompt, None)
        assert text.shape()[1] == 512  # the longer window, not 256
        with torch.inference_mode():
            embeds = encode(
                sd3_with_t5, Family.SD3, text, guidance=False, clip_skip=None, shape=text.shape()
            )["prompt_embeds"]
        return embeds[:, -512:]  # T5's part comes after the CLIP chunks

    # The demo's T5 tokenizer reads "a small boat " as 10 tokens: the change is at token ~400.
    start = "a small boat " * 40
    assert not torch.equal(t5_states(start + "red"), t5_states(start + "sun"))


def test_sd3_with_t5_draws_emphasis_and_plain_prompts_as_its_own_encoding_does(sd3_with_t5):
    import torch

    from backend.model.catalogue import Family
    from backend.model.prompt_cache import encode as own_encode
    from backend.model.prompt_plan import plan
    from backend.model.prompt_weights import encode

    text = plan(sd3_with_t5, Family.SD3, "(a lighthouse:1.0)", "fog")
    assert text.positive.pieces == (("a lighthouse", 1.0),)
    with torch.inference_mode():
        ours = encode(sd3_with_t5, Family.SD3, text, guidance=True, clip_skip=None, shape=(1, 256))
        own = own_encode(sd3_with_t5, Family.SD3, "a lighthouse", "fog", True)
        weighted = plan(sd3_with_t5, Family.SD3, "a (lighthouse:1.4)", "fog")
        heavier = encode(
            sd3_with_t5, Family.SD3, weighted, guidance=True, clip_skip=None, shape=(1, 256)
        )
    for name, value in own.items():
        assert torch.allclose(ours[name], value, atol=1e-6), name
    assert not torch.allclose(heavier["prompt_embeds"][:, -256:], own["prompt_embeds"][:, -256:])
