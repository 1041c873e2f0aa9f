"""Reading a small safetensors file (a LoRA, an embedding) into CPU tensors, again and again.

safetensors' `load_file` (0.8.0) leaks a Python int per tensor on every call: heaptrack traces
about 60 bytes per tensor to the slice objects its Rust binding builds in `get_tensor`. Loading
LoRAs all day (MAX_LORAS_LOADED evicting and reloading) made RSS creep by ~7 KB per load.
Deserializing the file's bytes takes another path that leaks nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def load_tensors(path: Path) -> dict[str, Any]:
    """Every tensor of the safetensors file at `path` (nothing is unpickled)."""
    from safetensors.torch import load

    return load(path.read_bytes())
