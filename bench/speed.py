"""`make bench-speed`: what each speed setting gains, measured through the real server.

    python -m bench.speed [--model bench-sd-turbo] [--device auto] [--size N] [--steps 1]
    python -m bench.speed --only baseline,defaults      # a subset of the variants
    python -m bench.speed --rounds 3                    # every variant 3 times, interleaved
    python -m bench.speed --smoke                       # the demo model, tiny counts (make test)

Starts gunicorn once per variant (the same model, size, steps, prompt and seed), measures the
seconds to /health 200 (model load, and compilation when COMPILE is on) and the median latency
of POST /image/generate, and compares each with the baseline, where every speed setting is off.
Run-to-run noise on a shared CPU is around 10%, more than some settings gain: with --rounds N
every variant runs N times, interleaved, and its latency is the median of the N runs' medians.
The plain diffusers call in this process (default settings: SDPA attention) is the reference
that `make bench` also uses; the classic attention row swaps SDPA for the pre-torch-2 processor
on that same pipeline, call for call, so both see the same process state. Prints a table and
writes bench/results/<date>-<device>-speed.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

from bench.run import (
    RESULTS,
    SPEED_OFF,
    _plain_pipeline,
    _say,
    _timed_call,
    add_model_arguments,
    release,
    report_header,
    setup,
)
from bench.server import Server, server_env

# Every speed setting off: the server makes the same pipe() call as plain diffusers.
BASELINE = SPEED_OFF
# Each variant changes the baseline by the settings it names; "defaults" is .env as shipped.
VARIANTS: dict[str, dict[str, Any]] = {
    "baseline": {},
    "channels_last=vae": {"CHANNELS_LAST": "vae"},
    "channels_last=unet": {"CHANNELS_LAST": "unet"},
    "channels_last=unet+vae": {"CHANNELS_LAST": "unet,vae"},
    "fuse_qkv": {"FUSE_QKV": "true"},
    "prompt_cache": {"PROMPT_CACHE_SIZE": 64},
    "tiny_vae": {"TINY_VAE": "true"},
    "compile=vae": {"COMPILE": "vae"},
    "compile=unet+vae": {"COMPILE": "unet,vae"},
    "defaults": None,  # no overrides at all: what a user gets
}
SPEED_SETTINGS = tuple(BASELINE)


def main(argv: list[str] | None = None) -> int:
    """Measure every variant, print the table, write the JSON."""
    args = _parse(argv)
    import torch

    torch.set_flush_denormal(True)  # as the server does on the CPU
    device, size, folder, body = setup(args)
    _say(f"speed settings on {folder} at {size}x{size}, {args.steps} step(s), on {device}")
    plain, classic = _attention_latencies(folder, device, body, args.repeats)
    work = Path(tempfile.mkdtemp(prefix="bench-speed-"))
    settings = {
        "DEFAULT_MODEL": str(folder),
        "MODELS_DIR": str(folder.parent),
        "DEVICE": device,
        "JOBS_DIR": "off",
        "LOG_LEVEL": "info",
        "REQUEST_TIMEOUT_SECONDS": 0,
        "API_KEYS": "",
        "RATE_LIMIT": "",
        "MAX_BATCH_SIZE": 1,
    }
    envs = {name: _variant_env(settings, VARIANTS[name]) for name in args.variants}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in args.variants}
    for _ in range(args.rounds):  # interleaved, so a slow spell of the machine hits every variant
        for name, env in envs.items():
            runs[name].append(_measure(name, env, work, body, args.repeats))
    rows = {name: _combine(measured) for name, measured in runs.items()}
    report = {
        **report_header(device, folder, size, args, rounds=args.rounds),
        "plain_latency_s": plain,
        "classic_attention_latency_s": classic,
        "variants": rows,
    }
    _print_table(report)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    path = args.results_dir / f"{report['date'][:10]}-{device.replace(':', '')}-speed.json"
    path.write_text(json.dumps(report, indent=2))
    _say(f"wrote {path}")
    return 0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_model_arguments(parser)
    parser.add_argument("--repeats", type=int, default=7, help="timed requests per variant")
    parser.add_argument("--rounds", type=int, default=1, help="runs per variant, interleaved")
    parser.add_argument("--only", default=",".join(VARIANTS), help="variants to run")
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    parser.add_argument("--smoke", action="store_true", help="demo model, tiny counts")
    args = parser.parse_args(argv)
    if args.smoke:
        args.model, args.size, args.repeats = "demo", 64, 2
        args.only = "baseline,prompt_cache,defaults"
    args.variants = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in args.variants if name not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


def _variant_env(settings: dict, overrides: dict[str, Any] | None) -> dict:
    """A variant's server settings: the baseline changed by `overrides`, or (None) .env as is."""
    if overrides is None:  # empty values mean "the default", whatever .env says
        return {**settings, **dict.fromkeys(SPEED_SETTINGS, "")}
    return {**settings, **BASELINE, **overrides}


def _attention_latencies(
    folder: Path, device: str, body: dict, repeats: int
) -> tuple[float, float]:
    """Median seconds of the plain call with SDPA (the default) and with the pre-torch-2
    attention processor, alternating on one pipeline."""
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    pipe = _plain_pipeline(folder, device)
    processors = {"sdpa": AttnProcessor2_0, "classic": AttnProcessor}
    seconds: dict[str, list[float]] = {name: [] for name in processors}
    for index in range(repeats + 1):
        for name, processor in processors.items():
            for component in ("unet", "vae"):
                getattr(pipe, component).set_attn_processor(processor())
            elapsed = _timed_call(pipe, body, device)
            if index:  # the first of each is a warm-up
                seconds[name].append(elapsed)
    del pipe
    release(device)
    plain, classic = (statistics.median(seconds[name]) for name in processors)
    _say(f"plain diffusers call: {plain * 1000:.0f} ms, with classic attention "
         f"{classic * 1000:.0f} ms (medians of {repeats}, alternating)")  # fmt: skip
    return plain, classic


def _combine(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One variant's runs as one row: medians, and each run's median latency."""
    return {
        "cold_start_s": statistics.median(run["cold_start_s"] for run in runs),
        "first_request_s": statistics.median(run["first_request_s"] for run in runs),
        "latency_s": statistics.median(run["latency_s"] for run in runs),
        "run_latencies_s": [run["latency_s"] for run in runs],
        "latencies_s": [seconds for run in runs for seconds in run["latencies_s"]],
        "applied": runs[0]["applied"],
    }


def _measure(name: str, env: dict, work: Path, body: dict, repeats: int) -> dict[str, Any]:
    """Cold start and median request latency of one server configuration."""
    server = Server(server_env(env), work / f"{name.replace('=', '-')}.log")
    try:
        cold = server.seconds_until_healthy(timeout=1800)
        session = requests.Session()
        first = _post(session, server.url, body)  # the first request a user would send
        latencies = [_post(session, server.url, body) for _ in range(repeats)]
        settings = _applied(server.log())
    finally:
        server.stop()
    median = statistics.median(latencies)
    _say(
        f"{name}: /health 200 after {cold:.1f} s, first request {first * 1000:.0f} ms, "
        f"then {median * 1000:.0f} ms (median of {repeats}); {settings}"
    )
    return {
        "cold_start_s": cold,
        "first_request_s": first,
        "latency_s": median,
        "latencies_s": latencies,
        "applied": settings,
    }


def _post(session: requests.Session, url: str, body: dict) -> float:
    started = time.perf_counter()
    response = session.post(f"{url}/image/generate", json=body, timeout=1800)
    if response.status_code != 200:
        raise SystemExit(f"request failed: {response.status_code} {response.text[:300]}")
    return time.perf_counter() - started


def _applied(log: str) -> str:
    """What the server says it applied (its "model ... ready" log line)."""
    for line in log.splitlines():
        if " ready on " in line and "channels_last=" in line:
            return line[line.index("(") + 1 : line.rindex(")")]
    return "?"


def _print_table(report: dict) -> None:
    plain, rows = report["plain_latency_s"], report["variants"]
    base = rows.get("baseline", {}).get("latency_s")
    print(f"\n{'variant':<24}{'cold s':>8}{'first ms':>10}{'ms':>9}{'vs plain':>10}{'gain':>7}"
          f"{'runs ms':>16}")  # fmt: skip
    print(f"{'plain diffusers (SDPA)':<24}{'':>8}{'':>10}{plain * 1000:>9.0f}{1:>10.3f}")
    classic = report["classic_attention_latency_s"]
    print(f"{'plain, classic attention':<24}{'':>8}{'':>10}{classic * 1000:>9.0f}"
          f"{classic / plain:>10.3f}")  # fmt: skip
    for name, row in rows.items():
        gain = f"{base / row['latency_s']:.3f}" if base else "-"
        print(
            f"{name:<24}{row['cold_start_s']:>8.1f}{row['first_request_s'] * 1000:>10.0f}"
            f"{row['latency_s'] * 1000:>9.0f}{row['latency_s'] / plain:>10.3f}{gain:>7}"
            f"{'/'.join(f'{run * 1000:.0f}' for run in row['run_latencies_s']):>16}"
        )
    print("\ngain: baseline latency / the variant's (above 1 is faster)")
    print(json.dumps({"device": report["device_name"], "versions": report["versions"]}))


if __name__ == "__main__":
    sys.exit(main())
