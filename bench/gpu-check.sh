#!/usr/bin/env bash
# bench/gpu-check.sh (`make gpu-check`): every GPU figure the project lacks, in one command of at
# most 8 minutes, for a GPU host that has Python 3.12 and a CUDA build of torch but no package
# registry (the device machine of a GPU session; see docs/performance.md, "On a GPU").
#
#   here, with PyPI:   ../shared/tools/gpu-wheels          # fills the git-ignored .whl/
#   on the GPU host:   bash bench/gpu-check.sh              # .whl carried along; results in $OUT
#
# 1. stops at once, with one line and a non-zero exit, without CUDA or without wheels in .whl/;
# 2. installs .whl/ offline (--no-index --no-deps) into a venv made with --system-site-packages
#    (and a .pth naming the host's site-packages, for a host Python that is a venv itself), so
#    the host's CUDA torch is used and never reinstalled (gpu-wheels leaves torch out);
# 3. runs pytest -m gpu, builds models/bench-sd-turbo if missing, then bench.run on it at
#    512x512 with 1 step and with 4 steps, then bench.speed (the speed settings side by side);
# 4. gives each phase a time budget (BUDGETS below; what a phase leaves unused goes to the next
#    ones, so the phases together never pass TOTAL_S); a phase that runs out of time is
#    recorded as "timeout" and the others still run;
# 5. writes under $OUT (default bench/results/gpu-check-<date>): summary.txt, gpu-check.json
#    (phases with exit status and duration, nvidia-smi, torch/CUDA versions, every figure),
#    log.txt (all output), and each benchmark's own JSON (and plot) in bench-1step/,
#    bench-4step/ and speed/: 8 files, as many as the device machine brings back.
# Exit status: 0 when every phase passed, 1 when one failed or ran out of time, 2 when it could
# not start (no CUDA, no wheels).
#
# Settings (environment): OUT, GPU_PYTHON (the host's Python with CUDA torch; python3),
# GPU_CHECK_WHEELS (.whl), GPU_CHECK_VENV (/tmp/gpu-check-venv), SPEED_VARIANTS (bench.speed
# --only; the two COMPILE variants are left out: compiling takes minutes per server start).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
HOST_PY=${GPU_PYTHON:-python3}
WHEELS=${GPU_CHECK_WHEELS:-.whl}
VENV=${GPU_CHECK_VENV:-/tmp/gpu-check-venv}
SPEED_VARIANTS=${SPEED_VARIANTS:-baseline,defaults,tiny_vae,channels_last=unet+vae,channels_last=unet,channels_last=vae,fuse_qkv,prompt_cache}
# Seconds per phase. They add up to 450: the last phase may overrun its budget by KILL_AFTER_S
# and the clean-up, and the summary takes a second, so the whole run stays within 8 minutes.
declare -A BUDGETS=(
  [host-info]=20 [install]=45 [pytest-gpu]=60 [bench-model]=60
  [bench-1step]=90 [bench-4step]=80 [speed]=95
)
TOTAL_S=480
KILL_AFTER_S=15  # after the budget a phase gets SIGTERM (Python: KeyboardInterrupt), then KILL

die() { echo "gpu-check: $*" >&2; exit 2; }

# --- 1. CUDA and wheels, before anything else ----------------------------------------------
nvsmi=$(command -v nvidia-smi || true)
if [ -z "$nvsmi" ] && [ -x /usr/local/nvidia/bin/nvidia-smi ]; then
  nvsmi=/usr/local/nvidia/bin/nvidia-smi
fi
if [ -z "$nvsmi" ] && ! compgen -G '/dev/nvidia[0-9]*' >/dev/null; then
  die "no CUDA GPU here (no nvidia-smi, no /dev/nvidia*): run this on the GPU host (docs/performance.md, "On a GPU")"
fi
probe_rc=0
probe=$(timeout 120 "$HOST_PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 3)' 2>&1) || probe_rc=$?
case $probe_rc in
  0) ;;
  3) die "no CUDA GPU here: $HOST_PY says torch.cuda.is_available() is False: run this on the GPU host (docs/performance.md, "On a GPU")" ;;
  124) die "no CUDA GPU here: $HOST_PY took over 120 s to answer torch.cuda.is_available()" ;;
  *) die "no CUDA GPU here: $HOST_PY cannot import torch (${probe##*$'\n'}); set GPU_PYTHON to the host's CUDA Python" ;;
esac
shopt -s nullglob
found=("$WHEELS"/*.whl)
shopt -u nullglob
if [ ${#found[@]} -eq 0 ]; then
  die "no wheels in $WHEELS/: run ../shared/tools/gpu-wheels first (where PyPI is reachable), then carry .whl to the GPU host"
fi
twice=$(for wheel in "${found[@]}"; do
  name=${wheel##*/}
  printf '%s\n' "${name%%-*}" | tr 'A-Z_.' 'a-z--'
done | sort | uniq -d | paste -sd ' ')
if [ -n "$twice" ]; then
  die "two versions of $twice in $WHEELS/: delete $WHEELS and run ../shared/tools/gpu-wheels again"
fi

# --- where everything goes ---------------------------------------------------------------------
STAMP=$(date -u +%Y-%m-%d-%H%M%S)
OUT=${OUT:-bench/results/gpu-check-$STAMP}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")
LOG=$OUT/log.txt
: >"$LOG"
: >"$WORK/phases.tsv"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1
export HOST_PY WHEELS VENV WORK nvsmi
START=$(date +%s)
PLANNED=0    # budgets of the phases so far: phase k must end by START + PLANNED
FAILED=0
PY=$HOST_PY  # the venv's Python once the install phase has made it
CURRENT=     # the phase running now, its limit and start, for `interrupted`
CURRENT_LIMIT=0
T0=0

# Python modules run through this, so that SIGTERM from `timeout` is a KeyboardInterrupt: the
# benchmarks' finally blocks then stop the servers they started in sessions of their own.
WRAP='import runpy, signal, sys
signal.signal(signal.SIGTERM, signal.default_int_handler)
signal.signal(signal.SIGINT, signal.default_int_handler)
sys.argv = sys.argv[1:]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)'

record() {  # NAME STATUS RC SECONDS LIMIT NOTE
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "${BUDGETS[$1]}" "$5" "$6" >>"$WORK/phases.tsv"
}

skip() {  # NAME REASON: a phase that does not run (its budget goes to the next ones)
  PLANNED=$((PLANNED + BUDGETS[$1]))
  echo "=== $1: skipped ($2)" | tee -a "$LOG"
  record "$1" skipped "" 0 0 "$2"
}

reap() {  # TAG: stop whatever a phase left running (servers start sessions of their own)
  local tag=$1 proc pids=()
  for proc in /proc/[0-9]*; do
    [ "${proc#/proc/}" != "$$" ] || continue
    grep -qxzF "GPU_CHECK_PHASE=$tag" "$proc/environ" 2>/dev/null && pids+=("${proc#/proc/}")
  done
  [ ${#pids[@]} -gt 0 ] || return 0
  echo "gpu-check: stopping ${#pids[@]} process(es) of $tag: ${pids[*]}" | tee -a "$LOG"
  kill -TERM "${pids[@]}" 2>/dev/null || true
  sleep 5
  for proc in "${pids[@]}"; do  # those still there and still the phase's
    if grep -qxzF "GPU_CHECK_PHASE=$tag" "/proc/$proc/environ" 2>/dev/null; then
      kill -KILL "$proc" 2>/dev/null || true
    fi
  done
}

phase() {  # NAME COMMAND...: run it within its budget, output to the terminal and log.txt
  local name=$1 left rc t0 seconds status arg shown=() out_pid
  shift
  for arg in "$@"; do  # the wrapper shows as what it does
    if [ "$arg" = "$WRAP" ]; then shown+=(-m); elif [ "$arg" != -c ]; then shown+=("$arg"); fi
  done
  PLANNED=$((PLANNED + BUDGETS[$name]))
  left=$((START + PLANNED - $(date +%s)))
  if [ "$left" -lt 5 ]; then
    echo "=== $name: skipped (no time left)" | tee -a "$LOG"
    record "$name" skipped "" 0 0 "no time left"
    FAILED=1
    return 1
  fi
  echo "=== $name (up to ${left} s): ${shown[*]}" | tee -a "$LOG"
  CURRENT=$name CURRENT_LIMIT=$left
  t0=$(date +%s.%N)
  T0=$t0
  # In the background, polled: a trap can then act at once, and a process the phase leaves
  # behind holding its output open cannot keep the script waiting.
  {
    code=0
    GPU_CHECK_PHASE="$$-$name" timeout -s TERM -k "$KILL_AFTER_S" "$left" "$@" 2>&1 || code=$?
    echo "$code" >"$WORK/$name.rc"
  } | grep --line-buffered -Ev '[0-9](it/s|s/it)\]$' | tee -a "$LOG" "$WORK/$name.log" &
  out_pid=$!
  while [ ! -s "$WORK/$name.rc" ] && kill -0 "$out_pid" 2>/dev/null; do sleep 0.5; done
  reap "$$-$name"
  wait "$out_pid" || true
  CURRENT=
  rc=$(cat "$WORK/$name.rc" 2>/dev/null || echo 1)
  seconds=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  case $rc in
    0) status=ok ;;
    124 | 137) status=timeout ;;
    *) status=failed ;;
  esac
  echo "=== $name: $status (exit $rc) after $seconds s" | tee -a "$LOG"
  record "$name" "$status" "$rc" "$seconds" "$left" ""
  [ "$status" = ok ] || { FAILED=1; return 1; }
}

# shellcheck disable=SC2317  # run by `trap interrupted INT TERM`
interrupted() {  # SIGINT/SIGTERM to the script: stop the phase, keep what there is, exit 130
  trap - INT TERM
  echo "gpu-check: interrupted" | tee -a "$LOG" >&2
  if [ -n "$CURRENT" ]; then
    reap "$$-$CURRENT"
    record "$CURRENT" interrupted "" \
      "$(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')" "$CURRENT_LIMIT" ""
  fi
  FAILED=130
  summarize
  exit 130
}

# shellcheck disable=SC2317  # run through `bash -c host_info`
host_info() {  # nvidia-smi and the host's torch, CUDA and Python
  set -euo pipefail
  if [ -n "$nvsmi" ]; then
    timeout 15 "$nvsmi" >"$WORK/nvidia-smi.txt" 2>&1 || echo "(nvidia-smi failed)" >>"$WORK/nvidia-smi.txt"
    timeout 15 "$nvsmi" --query-gpu=name,driver_version,memory.total,power.limit,clocks.max.sm \
      --format=csv >"$WORK/nvidia-smi.csv" 2>&1 || true
  else
    echo "(no nvidia-smi on this host)" >"$WORK/nvidia-smi.txt"
  fi
  cat "$WORK/nvidia-smi.txt"
  "$HOST_PY" - "$WORK/host.json" <<'EOF'
import json, os, platform, sys
import torch

p = torch.cuda.get_device_properties(0)
info = {
    "python": platform.python_version(),
    "python_executable": sys.executable,
    "torch": torch.__version__,
    "torch_file": torch.__file__,
    "torch_cuda": torch.version.cuda,
    "cudnn": torch.backends.cudnn.version(),
    "gpus": torch.cuda.device_count(),
    "gpu": p.name,
    "capability": f"{p.major}.{p.minor}",
    "gpu_memory_gib": round(p.total_memory / 2**30, 1),
    "cpus": os.cpu_count(),
    "machine": platform.machine(),
    "kernel": platform.release(),
}
print(json.dumps(info, indent=2))
open(sys.argv[1], "w").write(json.dumps(info))
EOF
}

# shellcheck disable=SC2317  # run through `bash -c install_wheels`
install_wheels() {  # .whl/ offline into a venv that sees the host's torch; never torch itself
  set -euo pipefail
  local wheel wheels=() py
  for wheel in "$WHEELS"/*.whl; do
    case ${wheel##*/} in
      torch-* | triton-* | nvidia_* | nvidia-* | cuda_*) echo "skipping ${wheel##*/}: the host's CUDA torch stays" ;;
      *) wheels+=("$wheel") ;;
    esac
  done
  echo "${#wheels[@]} wheels from $WHEELS/ ($(du -sh "$WHEELS" | cut -f1))"
  if "$HOST_PY" -m venv --clear --system-site-packages --without-pip "$VENV"; then
    py=$VENV/bin/python
    # The host's Python may be a venv itself (the device machine's python3 is
    # /opt/torch/.venv/bin/python3), whose packages --system-site-packages does not reach: a
    # .pth names its site-packages after the venv's own, so torch (and pip) come from there.
    "$HOST_PY" -c 'import sys; print("\n".join(p for p in sys.path if p.endswith(("site-packages", "dist-packages"))))' \
      >"$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/gpu-check-host.pth"
    "$py" -m pip install --quiet --no-index --find-links "$WHEELS" --no-deps --no-compile \
      --no-cache-dir "${wheels[@]}"
  else  # no venv module: the way gpu-wheels prints, a --target folder on PYTHONPATH
    py=$HOST_PY
    "$py" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/gpu-check-site "${wheels[@]}"
    echo /tmp/gpu-check-site >"$WORK/pythonpath"
  fi
  echo "$py" >"$WORK/python"
  [ ! -s "$WORK/pythonpath" ] || export PYTHONPATH="/tmp/gpu-check-site${PYTHONPATH:+:$PYTHONPATH}"
  "$py" - "$WORK/host.json" "$WORK/versions.json" <<'EOF'
import importlib.metadata as md, json, sys
import torch

try:
    host = json.load(open(sys.argv[1]))
except (OSError, ValueError):
    host = {}  # host-info failed: nothing to compare with
if host and (torch.__version__, torch.__file__) != (host["torch"], host["torch_file"]):
    sys.exit(f"not the host's torch: {torch.__version__} from {torch.__file__}")
if not torch.cuda.is_available():
    sys.exit("torch in the venv sees no CUDA")
names = ("torch", "diffusers", "transformers", "accelerate", "safetensors", "huggingface-hub",
         "tokenizers", "flask", "gunicorn", "pillow", "numpy", "requests", "pytest")
versions = {}
for name in names:
    try:
        versions[name] = md.version(name)
    except md.PackageNotFoundError:
        versions[name] = None
try:
    import backend, diffusers, flask, gunicorn, pytest, requests  # what the phases need
except ImportError as error:
    sys.exit(f"{error!r}: if the host's own copy is the wrong version, add the one .venv has: "
             "../shared/tools/gpu-wheels NAME==VERSION")
print(json.dumps(versions))
open(sys.argv[2], "w").write(json.dumps(versions))
EOF
}

summarize() {  # gpu-check.json and summary.txt from what the phases left; printed at the end
  trap - EXIT
  "$HOST_PY" - "$WORK" "$OUT" "$START" "$TOTAL_S" <<'EOF' || echo "gpu-check: the summary failed; see $OUT/log.txt" >&2
import json, sys, time
from pathlib import Path

work, out, start, total = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3]), sys.argv[4]


def load(path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def text(path):
    try:
        return Path(path).read_text(errors="replace").rstrip()
    except OSError:
        return ""


phases = []
for line in (work / "phases.tsv").read_text().splitlines():
    name, status, rc, seconds, budget, limit, note = line.split("\t", 6)
    phases.append({
        "name": name, "status": status, "exit": int(rc) if rc else None,
        "seconds": float(seconds), "budget_s": int(budget), "limit_s": int(limit), "note": note,
    })
host = load(work / "host.json") or {}
versions = load(work / "versions.json") or {}
results, partial = {}, {}
for folder in ("bench-1step", "bench-4step", "speed"):
    # only what this run wrote (a reused OUT may hold older reports)
    reports = sorted(r for r in (out / folder).glob("*.json") if r.stat().st_mtime >= start)
    if reports:
        results[folder] = {"file": f"{folder}/{reports[-1].name}", **load(reports[-1])}
for phase in phases:
    log = text(work / f"{phase['name']}.log").splitlines()
    lines = [line for line in log if line.startswith("[bench]")]
    if phase["status"] != "ok" and lines:
        partial[phase["name"]] = lines  # the figures a run printed before it stopped
    if phase["name"] == "pytest-gpu":
        tail = [line for line in log if line.strip()]
        phase["note"] = phase["note"] or (tail[-1].strip("= ") if tail else "")
report = {
    "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start)),
    "total_s": round(time.time() - start, 1),
    "limit_s": int(total),
    "host": host,
    "venv_versions": versions,
    "nvidia_smi": text(work / "nvidia-smi.txt"),
    "nvidia_smi_csv": text(work / "nvidia-smi.csv"),
    "phases": phases,
    "results": results,
    "partial": partial,
}
(out / "gpu-check.json").write_text(json.dumps(report, indent=2))

s = []
s.append(f"gpu-check {report['date']}: {host.get('gpu', '?')} x{host.get('gpus', '?')}, "
         f"torch {host.get('torch', '?')} (CUDA {host.get('torch_cuda', '?')}, "
         f"cuDNN {host.get('cudnn', '?')}), Python {host.get('python', '?')}")
if versions:
    s.append("venv: " + ", ".join(f"{k} {v}" for k, v in versions.items() if v))
s.append(f"{report['total_s']:.0f} s in all (limit {total} s)\n")
s.append(f"{'phase':<13}{'status':<9}{'exit':>5}{'seconds':>9}{'budget':>8}{'limit':>7}  note")
for p in phases:
    s.append(f"{p['name']:<13}{p['status']:<9}{'' if p['exit'] is None else p['exit']:>5}"
             f"{p['seconds']:>9.1f}{p['budget_s']:>8}{p['limit_s']:>7}  {p['note']}")
for name, steps in (("bench-1step", 1), ("bench-4step", 4)):
    r = results.get(name)
    if not r:
        continue
    res = r["results"]
    size = r["settings"]["size"]
    s.append(f"\nbench.run, {size}x{size}, {steps} step(s), {r['device']} ({r['file']}):")
    for key, ratio in r["ratios"].items():
        met = {True: "yes", False: "NO", None: "-"}[ratio["met"]]
        s.append(f"  {key:<26}{ratio['value'] if ratio['value'] is not None else '-':>10}"
                 f"  target {ratio['target'] if ratio['target'] is not None else '-'}  met {met}")
    s.append(f"  plain diffusers {res['plain_latency_s'] * 1000:.0f} ms, ours "
             f"{res['server_latency_s'] * 1000:.0f} ms, ours with speed settings off "
             f"{res['server_latency_speed_off_s'] * 1000:.0f} ms; cold start "
             f"{res['server_cold_start_s']:.1f} s (bare from_pretrained "
             f"{res['bare_cold_start_s']:.1f} s)")
    for mine, theirs in zip(res["throughput"], res["naive_throughput"]):
        s.append(f"  {mine['clients']} client(s): ours {mine['images_per_s']:.2f} images/s, "
                 f"naive {theirs['images_per_s']:.2f}")
r = results.get("speed")
if r:
    plain = r["plain_latency_s"]
    base = r["variants"].get("baseline", {}).get("latency_s")
    size, steps = r["settings"]["size"], r["settings"]["steps"]
    s.append(f"\nbench.speed, {size}x{size}, {steps} step(s), {r['device']} ({r['file']}):")
    s.append(f"  plain diffusers (SDPA) {plain * 1000:.1f} ms, classic attention "
             f"{r['classic_attention_latency_s'] * 1000:.1f} ms")
    s.append(f"  {'variant':<24}{'cold s':>7}{'ms':>8}{'vs plain':>9}{'gain':>7}  applied")
    for name, row in r["variants"].items():
        gain = f"{base / row['latency_s']:.3f}" if base else "-"
        s.append(f"  {name:<24}{row['cold_start_s']:>7.1f}{row['latency_s'] * 1000:>8.1f}"
                 f"{row['latency_s'] / plain:>9.3f}{gain:>7}  {row['applied']}")
for name, lines in partial.items():
    s.append(f"\n{name} stopped early; what it printed:")
    s.extend(f"  {line}" for line in lines)
s.append("\nnvidia-smi:\n" + report["nvidia_smi"])
(out / "summary.txt").write_text("\n".join(s) + "\n")
EOF
  echo
  cat "$OUT/summary.txt" 2>/dev/null || true
  echo "gpu-check: results in $OUT"
  rm -rf "$WORK"
}
trap summarize EXIT
trap interrupted INT TERM
export -f host_info install_wheels

# --- 2-4. the phases ---------------------------------------------------------------------------
phase host-info bash -c host_info || true
if phase install bash -c install_wheels; then
  PY=$(cat "$WORK/python")
  if [ -s "$WORK/pythonpath" ]; then
    PYTHONPATH="$(cat "$WORK/pythonpath")${PYTHONPATH:+:$PYTHONPATH}"
    export PYTHONPATH
  fi
  phase pytest-gpu "$PY" -c "$WRAP" pytest -m gpu -v --continue-on-collection-errors || true
  model_ok=1
  if [ -f models/bench-sd-turbo/model_index.json ] && [ -f models/taesd/config.json ]; then
    skip bench-model "models/bench-sd-turbo is there"
  else
    phase bench-model "$PY" -c "$WRAP" bench.bench_model || model_ok=0
  fi
  if [ "$model_ok" = 1 ]; then
    for steps in 1 4; do
      phase "bench-${steps}step" "$PY" -c "$WRAP" bench.run --device cuda --size 512 \
        --steps "$steps" --results-dir "$OUT/bench-${steps}step" || true
    done
    phase speed "$PY" -c "$WRAP" bench.speed --device cuda --size 512 --steps 1 \
      --only "$SPEED_VARIANTS" --results-dir "$OUT/speed" || true
  else
    for name in bench-1step bench-4step speed; do skip "$name" "no benchmark model"; done
  fi
else
  for name in pytest-gpu bench-model bench-1step bench-4step speed; do skip "$name" "install failed"; done
fi
summarize
exit "$FAILED"
