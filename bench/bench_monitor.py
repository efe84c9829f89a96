"""Monitoring's computations at scale: PSI/KS of one numeric column and the backtest tables,
beside plain numpy peers.

    python bench/bench_monitor.py [--rows 1000000] [--repeat 3]

- **PSI**: :func:`models.reports.monitoring.numeric_reference` (quantile edges and shares of a
  reference of ``rows`` values) and :func:`~models.reports.monitoring.numeric_drift` (PSI and
  binned KS of ``rows`` recent values), against the peer ``np.quantile`` + ``np.histogram``
  + the PSI formula in three numpy lines (no missing bin, no float32 tie handling).
- **Backtest**: :func:`~models.reports.monitoring.backtest` of ``rows`` matured scores (four
  grades, 24 months, 10 channels, ROC AUC and ECE), against the peer ``np.bincount`` of scores,
  probabilities and outcomes per grade (the by-grade table alone).

Prints the best of ``--repeat`` runs, seconds and rows/s, and the ratio to the peer.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import pandas as pd

from features.params import MonitorParams
from models.reports import monitoring


def best(function: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    n = args.rows
    reference_values = rng.gamma(2.0, 1.0, n)
    recent_values = rng.gamma(2.2, 1.0, n)
    settings = MonitorParams()

    def ours() -> None:
        reference = monitoring.numeric_reference(reference_values, settings.bins)
        monitoring.numeric_drift(reference, recent_values, settings)

    def peer() -> None:
        edges = np.quantile(reference_values, np.linspace(0, 1, settings.bins + 1))
        edges[0], edges[-1] = -np.inf, np.inf
        e = np.histogram(reference_values, edges)[0] / n
        a = np.histogram(recent_values, edges)[0] / n
        e, a = np.maximum(e, 1e-4), np.maximum(a, 1e-4)
        float(np.sum((a - e) * np.log(a / e)))

    psi_ours, psi_peer = best(ours, args.repeat), best(peer, args.repeat)
    print(
        f"PSI+KS  {n:>9,} + {n:,} values: {psi_ours:.3f} s ({2 * n / psi_ours:,.0f} values/s); "
        f"numpy peer {psi_peer:.3f} s; ratio {psi_ours / psi_peer:.2f}"
    )

    grades = np.array(list("ABCD"))[rng.integers(0, 4, n)]
    probability = rng.uniform(0, 1, n)
    matured = pd.DataFrame(
        {
            "grade": grades,
            "probability": probability,
            "scored_at": pd.Timestamp("2024-01-01", tz="UTC")
            + pd.to_timedelta(rng.integers(0, 730, n), unit="D"),
            "channel": np.array([f"channel_{i}" for i in range(10)], dtype=object)[
                rng.integers(0, 10, n)
            ],
            "observed": (rng.uniform(0, 1, n) < probability).astype(float),
        }
    )

    def backtest() -> None:
        monitoring.backtest(matured)

    def backtest_peer() -> None:
        codes = np.searchsorted(np.array(list("ABCD")), grades)
        scored = np.bincount(codes, minlength=4)
        np.bincount(codes, weights=probability, minlength=4) / scored
        np.bincount(codes, weights=matured["observed"].to_numpy(), minlength=4) / scored

    ours_s, peer_s = best(backtest, args.repeat), best(backtest_peer, args.repeat)
    print(
        f"backtest {n:>9,} matured scores: {ours_s:.3f} s ({n / ours_s:,.0f} scores/s); "
        f"by-grade bincount peer {peer_s:.3f} s; ratio {ours_s / peer_s:.1f}"
    )


if __name__ == "__main__":
    main()
