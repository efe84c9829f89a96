"""What the per-column leakage guard costs in training, and what it finds, on the default
simulator data (20,000 leads, both targets).

    .venv/bin/python bench/bench_leakage.py [--leads 20000] [--features data/features]

Trains twice on the same feature table: once with the guard's retrains off
(``train.leakage.drop_columns: 0``; the univariate and |SHAP| figures still run) and once with
the defaults, and prints the training times, the guard's own seconds per target and the top
columns by |SHAP| with their figures.
"""

from __future__ import annotations

import argparse
import pickle
import tempfile
import time
from pathlib import Path

import pandas as pd

from features.engine.table import build_feature_table
from features.ingest.simulate import simulate
from features.params import load_params
from features.storage import read_validated
from models.training import train_all

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leads", type=int, default=20_000)
    parser.add_argument(
        "--features", type=Path, help="a features stage output to read instead of simulating"
    )
    args = parser.parse_args()
    params = load_params(REPO / "params.yaml")
    if args.features is not None:
        with (args.features / "engine.pkl").open("rb") as handle:
            engine = pickle.load(handle)
        snapshots = pd.read_parquet(args.features / "snapshots.parquet")
    else:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp)
            simulate(
                params.generate.model_copy(update={"leads": args.leads}),
                out,
                window_days=params.quality_lead.window_days,
            )
            engine, snapshots = build_feature_table(read_validated(out), params, None)
    X = engine.matrix_from_frame(snapshots)
    guard = params.train.leakage
    runs = {
        "no drop-column retrains": params.model_copy(
            update={
                "train": params.train.model_copy(
                    update={"leakage": guard.model_copy(update={"drop_columns": 0})}
                )
            }
        ),
        f"default (drop_columns={guard.drop_columns})": params,
    }
    for label, run_params in runs.items():
        started = time.perf_counter()
        _, trained = train_all(snapshots, engine, run_params, X=X)
        seconds = time.perf_counter() - started
        guard_seconds = {t: r.report["leakage"]["seconds"] for t, r in trained.items()}
        print(f"{label}: train_all {seconds:.1f} s; guard per target {guard_seconds}")
    for target, result in trained.items():
        report = result.report["leakage"]
        print(
            f"\n{target}: cheap full-model valid AUC {report['cheap_valid_roc_auc']}, "
            f"flagged {report['flagged'] or 'none'}"
        )
        print(f"{'column':32} {'uni AUC':>8} {'uni PR':>8} {'|SHAP|':>7} {'drop Δ':>8}")
        for column in report["columns"][:8]:
            delta = column["drop_auc_delta"]
            print(
                f"{column['column']:32} {column['univariate_roc_auc'] or 0:8.3f} "
                f"{column['univariate_pr_auc'] or 0:8.3f} {column['shap_share']:7.1%} "
                f"{'' if delta is None else f'{delta:8.4f}':>8}"
            )


if __name__ == "__main__":
    main()
