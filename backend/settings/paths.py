"""Where relative paths in the settings are taken from."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
"""The repository root: relative paths in settings are resolved against it, not the CWD."""


def resolve_path(value: str | os.PathLike[str]) -> Path:
    """A path from the settings, relative ones taken from the repository root."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else ROOT / path
