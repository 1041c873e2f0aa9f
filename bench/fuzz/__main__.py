"""`make fuzz`: python -m bench.fuzz [--seconds 120] [--seed N] [--workdir DIR]."""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
from pathlib import Path

from bench.fuzz.campaign import Outcome, run_campaign


def verdicts(outcome: Outcome) -> list[tuple[str, bool]]:
    """The campaign's three promises, each kept or not."""
    keys = outcome.report.failure_counts
    server_errors = any(
        "server error" in problem or "not_a_server_error" in problem or "no answer" in problem
        for _, _, problem in keys
    )
    schema_ok = not any(source == "schemathesis" for source, _, _ in keys)
    hostile_ok = not any(source == "hostile" for source, _, _ in keys)
    return [
        ("no request got a 5xx or went unanswered", not server_errors),
        ("schemathesis: every answer within the documented schema", schema_ok),
        ("hostile requests: every answer documented and well-formed", hostile_ok),
        ("a normal POST /image/generate still answers 200 with a PNG", outcome.final_ok),
    ]


def summary(outcome: Outcome, seed: int, workdir: Path) -> str:
    """The report printed at the end of a campaign."""
    report = outcome.report
    lines = ["", report.table(), ""]
    if report.failures:
        lines += ["Failures (reproduce each with its curl line):", ""]
        lines += [report.write_failures(workdir / "failures"), ""]
    lines += [f"note: {note}" for note in report.notes]
    lines.append(
        f"{outcome.hostile_requests} hostile requests; {outcome.seconds:.0f} s in all; "
        f"seed {seed} (rerun with --seed {seed}); files in {workdir}"
    )
    lines += [f"{'PASS' if ok else 'FAIL'}  {text}" for text, ok in verdicts(outcome)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run a campaign, print its report; 1 if any promise was broken."""
    parser = argparse.ArgumentParser(prog="python -m bench.fuzz", description=__doc__)
    parser.add_argument("--seconds", type=float, default=120, help="fuzzing time, split in two")
    parser.add_argument("--seed", type=int, default=None, help="default: a random one")
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary folder")
    args = parser.parse_args(argv)
    seed = random.randrange(1 << 31) if args.seed is None else args.seed
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="fuzz-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"fuzzing for {args.seconds:.0f} s with seed {seed}; files in {workdir}", flush=True)
    outcome = run_campaign(args.seconds, seed, workdir)
    print(summary(outcome, seed, workdir))
    passed = all(ok for _, ok in verdicts(outcome))
    if passed and args.workdir is None:
        shutil.rmtree(workdir / "models", ignore_errors=True)  # keep the logs, not 5 MB of model
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
