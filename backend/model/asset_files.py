"""Torch-free reading of the files users add to a model: safetensors headers, folder listings.

The API process lists and validates embeddings and VAEs without importing torch (it has none in
scale-out mode): a safetensors file starts with an 8-byte little-endian length, then that many
bytes of JSON naming every tensor with its dtype and shape.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from backend.model.registry import PICKLE_SUFFIXES

MAX_HEADER_BYTES = 100 * 1024 * 1024  # safetensors' own limit; beyond it the file is not one
# What a request may name: no separators, no `..`, so a name never leaves its folder.
ASSET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class HeaderError(ValueError):
    """A file that is not a readable safetensors file."""


def read_header(path: Path) -> dict[str, Any]:
    """The JSON header of a safetensors file: tensor name -> {dtype, shape}, and __metadata__."""
    try:
        with path.open("rb") as file:
            length = int.from_bytes(file.read(8), "little")
            if not 2 <= length <= MAX_HEADER_BYTES:
                raise HeaderError(f"'{path.name}' is not a safetensors file")
            header = json.loads(file.read(length))
    except (OSError, ValueError) as error:
        raise HeaderError(f"'{path.name}' is not a readable safetensors file ({error})") from None
    if not isinstance(header, dict):
        raise HeaderError(f"'{path.name}' has no safetensors header")
    return header


def tensors(header: dict[str, Any]) -> dict[str, list[int]]:
    """Each tensor's shape, from a header (the metadata entry left out)."""
    return {
        name: list(entry.get("shape", []))
        for name, entry in header.items()
        if name != "__metadata__" and isinstance(entry, dict)
    }


def metadata(header: dict[str, Any]) -> dict[str, str]:
    """The string metadata a safetensors file carries (empty when none)."""
    found = header.get("__metadata__")
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}


def entries(folder: Path) -> list[Path]:
    """The entries of `folder` a request may name: well-named, inside it (symlinks too)."""
    if not folder.is_dir():
        return []
    root = folder.resolve()
    found = []
    for path in sorted(folder.iterdir()):
        try:
            inside = path.resolve().is_relative_to(root)
        except OSError:  # a symlink loop
            continue
        if inside and ASSET_NAME.fullmatch(path.name) and ".." not in path.name:
            found.append(path)
    return found


def is_pickle(path: Path) -> bool:
    """Whether `path` is a pickle file (which can run code when loaded: never loaded)."""
    return path.name.endswith(PICKLE_SUFFIXES)


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from a file, or None if it cannot be read as one."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None
