"""AUTOMATIC1111's `<lora:name:weight>` prompt syntax: parsed out of the prompt, into `loras`."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from backend.model.types import LoraChoice
from backend.view.loras import problems

# <lora:name>, <lora:name:0.8>; A1111's extra parts (`:te=..`, `:unet=..`) are refused below.
_TAG = re.compile(r"<lora:([^:<>]*)((?::[^:<>]*)*)>", re.IGNORECASE)


def split_prompt(prompt: str) -> tuple[str, tuple[LoraChoice, ...]]:
    """The prompt without its `<lora:...>` tags, and the LoRAs they named (weight default 1;
    weight 0 dropped). ValueError with the reason for a tag this server cannot honour."""
    found: list[LoraChoice] = []

    def take(match: re.Match[str]) -> str:
        name = match[1].strip()
        parts = [part.strip() for part in match[2].split(":")[1:]]
        if not name:
            raise ValueError(f"'{match[0][:80]}' names no LoRA.")
        if len(parts) > 1:
            raise ValueError(
                f"'{match[0][:80]}': separate text-encoder and UNet weights are not supported; "
                "give one weight, as in <lora:name:0.8>."
            )
        weight = 1.0
        if parts and parts[0]:
            try:
                weight = float(parts[0])
            except ValueError:
                raise ValueError(f"'{match[0][:80]}': the weight is not a number.") from None
            if not math.isfinite(weight):
                raise ValueError(f"'{match[0][:80]}': the weight is not a finite number.")
        if weight != 0:
            found.append(LoraChoice(name, weight))
        return " "

    text = _TAG.sub(take, prompt)
    if found or text != prompt:
        # The tags' places leave no double spaces or dangling commas behind.
        text = re.sub(r"\s*,(\s*,)+", ",", re.sub(r"[ \t]{2,}", " ", text)).strip(" ,\t")
    return text, tuple(found)


def tag_problems(prompt: str, family: str, loras_dir: Path | None) -> list[str]:
    """Why the `<lora:...>` tags of `prompt` cannot apply to a model of `family` (empty: fine)."""
    try:
        _, chosen = split_prompt(prompt)
    except ValueError as problem:
        return [str(problem)]
    return problems(chosen, family, loras_dir)


def misplaced_tags(data: dict[str, Any]) -> dict[str, list[str]]:
    """Errors for `<lora:...>` tags in the prompts of an endpoint that takes a `loras` field
    (ours, jobs) or none (OpenAI): only /sdapi/v1 reads them; elsewhere they would be words."""
    errors = {}
    for name in ("prompt", "negative_prompt"):
        found = _TAG.search(data.get(name) or "")
        if found:
            errors[name] = [
                f"'{found[0][:80]}' is AUTOMATIC1111's LoRA syntax, read on /sdapi/v1 only. "
                'Here name LoRAs in the `loras` field: [{"name": "...", "weight": 0.8}].'
            ]
    return errors
