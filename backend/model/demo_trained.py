"""Install the trained shapes demo, committed under `demo_model/weights/`, as `models/demo`.

The weights are checked against their SHA256SUMS before anything is copied: a damaged or
half-pulled file is refused with its name, never served. `make train-demo` reproduces them.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from backend.model.demo import write_folder

TRAINED_WEIGHTS = Path(__file__).resolve().parents[2] / "demo_model" / "weights"
CHECKSUMS = "SHA256SUMS"


class DemoWeightsError(RuntimeError):
    """The committed demo weights are missing or do not match their checksums."""


def _listed(folder: Path) -> dict[str, str]:
    """relative path -> SHA-256, as SHA256SUMS in `folder` lists them."""
    sums = folder / CHECKSUMS
    if not sums.is_file():
        raise DemoWeightsError(f"{CHECKSUMS} is missing from the demo weights")
    listed = {}
    for line in sums.read_text().splitlines():
        digest, _, name = line.partition("  ")
        listed[name] = digest
    return listed


def verify_trained_weights(folder: Path = TRAINED_WEIGHTS) -> dict[str, str]:
    """Check every file SHA256SUMS lists; return the listing, or raise DemoWeightsError."""
    listed = _listed(folder)
    for name, digest in listed.items():
        path = folder / name
        if not path.is_file():
            raise DemoWeightsError(f"demo weights file {name} is missing")
        if hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            raise DemoWeightsError(f"demo weights file {name} does not match its checksum")
    return listed


def is_installed(target: Path, source: Path = TRAINED_WEIGHTS) -> bool:
    """Whether `target` holds exactly the committed weights (its SHA256SUMS is theirs)."""
    sums = target / CHECKSUMS
    return sums.is_file() and sums.read_bytes() == (source / CHECKSUMS).read_bytes()


def install_trained_demo(target: Path, source: Path = TRAINED_WEIGHTS) -> Path:
    """Copy the verified weights to `target`, atomically: a reader never sees half."""
    listed = verify_trained_weights(source)

    def copy(staging: Path) -> None:
        for name in [*listed, CHECKSUMS]:
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / name, staging / name)

    return write_folder(target, copy)


DEMO_LORAS = TRAINED_WEIGHTS.parent / "loras"


def install_demo_loras(target: Path, source: Path = DEMO_LORAS) -> list[Path]:
    """Copy the verified demo LoRAs (the all-green one) into LORAS_DIR `target`."""
    listed = verify_trained_weights(source)
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for name in listed:
        if (
            not (target / name).is_file()
            or (target / name).read_bytes() != (source / name).read_bytes()
        ):
            shutil.copyfile(source / name, target / name)
        written.append(target / name)
    return written
