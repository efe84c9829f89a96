"""The validate and features stages locally and on a Dask cluster, side by side: wall time
and peak RSS of every process (the stage's own and each worker's), in interleaved rounds.

    python bench/bench_scale.py --leads 100000 1000000 --rounds 2

For each size the simulated CRM is generated once (in ``--work``, kept between runs), then each
round runs ``leadscore validate`` and ``leadscore features`` once with ``engine.kind: local``
and once with ``dask`` (a ``LocalCluster`` of ``--workers`` processes, one thread each, started
and closed by each stage), in alternating order, and checks that both wrote the same
snapshots. The peer of the Dask figures is the local run of the same round; the load average is
printed beside them. Under Dask, validate reads and types the lead tables' Parquet files on the
workers a chunk (row groups) at a time, cuts them into lead partitions, runs Great Expectations
per partition there and has the tasks write the partitioned datasets; features then never loads
the touches in the stage's process (the workers read them). The engine's fit and the matrix
stay in the features stage's process (see docs/scale.md).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import yaml
from process_peaks import largest, watched

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _params(work: Path, kind: str, workers: int, partitions: int) -> Path:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["engine"] = {
        **params["engine"],
        "kind": kind,
        "workers": workers,
        "threads_per_worker": 1,
        "partitions": partitions,
    }
    path = work / f"params-{kind}.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def _run(command: list[str], params: Path) -> tuple[float, int, list[int]]:
    """One stage: seconds, the stage process's peak RSS and each worker's."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    start = time.perf_counter()
    process = psutil.Popen(
        [str(BIN / "leadscore"), *command, "--params", str(params)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=params.parent,
    )
    with watched(process) as peaks:
        _, errors = process.communicate()
        seconds = time.perf_counter() - start
    if process.returncode != 0:
        raise SystemExit(f"leadscore {command[0]} failed: {errors.decode()[-2000:]}")
    return seconds, max(largest(peaks, "stage"), default=0), largest(peaks, "worker")


Figures = dict[str, tuple[float, int, list[int]]]


def _stages(raw: Path, work: Path, kind: str, params: Path) -> tuple[Figures, str]:
    """validate then features with ``params``: each stage's figures, the snapshots' digest."""
    validated, out = work / f"validated-{kind}", work / f"features-{kind}"
    for path in (validated, out):
        shutil.rmtree(path, ignore_errors=True)
    figures = {
        "validate": _run(
            [
                *("validate", "--raw", str(raw), "--out", str(validated)),
                *("--report", str(work / f"report-{kind}")),
            ],
            params,
        ),
        "features": _run(["features", "--validated", str(validated), "--out", str(out)], params),
    }
    digest = hashlib.sha256((out / "snapshots.parquet").read_bytes()).hexdigest()[:16]
    return figures, digest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leads", type=int, nargs="+", default=[100_000])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "bench_scale")
    args = parser.parse_args()
    mib = 1024 * 1024
    for leads in args.leads:
        work = args.work / f"{leads}"
        raw = work / "raw"
        work.mkdir(parents=True, exist_ok=True)
        if not (raw / "leads.parquet").exists():
            subprocess.run(
                [str(BIN / "leadscore"), "generate", "--out", str(raw), "--leads", str(leads)],
                check=True,
                cwd=REPO,
            )
        params = {
            kind: _params(work, kind, args.workers, args.partitions) for kind in ("local", "dask")
        }
        figures: dict[str, list[Figures]] = {"local": [], "dask": []}
        digests: dict[str, set[str]] = {"local": set(), "dask": set()}
        for round_ in range(args.rounds):
            order = ("local", "dask") if round_ % 2 == 0 else ("dask", "local")
            for kind in order:
                stage_figures, digest = _stages(raw, work, kind, params[kind])
                figures[kind].append(stage_figures)
                digests[kind].add(digest)
        same = digests["local"] == digests["dask"] and len(digests["local"]) == 1
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"--- {leads:,} leads, {args.rounds} interleaved rounds, load average {load}")
        for stage in ("validate", "features"):
            local = [f[stage] for f in figures["local"]]
            dask = [f[stage] for f in figures["dask"]]
            t_local = statistics.median(r[0] for r in local)
            t_dask = statistics.median(r[0] for r in dask)
            stage_local = max(r[1] for r in local) / mib
            stage_dask = max(r[1] for r in dask) / mib
            worker_peak = max((max(r[2], default=0) for r in dask), default=0) / mib
            total_dask = max(r[1] + sum(r[2]) for r in dask) / mib
            print(f"{stage}, local : {t_local:8.1f} s   stage process peak {stage_local:8.0f} MiB")
            print(
                f"{stage}, dask  : {t_dask:8.1f} s   stage process peak {stage_dask:8.0f} MiB, "
                f"largest worker {worker_peak:.0f} MiB, all processes {total_dask:.0f} MiB "
                f"({args.workers} workers, {args.partitions} partitions)"
            )
            print(
                f"{stage}, ratio : dask/local time {t_dask / t_local:.2f}x, stage peak "
                f"{stage_dask / stage_local:.2f}x"
            )
        print(f"same snapshots: {same}")


if __name__ == "__main__":
    main()
