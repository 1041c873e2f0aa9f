"""`make demo-model`: put the demo models where the settings say.

`demo` is the trained shapes model, copied from the committed weights after their checksums
pass (and replaced when it is not exactly them); the others (`demo-sdxl`, `demo-sd3`,
`demo-sd35`, `demo-flux`, `demo-pixart`, `demo-sana`) are built with random weights, if missing.

    python -m backend.model.demo                  # all of them into MODELS_DIR
    python -m backend.model.demo demo-sdxl        # just one of them
    python -m backend.model.demo demo --output D  # into folder D
    python -m backend.model.demo --if-default     # only the default model, if it is a demo
    python -m backend.model.demo demo --random    # the random-weight SD demo instead
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from backend.model.demo import DEMO_FAMILIES, save_demo_model
from backend.model.demo_trained import (
    DemoWeightsError,
    install_demo_loras,
    install_trained_demo,
    is_installed,
)

TRAINED = "demo"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Install the demo models.")
    parser.add_argument(
        "names", nargs="*", choices=[[], *DEMO_FAMILIES], help="demo models (default: all)"
    )
    parser.add_argument("--output", type=Path, help="folder to write one demo model into")
    parser.add_argument("--force", action="store_true", help="rebuild even if the folder exists")
    parser.add_argument(
        "--if-default", action="store_true", help="only the default model, if it is a demo"
    )
    parser.add_argument(
        "--random", action="store_true", help="build `demo` with random weights, untrained"
    )
    return parser


def _present(folder: Path, trained: bool) -> bool:
    """Whether `folder` already holds what would be written there."""
    if trained:
        return is_installed(folder)
    return (folder / "model_index.json").is_file()


def main(argv: list[str] | None = None) -> int:
    """Command line: install demo models where the settings (or --output) say."""
    from backend.config import ConfigError, load_settings
    from backend.model.registry import display_path, resolve_model

    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 2
    targets = [(name, settings.models_dir / name) for name in args.names or DEMO_FAMILIES]
    if args.if_default:
        spec = resolve_model(settings.default_model, settings.models_dir)
        targets = [(spec.name, spec.folder)] if spec.name in DEMO_FAMILIES else []
    elif args.output:
        targets = [(targets[0][0], args.output)]
    for name, folder in targets:
        trained = name == TRAINED and not args.random
        if _present(folder, trained) and not args.force:
            print(f"demo model already at {display_path(folder)}")
            continue
        try:
            if trained:
                install_trained_demo(folder)
            else:
                save_demo_model(folder, DEMO_FAMILIES[name])
        except (OSError, DemoWeightsError) as error:
            print(
                f"cannot write the demo model to {display_path(folder)}: {error}", file=sys.stderr
            )
            return 1
        print(f"demo model written to {display_path(folder)}")
    loras_dir = settings.assets.loras_dir
    # The demo's all-green LoRA (docs/loras.md's examples) goes along with the trained demo,
    # into a LORAS_DIR beside it (the default models/loras), never somewhere unrelated.
    beside = loras_dir.resolve().is_relative_to(settings.models_dir.resolve())
    trained = any(name == TRAINED for name, _ in targets)
    if beside and trained and not args.output and not args.random:
        try:
            for path in install_demo_loras(loras_dir):
                print(f"demo LoRA at {display_path(path)}")
        except (OSError, DemoWeightsError) as error:
            print(f"cannot install the demo LoRA: {error}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
