"""Reasons benchmark: one lead's SHAP contributions from the scorer's TreeSHAP tables beside
LightGBM's own ``pred_contrib`` (the peer), and the whole reason step per lead.

    python bench/bench_reasons.py [--workdir /tmp/bench-serving] [--rounds 5] [--calls 2000]

Uses the model ``bench/bench_serving.py`` builds in ``--workdir`` (building it when absent:
20,000 simulated leads, params.yaml). Interleaved rounds: in each, the tables, then
``pred_contrib`` (one thread, as an API worker runs it), each ``--calls`` times on one row of a
lead with 30 touches; answers checked equal within 1e-9 before timing. Prints p50 per side,
the ratio, the reason step (contributions + :meth:`ReasonTable.top`) against the goal of
200 µs, how long building the tables took, and the load average.

Then the fit and engagement effects (:mod:`models.axes`): one lead, and a batch of the
leads at the data horizon on every core, from the tables' per-axis expectations beside the SHAP
contributions they would otherwise be summed from (same tables), and LightGBM's raw predict
of the same rows (the floor every answer pays anyway).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def p50_us(call: Callable[[], object], calls: int) -> float:
    for _ in range(min(200, calls)):
        call()
    timings = []
    for _ in range(calls):
        start = time.perf_counter_ns()
        call()
        timings.append(time.perf_counter_ns() - start)
    return statistics.median(timings) / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bench-serving"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()

    import datetime as dt

    import bench_serving

    from models.packaging.loading import load
    from models.treeshap import path_table

    bench_serving.build(args.workdir.resolve(), 20_000)
    body, _ = bench_serving.one_lead_request(args.workdir.resolve())
    scorer, _source = load(str(args.workdir.resolve() / "model"))
    model = scorer.models[scorer.primary]

    def parsed(event: dict) -> dict:
        return {**event, "occurred_at": dt.datetime.fromisoformat(event["occurred_at"])}

    lead = {**body["lead"], "created_at": dt.datetime.fromisoformat(body["lead"]["created_at"])}
    row = scorer.engine.transform_one(
        lead,
        [parsed(t) for t in body["touches"]],
        [parsed(s) for s in body["sales_events"]],
        dt.datetime.fromisoformat(body["as_of"]),
    )[None, :]

    start = time.perf_counter()
    table = path_table(model.booster, model.best_iteration, scorer.axis_groups, 2)
    build_s = time.perf_counter() - start
    if table is None:
        raise SystemExit("this model's trees are too big to tabulate")

    def lightgbm() -> np.ndarray:
        full = model.booster.predict(
            row, num_iteration=model.best_iteration, pred_contrib=True, num_threads=1
        )
        return np.asarray(full)[:, :-1]

    def tables() -> np.ndarray:
        return table.contributions(row)

    difference = float(np.abs(tables() - lightgbm()).max())
    if difference > 1e-9:
        raise SystemExit(f"answers differ: max |tables - pred_contrib| = {difference:.3g}")

    reason_table = scorer.reason_table

    def reasons() -> object:
        return reason_table.top(table.contributions(row)[0], row[0], 3)

    print(f"load average at start: {os.getloadavg()}")
    print(
        f"model: {model.best_iteration} trees (primary target {scorer.primary}), "
        f"{row.shape[1]} features; tables built in {build_s:.2f} s, "
        f"{table.phi.nbytes / 1e6:.1f} MB; max |difference| {difference:.2g}"
    )
    ours, peer, step = [], [], []
    for round_ in range(args.rounds):
        ours.append(p50_us(tables, args.calls))
        peer.append(p50_us(lightgbm, args.calls))
        step.append(p50_us(reasons, args.calls))
        print(
            f"round {round_ + 1}: tables {ours[-1]:.1f} µs, pred_contrib {peer[-1]:.1f} µs, "
            f"reason step {step[-1]:.1f} µs"
        )
    ours_p50, peer_p50, step_p50 = (statistics.median(v) for v in (ours, peer, step))
    print(
        f"one-lead SHAP, p50 of round p50s: tables {ours_p50:.1f} µs vs LightGBM pred_contrib "
        f"{peer_p50:.1f} µs = {peer_p50 / ours_p50:.1f}x faster"
    )
    print(
        f"reason step (contributions + top 3 each side): {step_p50:.1f} µs (goal <= 200 µs: "
        f"{'met' if step_p50 <= 200 else 'missed'})"
    )

    import pandas as pd

    from features.storage import read_validated

    raw = read_validated(args.workdir.resolve() / "raw")
    horizon = pd.to_datetime(raw["touches"]["occurred_at"], utc=True).max()
    every_lead = pd.DataFrame({"lead_id": raw["leads"]["lead_id"], "as_of": horizon})
    batch = scorer.engine.transform(every_lead, raw["leads"], raw["touches"], raw["sales_events"])

    def axes_one() -> np.ndarray:
        return table.group_effects(row)

    def predict_one() -> np.ndarray:
        return np.asarray(
            model.booster.predict(row, num_iteration=model.best_iteration, num_threads=1)
        )

    one_axes, one_shap, one_predict, many_axes, many_shap, many_predict = [], [], [], [], [], []
    for _ in range(args.rounds):
        one_axes.append(p50_us(axes_one, args.calls))
        one_shap.append(p50_us(tables, args.calls))
        one_predict.append(p50_us(predict_one, args.calls))
        for out, call in (
            (many_axes, lambda: table.group_effects(batch, threads=0)),
            (many_shap, lambda: table.contributions(batch, threads=0)),
            (
                many_predict,
                lambda: model.booster.predict(batch, num_iteration=model.best_iteration),
            ),
        ):
            start = time.perf_counter()
            call()
            out.append(len(batch) / (time.perf_counter() - start))
    print(
        f"fit + engagement, one lead: {statistics.median(one_axes):.1f} µs (SHAP contributions "
        f"from the same tables {statistics.median(one_shap):.1f} µs; raw predict of the primary "
        f"target {statistics.median(one_predict):.1f} µs)"
    )
    print(
        f"fit + engagement, {len(batch):,} rows on every core: "
        f"{statistics.median(many_axes):,.0f} rows/s (SHAP contributions "
        f"{statistics.median(many_shap):,.0f} rows/s; raw predict "
        f"{statistics.median(many_predict):,.0f} rows/s)"
    )
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
