"""Feature engine benchmark: batch throughput and memory, a polars reference side by side,
and the single-lead serving path.

    python bench/bench_features.py --leads 100000 1000000

For each size, in a fresh child process (so peak memory is that size's own):
- the simulator's tables are generated, snapshots built and the engine fitted;
- **ours**: the touch family (per-type counts in the 7/30/90-day and all-time windows and days
  since the last one) through the engine's kernel, and the whole transform (every family);
- **polars**: an independent implementation of the same touch counts and recencies
  (join snapshots to touches, filter, group); the checksums of both must agree.
Then the single-lead path: one lead with 50 touches and 5 sales events, p50/p99 of
``FeatureEngine.transform_one``. Needs the bench extra: ``pip install -e ".[bench]"``.
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


def _child(leads: int) -> dict[str, float]:
    from features import contract
    from features.engine.engine import FeatureEngine
    from features.engine.snapshots import build_snapshots
    from features.engine.timelines import timestamps_ms, window_counts
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
    lead_ids = pd.Index(tables["leads"]["lead_id"])
    windows = list(engine.windows_days)

    start = time.perf_counter()
    touch_arrays, _ = engine.event_arrays(lead_ids, tables["touches"], None)
    n_types = len(engine.touch_types_) + 1
    query_lead = np.asarray(lead_ids.get_indexer(snapshots["lead_id"]), dtype=np.int64)
    as_of = timestamps_ms(snapshots["as_of"])
    counts, last_ms = window_counts(
        engine.origin_ms_,
        touch_arrays.lead,
        touch_arrays.kind,
        touch_arrays.ms,
        n_types,
        query_lead,
        as_of,
        [w * 86_400_000 for w in windows],
    )
    ours_touch = time.perf_counter() - start
    has = counts[:, :, -1] > 0
    ours_checksum = (
        float(counts[has].sum())
        + float(np.nansum(np.where(has, (as_of[:, None] - last_ms), 0.0))) / 86_400_000
    )

    start = time.perf_counter()
    engine.transform(snapshots, tables["leads"], tables["touches"], tables["sales_events"])
    ours_all = time.perf_counter() - start

    reference_seconds, reference_checksum = _polars_reference(
        snapshots, tables["touches"], windows, engine.touch_types_
    )

    # The serving path: one lead, 50 touches, 5 sales events.
    lead = tables["leads"].iloc[len(tables["leads"]) // 2].to_dict()
    as_of_one = lead["created_at"] + pd.Timedelta(days=40)
    rng = np.random.default_rng(0)
    touch_list = [
        {
            "occurred_at": lead["created_at"] + pd.Timedelta(hours=float(h)),
            "touch_type": str(rng.choice(contract.TOUCH_TYPES)),
            "campaign_id": None,
        }
        for h in rng.uniform(0, 40 * 24, 50)
    ]
    sales_list = [
        {"occurred_at": lead["created_at"] + pd.Timedelta(days=d), "stage": s}
        for d, s in zip(
            (1, 3, 6, 9, 12),
            ("assigned", "accepted", "opportunity", "assigned", "accepted"),
            strict=True,
        )
    ]
    for _ in range(200):
        engine.transform_one(lead, touch_list, sales_list, as_of_one)
    timings = []
    for _ in range(3000):
        t0 = time.perf_counter()
        engine.transform_one(lead, touch_list, sales_list, as_of_one)
        timings.append(time.perf_counter() - t0)
    return {
        "leads": leads,
        "snapshots": len(snapshots),
        "touches": len(tables["touches"]),
        "ours_touch_s": ours_touch,
        "ours_all_s": ours_all,
        "polars_touch_s": reference_seconds,
        "checksum_equal": abs(ours_checksum - reference_checksum) < 1e-6 * max(1, ours_checksum),
        "single_p50_us": float(np.percentile(timings, 50) * 1e6),
        "single_p99_us": float(np.percentile(timings, 99) * 1e6),
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leads", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args.child)))
        return
    print(
        f"{'leads':>9} {'snapshots':>10} {'touches':>11} | {'ours touch s':>12} "
        f"{'polars s':>9} {'ratio':>6} {'same?':>5} | {'ours all s':>10} {'snap/s':>9} "
        f"{'touch/s':>10} {'peak MB':>8} | {'1-lead p50 µs':>13} {'p99 µs':>7}"
    )
    for leads in args.leads:
        result = subprocess.run(
            [sys.executable, __file__, "--child", str(leads)],
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
            f"{r['ours_all_s']:>10.2f} {r['snapshots'] / r['ours_all_s']:>9,.0f} "
            f"{r['touches'] / r['ours_all_s']:>10,.0f} {r['peak_mb']:>8,.0f} | "
            f"{r['single_p50_us']:>13.0f} {r['single_p99_us']:>7.0f}"
        )
    print(
        "goals: ours/polars ≤ 1.5 on the touch family; peak ≤ 8,192 MB at 1 M leads; "
        "single lead p50 ≤ 200 µs"
    )


if __name__ == "__main__":
    main()
