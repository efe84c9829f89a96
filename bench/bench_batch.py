"""Batch scoring benchmark: ``leadscore score`` with and without reasons, beside the floor.

    python bench/bench_batch.py [--leads 100000 300000] [--model artifacts/model]
                                [--chunk 100000] [--workdir DIR] [--skip-reasons-above N]

For each size: simulated leads with their touches and sales events (``leadscore generate``,
reused from ``--workdir``), then ``leadscore score`` as a separate process, once with
``--reasons 0`` and once with ``--reasons 3``: seconds, leads/s and the process's peak RSS
(``getrusage`` of the child). The peer is the floor no scorer can beat on this model: raw
``Booster.predict`` (every target) and ``pred_contrib`` (the primary target's SHAP, what the
reasons need) rows/s on the feature matrix of 20,000 of the leads, on the same cores.

With two sizes or more (the default), the peak's growth per lead from the smallest to each
larger size: memory is meant to be bounded by ``--chunk``, not the file, so what grows is the
duplicate-id check's hashes, 8 bytes a lead, under the run-to-run noise of the peak (about
±50 MB: allocator heaps and threads; a run of one chunk also peaks a little lower than one of
several, while the heaps settle). Compare sizes of several chunks each for the slope.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
AS_OF = "2025-09-01T00:00:00Z"

_MEASURE = (
    "import resource, subprocess, sys, time\n"
    "start = time.perf_counter()\n"
    "code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode\n"
    "seconds = time.perf_counter() - start\n"
    "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024\n"
    "print(f'{code} {seconds} {peak}')\n"
)
"""Run one command in a fresh parent, so ``RUSAGE_CHILDREN`` is that command's peak alone."""


def measure(command: list[str]) -> tuple[float, float]:
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, *command], capture_output=True, text=True, check=True
    )
    code, seconds, peak = done.stdout.split()
    if int(code):
        raise SystemExit(f"failed: {' '.join(command)}")
    return float(seconds), float(peak)


def data(workdir: Path, leads: int) -> Path:
    raw = workdir / f"raw-{leads}"
    if not (raw / "leads.parquet").exists():
        generate = [str(BIN / "leadscore"), "generate", "--leads", str(leads), "--seed", "3"]
        subprocess.run(
            [*generate, "--out", str(raw)],
            check=True,
            stderr=subprocess.DEVNULL,
        )
    return raw


def floor(model: str, raw: Path, rows: int = 20_000) -> dict[str, float]:
    """Raw ``Booster.predict`` (every target) and ``pred_contrib`` rows/s."""
    import pandas as pd

    from models.packaging.loading import load

    scorer, _ = load(model, None)
    leads = pd.read_parquet(raw / "leads.parquet").head(rows)
    ids = leads["lead_id"].tolist()
    events = {
        name: pd.read_parquet(raw / f"{name}.parquet", filters=[("lead_id", "in", ids)])
        for name in ("touches", "sales_events")
    }
    snapshots = pd.DataFrame({"lead_id": leads["lead_id"], "as_of": pd.Timestamp(AS_OF)})
    snapshots["as_of"] = snapshots["as_of"].astype("datetime64[us, UTC]")
    X = scorer.engine.transform(snapshots, leads, events["touches"], events["sales_events"])
    start = time.perf_counter()
    for model_ in scorer.models.values():
        model_.booster.predict(X, num_iteration=model_.best_iteration, num_threads=0)
    predict = len(X) / (time.perf_counter() - start)
    start = time.perf_counter()
    scorer.contributions(X, num_threads=0)
    contrib = len(X) / (time.perf_counter() - start)
    return {"predict_rows_s": predict, "pred_contrib_rows_s": contrib}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leads", type=int, nargs="+", default=[100_000, 300_000])
    parser.add_argument("--model", default=str(REPO / "artifacts" / "model"))
    parser.add_argument("--chunk", type=int, default=100_000)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--skip-reasons-above", type=int, default=None)
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-batch-"))
    workdir.mkdir(parents=True, exist_ok=True)
    peer = floor(args.model, data(workdir, min(args.leads)))
    print(
        f"floor: Booster.predict (all targets) {peer['predict_rows_s']:,.0f} rows/s, "
        f"pred_contrib (primary) {peer['pred_contrib_rows_s']:,.0f} rows/s"
    )
    results = []
    for leads in args.leads:
        raw = data(workdir, leads)
        for reasons in (0, 3):
            if reasons and args.skip_reasons_above and leads > args.skip_reasons_above:
                continue
            out = workdir / f"scores-{leads}-{reasons}.parquet"
            command = [
                *(str(BIN / "leadscore"), "score", "--model", args.model),
                *("--input", str(raw / "leads.parquet")),
                *("--touches", str(raw / "touches.parquet")),
                *("--sales-events", str(raw / "sales_events.parquet")),
                *("--as-of", AS_OF, "--reasons", str(reasons), "--chunk", str(args.chunk)),
                *("--output", str(out)),
            ]
            seconds, peak = measure(command)
            rate = leads / seconds
            floor_rate = peer["pred_contrib_rows_s" if reasons else "predict_rows_s"]
            results.append(
                {"leads": leads, "reasons": reasons, "seconds": seconds, "peak_mb": peak}
            )
            print(
                f"leadscore score {leads:>9,} leads, reasons {reasons}: {seconds:7.1f} s, "
                f"{rate:8,.0f} leads/s, peak {peak:,.0f} MB "
                f"({rate / floor_rate:.2f}x the {'pred_contrib' if reasons else 'predict'} floor)"
            )
            out.unlink(missing_ok=True)
    growth = per_lead_growth(results)
    for line in growth:
        print(
            f"peak growth, reasons {line['reasons']}: {line['from_leads']:,} → "
            f"{line['to_leads']:,} leads: {line['peak_mb_delta']:+,.0f} MB, "
            f"{line['bytes_per_lead']:+,.0f} bytes/lead (the duplicate check's hashes: 8; "
            f"the peak varies by about ±50 MB from run to run)"
        )
    print(json.dumps({"floor": peer, "runs": results, "growth": growth}))


def per_lead_growth(results: list[dict[str, float]]) -> list[dict[str, float]]:
    """Per ``reasons`` setting: the peak's change from the smallest size to each larger one,
    in MB and in bytes per lead (MB of 2**20 bytes, as ``ru_maxrss`` / 1024)."""
    growth = []
    for reasons in sorted({run["reasons"] for run in results}):
        runs = sorted((r for r in results if r["reasons"] == reasons), key=lambda r: r["leads"])
        for run in runs[1:]:
            delta = run["peak_mb"] - runs[0]["peak_mb"]
            growth.append(
                {
                    "reasons": reasons,
                    "from_leads": runs[0]["leads"],
                    "to_leads": run["leads"],
                    "peak_mb_delta": delta,
                    "bytes_per_lead": delta * 2**20 / (run["leads"] - runs[0]["leads"]),
                }
            )
    return growth


if __name__ == "__main__":
    main()
