"""The trained demo's pieces: deterministic training, the tokenizer, the training scenes and
the measures that score prompt adherence."""

from __future__ import annotations

import random
import subprocess
import sys

import numpy as np

from backend.config import ROOT
from demo_model.measures import find_object
from demo_model.scenes import random_scene, render
from demo_model.tokenizer import build_tokenizer
from demo_model.train import CHECKSUMS
from demo_model.vocabulary import HELD_OUT, words


def test_training_is_deterministic_and_a_saved_vae_trains_the_same_unet(tmp_path):
    """Runs from one seed give the same bytes; so does one that reuses the first run's VAE."""

    def train(name: str, *extra: str) -> str:
        out = tmp_path / name
        command = [sys.executable, "-m", "demo_model.train", "--out", str(out), *extra]
        command += ["--vae-steps", "2", "--diffusion-steps", "2", "--scenes", "64"]
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


def test_the_measures_read_the_renderers_own_scenes_right():
    rng = random.Random(11)
    for _ in range(200):
        scene = random_scene(rng, two_objects=0.0)
        obj, found = scene.objects[0], find_object(np.asarray(render(scene, 128)))
        assert (found.colour, found.shape) == (obj.colour, obj.shape)
        if obj.position is not None:
            assert found.position == obj.position
