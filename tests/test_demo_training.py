"""The trained demo's pieces: deterministic training, the tokenizer, the training scenes and
the measures that score prompt adherence."""

from __future__ import annotations

import random
import subprocess
import sys

import numpy as np
import pytest

from backend.config import ROOT
from backend.model.demo_trained import TRAINED_WEIGHTS
from demo_model.caption_targets import labels
from demo_model.measures import find_object
from demo_model.prompts import quality_prompts
from demo_model.quality import TARGETS, Tally, score
from demo_model.scenes import Scene, place, random_scene, render
from demo_model.tokenizer import build_tokenizer
from demo_model.train import CHECKSUMS
from demo_model.vocabulary import HELD_OUT, words


def test_training_is_deterministic_and_a_saved_vae_trains_the_same_unet(tmp_path):
    """Runs from one seed give the same bytes; so does one that reuses the first run's VAE."""

    def train(name: str, *extra: str) -> str:
        out = tmp_path / name
        command = [sys.executable, "-m", "demo_model.train", "--out", str(out), *extra]
        command += ["--text-steps", "2", "--vae-steps", "2", "--diffusion-steps", "2"]
        command += ["--scenes", "64"]
        subprocess.run(command, cwd=ROOT, check=True, capture_output=True, timeout=600)
        return (out / CHECKSUMS).read_text()

    first = train("first")
    assert "unet/diffusion_pytorch_model.safetensors" in first
    assert train("second") == first
    assert train("reused", "--vae-from", str(tmp_path / "first" / "vae")) == first
    assert train("other-seed", "--seed", "1") != first


def test_every_vocabulary_word_is_one_token_and_any_text_tokenizes():
    tokenizer = build_tokenizer()
    for word in words():
        assert len(tokenizer(word, add_special_tokens=False).input_ids) == 1, word
    assert tokenizer("a sunset over mountains 🦊").input_ids


def test_training_scenes_never_draw_a_held_out_pair():
    rng = random.Random(3)
    for _ in range(3000):
        for obj in random_scene(rng).objects:
            assert (obj.colour, obj.shape) not in HELD_OUT


@pytest.mark.parametrize("size", [64, 128, 256])
def test_the_measures_read_the_renderers_own_scenes_right(size):
    rng = random.Random(11)
    for _ in range(200):
        scene = random_scene(rng, two_objects=0.0)
        obj, found = scene.objects[0], find_object(np.asarray(render(scene, size)))
        assert (found.colour, found.shape) == (obj.colour, obj.shape), (scene, found)
        if obj.position is not None:
            assert found.position == obj.position


def test_every_quality_prompt_can_be_scored_right():
    """Each held-out prompt, drawn by the renderer as asked, scores 100%: none asks for the
    impossible (such as a white star on a white background)."""
    rng = random.Random(5)
    tally = Tally.empty()
    for prompt in quality_prompts():
        objects = tuple(place(rng, o.colour, o.shape, "medium", o.position) for o in prompt.objects)
        score(prompt, np.asarray(render(Scene(prompt.background, objects), 64)), tally)
    assert all(tally.share(measure) == 1.0 for measure in TARGETS), tally


def test_caption_labels_bind_each_detail_to_its_object():
    said = labels(
        "a small red circle on the left and a blue shape on the right, on a gray background"
    )
    assert {k: v for k, v in said.items() if v != "-"} == {
        "count": "2",
        "background": "gray",
        "colour0": "red",
        "shape0": "circle",
        "position0": "left",
        "size0": "small",
        "colour1": "blue",
        "position1": "right",
    }
    assert labels("")["count"] == "0"
    assert labels("star")["shape0"] == "star"


def test_the_lora_trainer_writes_a_lora_that_diffusers_loads_and_that_acts(tmp_path):
    import torch

    from demo_model.quality import load

    out = tmp_path / "lora"
    command = [sys.executable, "-m", "demo_model.lora", "--out", str(out), "--steps", "20"]
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True, timeout=600)
    files = sorted(p.name for p in out.iterdir())
    assert files == [CHECKSUMS, "pytorch_lora_weights.safetensors"]
    assert (out / files[1]).stat().st_size < 200_000
    pipeline = load(TRAINED_WEIGHTS)  # as the server loads it: safetensors only, float32

    def draw() -> np.ndarray:
        generator = torch.Generator().manual_seed(0)
        image = pipeline("a red circle", num_inference_steps=4, generator=generator).images[0]
        return np.asarray(image, dtype=np.int16)

    without = draw()
    pipeline.load_lora_weights(out)
    assert np.abs(draw() - without).mean() > 1.0  # its weights change the image
