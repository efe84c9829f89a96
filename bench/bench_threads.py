"""OpenMP's waiting on a shared machine: the same LightGBM training (2 threads) in a fresh
process with libgomp's default (it spins 300,000 times at every barrier: the peer), with
``GOMP_SPINCOUNT=1000`` (what ``leadscore`` sets for every command it runs) and with
``OMP_WAIT_POLICY=PASSIVE``, interleaved, on an idle machine and while another process keeps
one core busy, as a CI job, a second worker or a notebook would.

    python bench/bench_threads.py [--rounds 3] [--rows 200000] [--trees 200]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

TRAIN = """
import time, numpy as np, lightgbm as lgb
rng = np.random.default_rng(0)
X = rng.normal(size=({rows}, 40))
y = (X[:, 0] + 0.5 * X[:, 1] * X[:, 2] + rng.normal(size={rows}) > 0).astype(int)
data = lgb.Dataset(X, y, params={{"verbose": -1}})
start = time.perf_counter()
booster = lgb.train({{"objective": "binary", "num_threads": 2, "verbose": -1}}, data, {trees})
print(time.perf_counter() - start, booster.num_trees())
"""
HOG = "while True: pass"


SETTINGS: dict[str, dict[str, str]] = {
    "default (peer)": {},
    "GOMP_SPINCOUNT=1000 (leadscore)": {"GOMP_SPINCOUNT": "1000"},
    "OMP_WAIT_POLICY=PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"},
}


def timed(script: str, setting: dict[str, str]) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env |= setting
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    return float(out.stdout.split()[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--trees", type=int, default=200)
    args = parser.parse_args()
    script = TRAIN.format(rows=args.rows, trees=args.trees)
    for busy in (False, True):
        hog = subprocess.Popen([sys.executable, "-c", HOG]) if busy else None
        time.sleep(0.5 if busy else 0.0)
        try:
            rounds: dict[str, list[float]] = {name: [] for name in SETTINGS}
            for _ in range(args.rounds):
                for name, setting in SETTINGS.items():
                    rounds[name].append(timed(script, setting))
        finally:
            if hog is not None:
                hog.kill()
                hog.wait()
        load = os.getloadavg()[0]
        where = "one core kept busy by another process" if busy else "idle machine"
        print(
            f"bench_threads: LightGBM, {args.rows:,} rows × 40, {args.trees} trees, 2 threads, "
            f"{where}, {os.cpu_count()} cores, load average {load:.2f}"
        )
        peer = statistics.median(rounds["default (peer)"])
        for name, seconds in rounds.items():
            median = statistics.median(seconds)
            print(
                f"  {name:<32} {median:6.2f} s (median of {len(seconds)})  "
                f"{peer / median:5.2f}× the peer's speed"
            )


if __name__ == "__main__":
    main()
