"""`make bench`: the server against a plain diffusers call and a naive server, side by side.

    python -m bench.run [--model bench-sd-turbo] [--device auto] [--size N] [--steps 1]
    python -m bench.run --smoke      # the demo model, tiny counts: seconds (part of make test)

Measures, in one run on one model:
1. overhead: median latency of POST /image/generate through gunicorn with every speed setting
   off (the same pipe() call) / that call in-process (plain diffusers, default settings) - target
   <= 1.03;
2. throughput with 1, 2, 4, 8 concurrent clients, ours against bench/naive_server.py (a Flask
   route calling the pipeline under a lock) - target: never below it;
3. single-image latency: ours as shipped (speed settings at their defaults) / plain diffusers -
   target <= 0.9 on CPU, 0.7 on GPU;
4. cold start: process start to /health 200 / a bare from_pretrained in a fresh process - <= 1.2;
5. memory: the worker's peak RSS with the model loaded / the weights' bytes on disk - <= 1.3 (CPU);
6. rejection latency with the queue full: p99 <= 50 ms;
7. scale-out (bench/scale_out.py, on a redis-server it starts): images/s with 1 and 2 worker
   processes - 2 workers >= 1.8 x one; the queue hop's added p50 - <= 10 ms; SIGKILL recovery.
Prints a table and writes bench/results/<date>-<device>.json and .png.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

import backend
from backend.config import resolve_path
from bench.load import post, throughput
from bench.scale_out import measure as measure_scale_out
from bench.server import GUNICORN, ROOT, Server, server_env

RESULTS = ROOT / "bench" / "results"
PROMPT = "a lighthouse on a cliff at dusk, detailed"
CLIENT_LEVELS = (1, 2, 4, 8)
# Every speed setting off: the server makes exactly the plain diffusers call.
SPEED_OFF = {
    "CHANNELS_LAST": "none",
    "FUSE_QKV": "false",
    "COMPILE": "false",
    "PROMPT_CACHE_SIZE": 0,
    "TINY_VAE": "false",
}


def main(argv: list[str] | None = None) -> int:
    """Run every measurement, print the table, write the JSON and the plot."""
    args = _parse(argv)
    import torch

    torch.set_flush_denormal(True)  # random weights must not hit slow denormal paths on CPU
    device, size, folder, body = setup(args)
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    report = report_header(device, folder, size, args, images_per_level=args.images_per_level)
    _say(f"benchmark of {folder} at {size}x{size}, {args.steps} step(s), on {device}")
    weights = sum(path.stat().st_size for path in folder.rglob("*.safetensors"))
    bare_load = _bare_cold_start(folder, device)
    plain = _plain_latency(folder, device, body, args.repeats)
    settings = server_settings(folder, device)
    unoptimized = _latency_only({**settings, **SPEED_OFF}, work, body, args.repeats)
    ours = _ours(settings, work, body, args)
    naive = _naive(folder, device, work, body, args)
    rejection = _rejection(settings, work, body, args)
    demo = resolve_path(args.models_dir) / "demo"
    scale_out = measure_scale_out(
        folder, demo, body, settings, work, args.images_per_level * 2, args.hops
    )
    report["results"] = {
        "weights_bytes": weights,
        "bare_cold_start_s": bare_load,
        "plain_latency_s": plain,
        "server_latency_speed_off_s": unoptimized,
        **ours,
        "naive_throughput": naive,
        "rejection_ms": rejection,
        "scale_out": scale_out,
    }
    report["ratios"] = _ratios(report["results"], device)
    _print_table(report)
    json_path, png_path = _write(report, args.results_dir)
    _say(f"wrote {json_path} and {png_path}")
    return 0


def server_settings(folder: Path, device: str) -> dict[str, object]:
    """The settings every benchmarked server runs with, besides what a measurement changes."""
    return {
        "DEFAULT_MODEL": str(folder),
        "DEVICE": device,
        "JOBS_DIR": "off",
        "LOG_LEVEL": "warning",
        "MAX_QUEUE_SIZE": 32,
        "REQUEST_TIMEOUT_SECONDS": 0,
        "API_KEYS": "",
        "RATE_LIMIT": "",
    }


def setup(args: argparse.Namespace) -> tuple[str, int, Path, dict]:
    """The device, image size, model folder and request body a benchmark run uses."""
    import torch

    device = (
        args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    )
    size = args.size or (512 if device.startswith("cuda") else 256)
    folder = _model_folder(args.model, args.models_dir)
    body = {
        "prompt": PROMPT,
        "width": size,
        "height": size,
        "steps": args.steps,
        "guidance_scale": 0.0,
        "seed": 1,
    }
    return device, size, folder, body


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The options `setup` reads: which model, where, on which device, at what size and steps."""
    parser.add_argument("--model", default="bench-sd-turbo", help="a folder name or path")
    parser.add_argument("--models-dir", default="models")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--size", type=int, default=0, help="default: 256 on CPU, 512 on GPU")
    parser.add_argument("--steps", type=int, default=1)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_model_arguments(parser)
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per latency")
    parser.add_argument("--images-per-level", type=int, default=8, help="per throughput level")
    parser.add_argument("--clients", default=",".join(map(str, CLIENT_LEVELS)))
    parser.add_argument("--hops", type=int, default=100, help="fast requests per queue mode")
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    parser.add_argument("--smoke", action="store_true", help="demo model, tiny counts")
    args = parser.parse_args(argv)
    if args.smoke:
        args.model, args.size, args.repeats, args.images_per_level = "demo", 64, 2, 2
        args.hops = 10
        args.clients = "1,2"
    args.client_levels = tuple(int(n) for n in args.clients.split(","))
    return args


def _model_folder(model: str, models_dir: str) -> Path:
    folder = Path(model) if "/" in model else resolve_path(models_dir) / model
    if not (folder / "model_index.json").is_file():
        hint = "make bench-model" if model == "bench-sd-turbo" else "make demo-model"
        raise SystemExit(f"no model at {folder}: run `{hint}` first")
    return folder


def report_header(
    device: str, folder: Path, size: int, args: argparse.Namespace, **settings: object
) -> dict[str, Any]:
    """What every benchmark report starts with: when, where, which versions, which settings."""
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "device": device,
        "device_name": _device_name(device),
        "versions": _versions(),
        "settings": {
            "model": str(folder),
            "size": size,
            "steps": args.steps,
            "repeats": args.repeats,
            **settings,
        },
    }


def _device_name(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"{platform.machine()} CPU, {torch.get_num_threads()} threads"


def _versions() -> dict[str, str]:
    import diffusers
    import torch
    import transformers

    return {
        "server": backend.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
    }


def _bare_cold_start(folder: Path, device: str) -> float:
    """Seconds for a fresh Python to import diffusers and load the folder, plainly."""
    dtype = "torch.float16" if device.startswith("cuda") else "torch.float32"
    code = (
        "import torch; from diffusers import AutoPipelineForText2Image as A; "
        f"A.from_pretrained({str(folder)!r}, local_files_only=True, use_safetensors=True, "
        f"dtype={dtype}).to({device!r})"
    )
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, env=server_env({"HF_HUB_OFFLINE": 1}))
    seconds = time.perf_counter() - started
    _say(f"bare from_pretrained in a fresh process: {seconds:.1f} s")
    return seconds


def _plain_pipeline(folder: Path, device: str) -> Any:
    """The pipeline as plain diffusers loads it: default settings, on `device`."""
    import torch
    from diffusers import AutoPipelineForText2Image

    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    return AutoPipelineForText2Image.from_pretrained(
        folder, local_files_only=True, use_safetensors=True, dtype=dtype
    ).to(device)


def _plain_latency(folder: Path, device: str, body: dict, repeats: int) -> float:
    """Median seconds of the plain diffusers call, in this process, default settings."""
    pipe = _plain_pipeline(folder, device)
    _timed_call(pipe, body, device)  # warm-up
    median = statistics.median(_timed_call(pipe, body, device) for _ in range(repeats))
    del pipe
    release(device)
    _say(f"plain diffusers call: {median * 1000:.0f} ms (median of {repeats})")
    return median


def release(device: str) -> None:
    """Free what a dropped in-process pipeline held, before servers want the memory."""
    import torch

    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def _timed_call(pipe: Any, body: dict, device: str) -> float:
    import torch

    started = time.perf_counter()
    pipe(
        prompt=body["prompt"],
        width=body["width"],
        height=body["height"],
        num_inference_steps=body["steps"],
        guidance_scale=body["guidance_scale"],
        generator=torch.Generator("cpu").manual_seed(body["seed"]),
    )
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - started


def _levels(url: str, body: dict, args: argparse.Namespace) -> list[dict[str, float]]:
    return [throughput(url, body, n, args.images_per_level) for n in args.client_levels]


def _latency_only(settings: dict, work: Path, body: dict, repeats: int) -> float:
    """Median request latency of a server with `settings` (after one warm-up request)."""
    server = Server(server_env(settings), work / "speed-off.log")
    try:
        server.seconds_until_healthy(timeout=900)
        session = requests.Session()
        post(session, server.url, body)
        latency = statistics.median(post(session, server.url, body)[1] for _ in range(repeats))
    finally:
        server.stop()
    _say(f"our server, speed settings off: {latency * 1000:.0f} ms (median of {repeats})")
    return latency


def _ours(settings: dict, work: Path, body: dict, args: argparse.Namespace) -> dict[str, Any]:
    server = Server(server_env(settings), work / "ours.log")
    try:
        cold = server.seconds_until_healthy(timeout=900)
        _say(f"our server: /health 200 after {cold:.1f} s")
        session = requests.Session()
        post(session, server.url, body)  # warm-up
        latencies = [post(session, server.url, body)[1] for _ in range(args.repeats)]
        latency = statistics.median(latencies)
        _say(f"our server: {latency * 1000:.0f} ms per request (median of {args.repeats})")
        levels = [
            throughput(server.url, body, n, args.images_per_level) for n in args.client_levels
        ]
        for level in levels:
            _say(f"our server, {level['clients']} clients: {level['images_per_s']:.2f} images/s")
        peak = _peak_rss(server)
    finally:
        server.stop()
    return {
        "server_cold_start_s": cold,
        "server_latency_s": latency,
        "throughput": levels,
        "peak_rss_bytes": peak,
    }


def _naive(folder: Path, device: str, work: Path, body: dict, args: argparse.Namespace) -> list:
    env = server_env({"NAIVE_MODEL": folder, "NAIVE_DEVICE": device, "HF_HUB_OFFLINE": 1})
    command = [
        *GUNICORN[:3],
        "-k",
        "gthread",
        "--threads",
        "16",
        "--timeout",
        "900",
        "--bind",
        f"127.0.0.1:{env['PORT']}",
        "bench.naive_server:app",
    ]
    server = Server(env, work / "naive.log", command)
    try:
        server.seconds_until_healthy(timeout=900)
        post(requests.Session(), server.url, body)  # warm-up
        levels = [
            throughput(server.url, body, n, args.images_per_level) for n in args.client_levels
        ]
        for level in levels:
            _say(f"naive server, {level['clients']} clients: {level['images_per_s']:.2f} images/s")
    finally:
        server.stop()
    return levels


def _rejection(settings: dict, work: Path, body: dict, args: argparse.Namespace) -> dict:
    """Latency of 503s while the device is busy and nothing more may wait."""
    server = Server(
        server_env({**settings, "MAX_QUEUE_SIZE": 0, "MAX_BATCH_SIZE": 1}), work / "rejection.log"
    )
    try:
        server.seconds_until_healthy(timeout=900)
        busy = threading.Thread(target=post, args=(requests.Session(), server.url, body))
        busy.start()
        time.sleep(0.2)
        session = requests.Session()
        refusals = []
        while busy.is_alive() and len(refusals) < 200:
            status, seconds = post(session, server.url, body)
            if status == 503:
                refusals.append(seconds * 1000)
        busy.join()
    finally:
        server.stop()
    refusals.sort()
    if not refusals:
        return {"count": 0, "p50_ms": None, "p99_ms": None}
    p99 = refusals[min(len(refusals) - 1, int(0.99 * len(refusals)))]
    _say(f"refusals with a full queue: p99 {p99:.1f} ms over {len(refusals)}")
    return {"count": len(refusals), "p50_ms": statistics.median(refusals), "p99_ms": p99}


def _peak_rss(server: Server) -> int:
    (worker,) = server.worker_pids()
    for line in Path(f"/proc/{worker}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")


TARGETS = {  # name: (limit, "max" | "min"); the single-latency limit depends on the device
    "overhead": (1.03, "max"),
    "single_latency": (None, "max"),
    "throughput_vs_naive_min": (1.0, "min"),
    "cold_start": (1.2, "max"),
    "memory": (1.3, "max"),
    "rejection_p99_ms": (50.0, "max"),
    "scale_out_2_workers": (1.8, "min"),
    "queue_hop_added_p50_ms": (10.0, "max"),
}


def _ratios(results: dict, device: str) -> dict[str, dict]:
    scale_out = results["scale_out"]  # {"skipped": why} without a redis-server
    ours = {level["clients"]: level["images_per_s"] for level in results["throughput"]}
    naive = {level["clients"]: level["images_per_s"] for level in results["naive_throughput"]}
    values = {
        "overhead": results["server_latency_speed_off_s"] / results["plain_latency_s"],
        "single_latency": results["server_latency_s"] / results["plain_latency_s"],
        "throughput_vs_naive_min": min(ours[n] / naive[n] for n in ours),
        "cold_start": results["server_cold_start_s"] / results["bare_cold_start_s"],
        "memory": results["peak_rss_bytes"] / results["weights_bytes"],
        "rejection_p99_ms": results["rejection_ms"]["p99_ms"],
        "scale_out_2_workers": scale_out.get("scaling"),
        "queue_hop_added_p50_ms": scale_out.get("hop", {}).get("added_p50_ms"),
    }
    ratios = {}
    for name, value in values.items():
        limit, kind = TARGETS[name]
        if name == "single_latency":
            limit = 0.7 if device.startswith("cuda") else 0.9
        if name == "memory" and device.startswith("cuda"):
            limit = None  # host RSS against GPU-resident weights says little
        if value is None:  # e.g. no refusal happened: the device was never busy long enough
            ratios[name] = {"value": None, "target": limit, "met": None}
            continue
        met = None if limit is None else (value <= limit if kind == "max" else value >= limit)
        ratios[name] = {"value": round(value, 3), "target": limit, "met": met}
    return ratios


def _print_table(report: dict) -> None:
    results, ratios = report["results"], report["ratios"]
    print(f"\n{'measure':<28}{'value':>12}{'target':>10}  met")
    for name, ratio in ratios.items():
        target = "-" if ratio["target"] is None else f"{ratio['target']:g}"
        met = {True: "yes", False: "NO", None: "-"}[ratio["met"]]
        value = "-" if ratio["value"] is None else f"{ratio['value']:.3f}"
        print(f"{name:<28}{value:>12}{target:>10}  {met}")
    print(f"\n{'clients':<10}{'ours img/s':>12}{'naive img/s':>13}{'ratio':>8}")
    for mine, theirs in zip(results["throughput"], results["naive_throughput"], strict=True):
        ratio = mine["images_per_s"] / theirs["images_per_s"]
        print(
            f"{mine['clients']:<10}{mine['images_per_s']:>12.2f}{theirs['images_per_s']:>13.2f}{ratio:>8.2f}"
        )
    _print_scale_out(results["scale_out"])
    print(f"\n{json.dumps({'device': report['device'], 'versions': report['versions']})}")


def _print_scale_out(figures: dict) -> None:
    if "skipped" in figures:
        print(f"\nscale-out: skipped ({figures['skipped']})")
        return
    cores, threads = figures["cores"], figures["threads_per_worker"]
    print(f"\nscale-out, {cores} cores, {threads} torch thread(s) per worker:")
    for level in figures["throughput"]:
        print(f"  {level['workers']} worker(s): {level['images_per_s']:.2f} images/s")
    hop, recovery = figures["hop"], figures["recovery"]
    print(
        f"  queue hop added: p50 {hop['added_p50_ms']:.1f} ms, p99 {hop['added_p99_ms']:.1f} ms"
        f" (local p50 {hop['local_p50_ms']:.1f} ms, celery p50 {hop['celery_p50_ms']:.1f} ms)"
    )
    print(
        f"  SIGKILL mid-job to done elsewhere: {recovery['kill_to_done_s']:.1f} s"
        f" (the run alone {recovery['run_s']:.1f} s)"
    )


def _write(report: dict, folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{report['date'][:10]}-{report['device'].replace(':', '')}"
    json_path = folder / f"{stem}.json"
    json_path.write_text(json.dumps(report, indent=2))
    png_path = folder / f"{stem}.png"
    _plot(report, png_path)
    return json_path, png_path


def _plot(report: dict, path: Path) -> None:
    """Throughput bars, ours against naive, per client count (Pillow: no plotting dependency)."""
    from PIL import Image, ImageDraw

    results = report["results"]
    pairs = list(zip(results["throughput"], results["naive_throughput"], strict=True))
    top = max(max(a["images_per_s"], b["images_per_s"]) for a, b in pairs) or 1.0
    width, height, margin = 120 + 140 * len(pairs), 360, 40
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    settings = report["settings"]
    title = (
        f"images/s on {report['device']} ({settings['size']}px, {settings['steps']} step): "
        "blue ours, grey naive"
    )
    draw.text((margin, 10), title, fill="black")
    base = height - margin
    for index, (mine, theirs) in enumerate(pairs):
        left = margin + 40 + index * 140
        for offset, value, colour in (
            (0, mine["images_per_s"], "#2b6cb0"),
            (50, theirs["images_per_s"], "#a0aec0"),
        ):
            bar = (base - margin) * value / top
            draw.rectangle((left + offset, base - bar, left + offset + 40, base), fill=colour)
            draw.text((left + offset, base - bar - 14), f"{value:.2f}", fill="black")
        draw.text((left + 20, base + 8), f"{mine['clients']} client(s)", fill="black")
    image.save(path)


def _say(message: str) -> None:
    print(f"[bench] {message}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
