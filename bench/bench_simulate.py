"""Simulator throughput and peak memory.

    python bench/bench_simulate.py --leads 100000 1000000

Each size runs in a fresh child process so peak memory (max RSS) is that size's own.
Peer for comparison: the time to merely write the same tables' rows with pyarrow is not
separately measured; the figure to compare with is the issue's goal (1 M leads within 8 GB).
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


def _child(leads: int, out: Path) -> None:
    from features.ingest.simulate import simulate
    from features.params import GenerateParams

    start = time.perf_counter()
    counts = simulate(GenerateParams(leads=leads, seed=1), out)
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_mb": peak_mb, **counts}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leads", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.out)
        return
    print(
        f"{'leads':>10} {'touches':>11} {'seconds':>8} {'leads/s':>10} {'touches/s':>11} "
        f"{'peak MB':>8}  goal"
    )
    for leads in args.leads:
        with tempfile.TemporaryDirectory() as directory:
            result = subprocess.run(
                [sys.executable, __file__, "--child", str(leads), "--out", directory],
                capture_output=True,
                text=True,
                check=True,
            )
        figures = json.loads(result.stdout.strip().splitlines()[-1])
        seconds = figures["seconds"]
        print(
            f"{leads:>10,} {figures['touches']:>11,} {seconds:>8.1f} {leads / seconds:>10,.0f} "
            f"{figures['touches'] / seconds:>11,.0f} {figures['peak_mb']:>8,.0f}  "
            f"peak ≤ 8,192 MB"
        )


if __name__ == "__main__":
    main()
