"""Training time per 100k snapshots: generate N leads → features → train (every target).

    python bench/bench_training.py --leads 100000 [--params params.yaml]

Each size runs in a fresh child process so peak memory (max RSS) is that size's own. Prints,
per size: snapshots, the seconds of each step, the training seconds per 100k snapshots, the
boosting rounds kept per target, and the peak memory. Training includes both baselines and the
calibration, as the train stage runs them; the figure to compare with is the same LightGBM
alone, printed as ``lgbm s`` (the booster's share of the training time).
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
from typing import Any


def _child(leads: int, out: Path, params_path: Path) -> None:
    import lightgbm as lgb

    from features.engine.table import build_feature_table
    from features.ingest.simulate import simulate
    from features.params import load_params
    from features.storage import read_validated
    from models import training

    params = load_params(params_path)
    start = time.perf_counter()
    simulate(
        params.generate.model_copy(update={"leads": leads}),
        out,
        window_days=params.quality_lead.window_days,
    )
    generated = time.perf_counter()
    tables = read_validated(out)
    engine, snapshots = build_feature_table(tables, params, None)
    featured = time.perf_counter()

    booster_seconds = 0.0
    original = lgb.train

    def timed_train(*args: Any, **kwargs: Any) -> lgb.Booster:
        nonlocal booster_seconds
        begin = time.perf_counter()
        booster = original(*args, **kwargs)
        booster_seconds += time.perf_counter() - begin
        return booster

    training.lgb.train = timed_train
    _, trained = training.train_all(snapshots, engine, params)
    trained_at = time.perf_counter()
    labelled = int(snapshots["split"].isin(("train", "valid", "calibration")).sum())
    print(
        json.dumps(
            {
                "snapshots": len(snapshots),
                "training_rows": labelled,
                "generate_s": generated - start,
                "features_s": featured - generated,
                "train_s": trained_at - featured,
                "lgbm_s": booster_seconds,
                "rounds": {t: r.report["best_iteration"] for t, r in trained.items()},
                "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leads", type=int, nargs="+", default=[100_000])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.out, args.params)
        return
    print(
        f"{'leads':>9} {'snapshots':>10} {'generate s':>10} {'features s':>10} {'train s':>8} "
        f"{'lgbm s':>7} {'s/100k snap':>11} {'peak MB':>8}  best rounds"
    )
    for leads in args.leads:
        with tempfile.TemporaryDirectory() as directory:
            result = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    *("--child", str(leads), "--out", directory),
                    *("--params", str(args.params)),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
        f = json.loads(result.stdout.strip().splitlines()[-1])
        per_100k = f["train_s"] / f["snapshots"] * 100_000
        rounds = ", ".join(f"{t} {n}" for t, n in f["rounds"].items())
        print(
            f"{leads:>9,} {f['snapshots']:>10,} {f['generate_s']:>10.1f} {f['features_s']:>10.1f} "
            f"{f['train_s']:>8.1f} {f['lgbm_s']:>7.1f} {per_100k:>11.1f} {f['peak_mb']:>8,.0f}  "
            f"{rounds}"
        )


if __name__ == "__main__":
    main()
