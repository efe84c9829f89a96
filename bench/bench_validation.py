"""Validation-stage throughput, the share of its time spent inside Great Expectations, peak memory.

    python bench/bench_validation.py --leads 100000 1000000

For each size the simulator writes its tables (one child process), then the validation stage
runs on them in a fresh child process, so the peak memory (max RSS) is the stage's own. Rows are
all rows of all tables (leads, touches, sales events, campaigns, accounts). "GE" is the time
inside Great Expectations' ``get_batch`` + ``validate`` calls; "stage" is the whole
``validate_directory`` (reading, coercion, joins, GE, quarantine, report, writing), including
the one-off GE import (about 3 s).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _simulate(leads: int, out: Path) -> None:
    from features.ingest.simulate import simulate
    from features.params import GenerateParams

    simulate(GenerateParams(leads=leads, seed=1), out)


def _validate(raw: Path, work: Path) -> None:
    from features.params import Params
    from features.validation.validate import validate_directory

    start = time.perf_counter()
    summary = validate_directory(raw, work / "validated", work / "report", Params())
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    figures = {
        "seconds": seconds,
        "ge_seconds": summary.ge_seconds,
        "rows": summary.rows_in,
        "touches": summary.tables["touches"].rows_in if "touches" in summary.tables else 0,
        "quarantined": sum(t.rows_quarantined for t in summary.tables.values()),
        "peak_mb": peak_mb,
    }
    print(json.dumps(figures))


def _child(*args: str) -> dict[str, float]:
    result = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        sys.exit(f"child {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    lines = result.stdout.strip().splitlines()
    return json.loads(lines[-1]) if lines else {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leads", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--simulate", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--validate", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.simulate:
        _simulate(args.size, args.simulate)
        return
    if args.validate:
        _validate(args.validate, args.work)
        return
    print(
        f"{'leads':>10} {'rows':>12} {'touches':>12} {'stage s':>8} {'rows/s':>11} "
        f"{'GE s':>7} {'GE share':>8} {'peak MB':>8}"
    )
    for leads in args.leads:
        with tempfile.TemporaryDirectory() as directory:
            raw, work = Path(directory) / "raw", Path(directory) / "work"
            _child("--simulate", str(raw), "--size", str(leads))
            figures = _child("--validate", str(raw), "--work", str(work))
        seconds = figures["seconds"]
        print(
            f"{leads:>10,} {figures['rows']:>12,} {figures['touches']:>12,} {seconds:>8.1f} "
            f"{figures['rows'] / seconds:>11,.0f} {figures['ge_seconds']:>7.1f} "
            f"{figures['ge_seconds'] / seconds:>8.0%} {figures['peak_mb']:>8,.0f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
