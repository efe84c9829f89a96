"""The whole pipeline through real DVC: cold and no-change `dvc repro`, per stage time and peak
memory of every process, with the local engine and on a Dask cluster, side by side.

    python bench/bench_pipeline.py --leads 20000 1000000
    python bench/bench_pipeline.py --leads 1000000 --engines local dask
    python bench/bench_pipeline.py --leads 3000000 --engines dask --max-rows 2000000

Each size and engine runs in a fresh copy of this checkout (a new git repository, its own
mlflow.db, `engine.kind` set in its params.yaml), one stage at a time (`dvc repro
--single-item`, in pipeline order), so each stage's figures are its own: wall time, the peak
RSS of the stage's process (and of DVC's, the larger) and of its largest Dask worker. The code
run is the copy's (``PYTHONPATH``), so editing the checkout meanwhile changes nothing. Peers
printed beside the figures: the local engine for Dask (the ratios), the goals (the default in
about a minute, 8 GB per process), and the cold run for the no-change run. The engines run one
after the other (one round each: a 1 M-lead round is about half an hour); the load average is
printed after each.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import yaml
from process_peaks import largest, watched

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
MIB = 1024 * 1024


def _stages() -> list[str]:
    """The pipeline's stages in dvc.yaml's order (which is the DAG's)."""
    return list(yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"])


def _copy_checkout(target: Path, leads: int, engine: str, max_rows: int | None) -> None:
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    for name in filter(None, files):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    params = yaml.safe_load((target / "params.yaml").read_text())
    params["generate"]["leads"] = leads
    params["engine"]["kind"] = engine
    if max_rows is not None:
        params["train"]["max_rows"] = max_rows
    (target / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    identity = ["-c", "user.email=bench@example.invalid", "-c", "user.name=bench"]
    for command in (["init", "-q"], [*identity, "add", "-A"], [*identity, "commit", "-qm", "b"]):
        subprocess.run(["git", *command], cwd=target, check=True, capture_output=True)


def _dvc(repo: Path, arguments: list[str]) -> dict[str, float]:
    """One dvc command: seconds, the largest non-worker process's peak RSS, the largest
    worker's, and how many stages ran."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    env["PYTHONPATH"] = str(repo)
    env.pop("MLFLOW_TRACKING_URI", None)
    start = time.perf_counter()
    process = psutil.Popen(
        [str(BIN / "dvc"), *arguments],
        cwd=repo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    with watched(process) as peaks:
        out, errors = process.communicate()
        seconds = time.perf_counter() - start
    if process.returncode != 0:
        sys.exit(f"dvc {' '.join(arguments)} failed:\n{out[-2000:]}{errors[-3000:]}")
    stage = max(largest(peaks, "stage"), default=0)
    worker = max(largest(peaks, "worker"), default=0)
    return {
        "seconds": seconds,
        "stage_mib": stage / MIB,
        "worker_mib": worker / MIB,
        "stages_run": out.count("Running stage"),
    }


def _run_engine(leads: int, engine: str, max_rows: int | None) -> dict[str, dict[str, float]]:
    figures: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="leadscore-bench-") as directory:
        repo = Path(directory) / "repo"
        _copy_checkout(repo, leads, engine, max_rows)
        sample = f", train.max_rows {max_rows:,}" if max_rows else ""
        print(f"\n{leads:,} leads, engine {engine}{sample}: cold `dvc repro`, one stage at a time")
        print(f"{'stage':>10} {'seconds':>9} {'stage MiB':>10} {'worker MiB':>11}")
        for stage in _stages():
            result = _dvc(repo, ["repro", "--single-item", stage])
            figures[stage] = result
            print(
                f"{stage:>10} {result['seconds']:>9.1f} {result['stage_mib']:>10,.0f} "
                f"{result['worker_mib']:>11,.0f}",
                flush=True,
            )
        total = sum(result["seconds"] for result in figures.values())
        peak = max(result["stage_mib"] for result in figures.values())
        workers = max(result["worker_mib"] for result in figures.values())
        figures["cold total"] = {"seconds": total, "stage_mib": peak, "worker_mib": workers}
        goal = "about 60 s" if leads <= 20_000 else "peak ≤ 8,192 MiB per process"
        print(f"{'cold total':>10} {total:>9.1f} {peak:>10,.0f} {workers:>11,.0f}   goal: {goal}")
        again = _dvc(repo, ["repro"])
        print(
            f"{'no-change':>10} {again['seconds']:>9.1f} {again['stage_mib']:>10,.0f} "
            f"{'':>11}   stages run: {again['stages_run']:.0f} (peer: the cold run, "
            f"{total / max(again['seconds'], 1e-9):,.0f}x longer)"
        )
        metrics = json.loads((repo / "artifacts" / "metrics.json").read_text())
        figures["quality"] = {"roc_auc": _roc_auc(metrics)}
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(
            f"engine recorded: {metrics.get('engine')}; test ROC AUC (converted) "
            f"{figures['quality']['roc_auc']:.4f}; load average {load}"
        )
    return figures


def _roc_auc(metrics: dict[str, Any]) -> float:
    """The primary target's test ROC AUC as metrics.json records it."""
    return float(metrics[metrics["primary_target"]]["model"]["roc_auc"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, nargs="+", default=[20_000, 1_000_000])
    parser.add_argument("--engines", nargs="+", choices=("local", "dask"), default=["local"])
    parser.add_argument("--max-rows", type=int, default=None, help="train.max_rows")
    args = parser.parse_args()
    for leads in args.leads:
        results = {engine: _run_engine(leads, engine, args.max_rows) for engine in args.engines}
        if {"local", "dask"} <= set(results):
            local, dask = results["local"], results["dask"]
            print(f"\n{leads:,} leads, Dask vs local (peer), per stage")
            print(f"{'stage':>10} {'time':>7} {'stage peak':>11} {'max process':>12}")
            for stage, mine in dask.items():
                if stage == "quality":
                    continue
                peer = local[stage]
                biggest = max(mine["stage_mib"], mine["worker_mib"]) / max(peer["stage_mib"], 1)
                print(
                    f"{stage:>10} {mine['seconds'] / peer['seconds']:>6.2f}x "
                    f"{mine['stage_mib'] / max(peer['stage_mib'], 1):>10.2f}x {biggest:>11.2f}x"
                )
            print(
                f"test ROC AUC: dask {dask['quality']['roc_auc']:.4f}, "
                f"local {local['quality']['roc_auc']:.4f}"
            )


if __name__ == "__main__":
    main()
