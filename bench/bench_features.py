"""Feature engine benchmark: batch throughput and memory, a polars reference side by side,
and the single-lead serving path.

    python bench/bench_features.py --leads 100000 1000000

For each size, in a fresh child process (so peak memory is that size's own):
- the simulator's tables are generated, snapshots built and the engine fitted;
- **ours**: the touch family (per-type counts in the 7/30/90-day and all-time windows and days
  since the last one) through the engine's kernel on every core (lead ranges, as the
  transform runs them), and the whole transform (every family) on every core and on one;
- **polars**: an independent implementation of the same touch counts and recencies
  (join snapshots to touches, filter, group); the checksums of both must agree.
Then the single-lead path: one lead with 30 touches and 5 sales events, p50/p99 of
``FeatureEngine.transform_one``. Needs the bench extra: ``pip install -e ".[bench]"``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def _polars_reference(
    snapshots: pd.DataFrame, touches: pd.DataFrame, windows: list[int], touch_types: tuple[str, ...]
) -> tuple[float, float]:
    import polars as pl

    start = time.perf_counter()
    snaps = (
        pl.from_pandas(snapshots[["lead_id", "as_of"]])
        .with_columns((pl.col("as_of").dt.epoch("ms")).alias("as_of_ms"))
        .with_row_index("snapshot")
    )
    events = (
        pl.from_pandas(touches[["lead_id", "occurred_at", "touch_type"]])
        .with_columns((pl.col("occurred_at").dt.epoch("ms")).alias("t"))
        .select("lead_id", "t", "touch_type")
    )
    joined = snaps.join(events, on="lead_id", how="inner").filter(pl.col("t") < pl.col("as_of_ms"))
    age = pl.col("as_of_ms") - pl.col("t")
    aggregations = [
        pl.len().alias("all"),
        (pl.col("as_of_ms").first() - pl.col("t").max()).alias("last"),
    ]
    aggregations += [(age <= w * 86_400_000).sum().alias(f"w{w}") for w in windows]
    grouped = joined.group_by("snapshot", "touch_type").agg(aggregations)
    seconds = time.perf_counter() - start
    checksum = (
        float(sum(grouped[c].sum() for c in ["all", *[f"w{w}" for w in windows]]))
        + float(grouped["last"].sum()) / 86_400_000
    )
    del touch_types
    return seconds, checksum


def _touch_family(
    engine: Any, leads: pd.DataFrame, touches: pd.DataFrame, snapshots: pd.DataFrame
) -> tuple[float, float]:
    """Ours: the same touch counts and recencies through the engine's kernel, in lead ranges
    on every core as ``FeatureEngine.transform`` runs them (conversion from pandas included,
    as on the polars side)."""
    from features.engine.engine import LeadArrays, _empty_events, map_lead_ranges
    from features.engine.timelines import timestamps_ms, window_counts

    start = time.perf_counter()
    lead_ids = pd.Index(leads["lead_id"])
    touch_arrays, _ = engine.event_arrays(lead_ids, touches, None, threads=0)
    query_lead = np.asarray(lead_ids.get_indexer(snapshots["lead_id"]), dtype=np.int64)
    as_of = timestamps_ms(snapshots["as_of"])
    order = np.lexsort((as_of, query_lead))
    n_leads = len(lead_ids)
    no_codes = np.full(n_leads, -1, dtype=np.int64)
    lead_arrays = LeadArrays(np.zeros(n_leads, dtype=np.int64), no_codes, no_codes, {}, {})
    n_types = len(engine.touch_types_) + 1
    bounds = [w * 86_400_000 for w in engine.windows_days]

    def kernel(_leads: Any, events: Any, _sales: Any, queries: Any, times: Any) -> Any:
        return window_counts(
            engine.origin_ms_, events.lead, events.kind, events.ms, n_types, queries, times, bounds
        )

    parts = map_lead_ranges(
        kernel, lead_arrays, touch_arrays, _empty_events(), query_lead[order], as_of[order]
    )
    counts = np.concatenate([c for c, _ in parts])
    last_ms = np.concatenate([m for _, m in parts])
    seconds = time.perf_counter() - start
    has = counts[:, :, -1] > 0
    sorted_as_of = as_of[order]
    checksum = (
        float(counts[has].sum())
        + float(np.nansum(np.where(has, (sorted_as_of[:, None] - last_ms), 0.0))) / 86_400_000
    )
    return seconds, checksum


def _one_lead_timings(engine: Any, tables: dict[str, pd.DataFrame], touches: int) -> np.ndarray:
    """The serving path: one lead with ``touches`` touches and 5 sales events."""
    from features import contract

    lead = tables["leads"].iloc[len(tables["leads"]) // 2].to_dict()
    as_of_one = lead["created_at"] + pd.Timedelta(days=40)
    rng = np.random.default_rng(0)
    touch_list = [
        {
            "occurred_at": lead["created_at"] + pd.Timedelta(hours=float(h)),
            "touch_type": str(rng.choice(contract.TOUCH_TYPES)),
            "campaign_id": None,
        }
        for h in rng.uniform(0, 40 * 24, touches)
    ]
    sales_list = [
        {"occurred_at": lead["created_at"] + pd.Timedelta(days=d), "stage": s}
        for d, s in zip(
            (1, 3, 6, 9, 12),
            ("assigned", "accepted", "opportunity", "assigned", "accepted"),
            strict=True,
        )
    ]
    for _ in range(300):
        engine.transform_one(lead, touch_list, sales_list, as_of_one)
    timings = []
    for _ in range(3000):
        t0 = time.perf_counter()
        engine.transform_one(lead, touch_list, sales_list, as_of_one)
        timings.append(time.perf_counter() - t0)
    return np.asarray(timings)


def _child(leads: int, rounds: int) -> dict[str, Any]:
    from features import contract
    from features.engine.engine import FeatureEngine
    from features.engine.snapshots import build_snapshots
    from features.ingest.simulate import simulate
    from features.params import GenerateParams, Params

    params = Params()
    with tempfile.TemporaryDirectory() as directory:
        out = Path(directory)
        simulate(GenerateParams(leads=leads, seed=1), out)
        tables = {n: pd.read_parquet(out / f"{n}.parquet") for n in contract.TABLES}
    horizon = contract.data_horizon(tables)
    targets = {n: t.stages for n, t in params.targets.items()}
    snapshots = build_snapshots(
        tables["leads"], tables["sales_events"], (0, 7, 14, 30), horizon, 90, targets
    )
    engine = FeatureEngine(targets=targets).fit(tables, horizon)
    windows = list(engine.windows_days)

    # A warm-up of each side, then interleaved rounds (ours, polars, ours, …): both see the
    # same machine state; the medians are compared.
    _touch_family(engine, tables["leads"], tables["touches"], snapshots)
    _polars_reference(snapshots, tables["touches"], windows, engine.touch_types_)
    ours: list[float] = []
    theirs: list[float] = []
    whole: list[float] = []
    whole_one_thread: list[float] = []
    checksums_equal = True
    for _ in range(rounds):
        seconds, ours_checksum = _touch_family(
            engine, tables["leads"], tables["touches"], snapshots
        )
        ours.append(seconds)
        seconds, reference_checksum = _polars_reference(
            snapshots, tables["touches"], windows, engine.touch_types_
        )
        theirs.append(seconds)
        checksums_equal &= abs(ours_checksum - reference_checksum) < 1e-6 * max(1, ours_checksum)
        for threads, into in ((0, whole), (1, whole_one_thread)):
            start = time.perf_counter()
            engine.transform(
                snapshots, tables["leads"], tables["touches"], tables["sales_events"], threads
            )
            into.append(time.perf_counter() - start)
    timings = _one_lead_timings(engine, tables, 30)
    return {
        "leads": leads,
        "snapshots": len(snapshots),
        "touches": len(tables["touches"]),
        "ours_touch_s": float(np.median(ours)),
        "polars_touch_s": float(np.median(theirs)),
        "ours_all_s": float(np.median(whole)),
        "ours_all_one_thread_s": float(np.median(whole_one_thread)),
        "checksum_equal": checksums_equal,
        "single_p50_us": float(np.percentile(timings, 50) * 1e6),
        "single_p99_us": float(np.percentile(timings, 99) * 1e6),
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "load": os.getloadavg()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leads", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per size")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args.child, args.rounds)))
        return
    print(
        f"{'leads':>9} {'snapshots':>10} {'touches':>11} | {'ours touch s':>12} "
        f"{'polars s':>9} {'ratio':>6} {'same?':>5} | {'all s':>6} {'1 thr s':>7} "
        f"{'cores x':>7} {'snap/s':>9} {'peak MB':>8} | {'1-lead p50 µs':>13} {'p99 µs':>7} "
        f"| {'load':>5}"
    )
    for leads in args.leads:
        result = subprocess.run(
            [sys.executable, __file__, "--child", str(leads), "--rounds", str(args.rounds)],
            capture_output=True,
            text=True,
            check=True,
        )
        r = json.loads(result.stdout.strip().splitlines()[-1])
        print(
            f"{r['leads']:>9,} {r['snapshots']:>10,} {r['touches']:>11,} | "
            f"{r['ours_touch_s']:>12.2f} {r['polars_touch_s']:>9.2f} "
            f"{r['ours_touch_s'] / r['polars_touch_s']:>6.2f} "
            f"{'yes' if r['checksum_equal'] else 'NO':>5} | "
            f"{r['ours_all_s']:>6.2f} {r['ours_all_one_thread_s']:>7.2f} "
            f"{r['ours_all_one_thread_s'] / r['ours_all_s']:>7.2f} "
            f"{r['snapshots'] / r['ours_all_s']:>9,.0f} {r['peak_mb']:>8,.0f} | "
            f"{r['single_p50_us']:>13.0f} {r['single_p99_us']:>7.0f} | {r['load']:>5.2f}"
        )
    print(
        f"cores: {os.cpu_count()}; medians of {args.rounds} interleaved rounds after a warm-up. "
        "Goals: ours/polars ≤ 1.5 on the touch family (both on every core); peak ≤ 8,192 MB "
        "at 1 M leads; one lead (30 touches, 5 sales events) p50 ≤ 100 µs"
    )


if __name__ == "__main__":
    main()
