"""COMPILE and LoRA together: how many graphs torch.compile builds while requests change LoRAs.

    python -m bench.lora_compile [--rounds 3] [--loras 4] [--compile unet]

Serves the trained demo with COMPILE=<components> through the server's own engine, with
`loras` copies of the all-green LoRA (perturbed) in a temporary LORAS_DIR and MAX_LORAS_LOADED
below that, so adapters are swapped in and out. Each round asks for no LoRA, then each LoRA
at weight 1, then one at weight 0.5. Prints the graphs compiled after the warm-up, after the
first round and after the last: with hot-swap slots the count stops growing once every slot
count has been seen (a "recompilation storm" would grow it every round).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import backend  # noqa: F401  (hub offline before diffusers is imported)
from backend.config import load_settings
from backend.model.demo_trained import install_trained_demo
from backend.model.engine import Engine
from backend.model.types import GenerationRequest, LoraChoice
from bench.lora_memory import make_loras


def graphs() -> int:
    """Graphs TorchDynamo has compiled in this process so far."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def main(argv: list[str] | None = None) -> int:
    """Command line: print the graph counts."""
    parser = argparse.ArgumentParser(description="Graphs compiled while LoRAs change.")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--loras", type=int, default=4)
    parser.add_argument("--compile", default="unet")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as temp:
        root = Path(temp)
        install_trained_demo(root / "models" / "demo")
        (root / "loras").mkdir()
        names = make_loras(root / "loras", args.loras)
        settings = load_settings(
            {
                "MODELS_DIR": str(root / "models"),
                "DEFAULT_MODEL": "demo",
                "LOG_LEVEL": "warning",
                "LORAS_DIR": str(root / "loras"),
                "MAX_LORAS_LOADED": max(1, args.loras - 1),
                "COMPILE": args.compile,
                "DEVICE": "cpu",
                "JOBS_DIR": "off",
                "MAX_BATCH_SIZE": 1,
            }
        )
        engine = Engine(settings)
        engine.start()
        if not engine.wait_until_loaded(1800) or not engine.status().ready:
            print(f"the model did not load: {engine.status().error}", file=sys.stderr)
            return 1
        print(f"warmed up (COMPILE={args.compile}): {graphs()} graphs")
        base = GenerationRequest(
            prompt="a red circle", negative_prompt="", width=64, height=64, steps=2,
            guidance_scale=5.0, seed=1,
        )  # fmt: skip
        sets = [(), *[(LoraChoice(name, 1.0),) for name in names], (LoraChoice(names[0], 0.5),)]
        started = time.monotonic()
        for round_ in range(1, args.rounds + 1):
            for loras in sets:
                engine.generate(replace(base, loras=loras))
            elapsed = time.monotonic() - started
            print(f"round {round_}: {graphs()} graphs ({len(sets)} requests, {elapsed:.0f} s)")
        engine.stop(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
