"""The whole pipeline through real DVC: cold and no-change `dvc repro`, per stage time and peak
memory, at the default size and at 1 M leads.

    python bench/bench_pipeline.py --leads 20000 1000000

Each size runs in a fresh copy of this checkout (a new git repository, its own mlflow.db), one
stage at a time (`dvc repro --single-item`, in pipeline order) so that each stage's peak memory
(max RSS of its process tree) is its own. Peers printed beside the figures: the goals (the
default in about a minute, 1 M leads within 8 GB) and, for the no-change run, the cold run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
STAGES = ("ingest", "validate", "features", "train", "evaluate", "register", "score")


def _copy_checkout(target: Path, leads: int) -> None:
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
    (target / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    identity = ["-c", "user.email=bench@example.invalid", "-c", "user.name=bench"]
    for command in (["init", "-q"], [*identity, "add", "-A"], [*identity, "commit", "-qm", "b"]):
        subprocess.run(["git", *command], cwd=target, check=True, capture_output=True)


def _child(repo: Path, arguments: list[str]) -> None:
    """Runs one dvc command and prints its wall time and its process tree's peak RSS."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    start = time.perf_counter()
    result = subprocess.run(
        [str(BIN / "dvc"), *arguments], cwd=repo, env=env, capture_output=True, text=True
    )
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"dvc {' '.join(arguments)} failed:\n{result.stdout[-2000:]}{result.stderr}")
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    ran = result.stdout.count("Running stage")
    print(json.dumps({"seconds": seconds, "peak_mb": peak_mb, "stages_run": ran}))


def _measure(repo: Path, arguments: list[str]) -> dict[str, float]:
    result = subprocess.run(
        [sys.executable, __file__, "--child", str(repo), *arguments],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        sys.exit(result.stderr or result.stdout)
    figures: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1])
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, nargs="+", default=[20_000, 1_000_000])
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    if args.child:
        _child(args.child, rest)
        return
    for leads in args.leads:
        with tempfile.TemporaryDirectory(prefix="leadscore-bench-") as directory:
            repo = Path(directory) / "repo"
            _copy_checkout(repo, leads)
            print(f"\n{leads:,} leads: cold `dvc repro`, one stage at a time")
            print(f"{'stage':>10} {'seconds':>9} {'peak MB':>9}")
            total, peak = 0.0, 0.0
            for stage in STAGES:
                figures = _measure(repo, ["repro", "--single-item", stage])
                total += figures["seconds"]
                peak = max(peak, figures["peak_mb"])
                print(
                    f"{stage:>10} {figures['seconds']:>9.1f} {figures['peak_mb']:>9,.0f}",
                    flush=True,
                )
            goal = "about 60 s" if leads <= 20_000 else "peak ≤ 8,192 MB"
            print(f"{'cold total':>10} {total:>9.1f} {peak:>9,.0f}   goal: {goal}")
            again = _measure(repo, ["repro"])
            print(
                f"{'no-change':>10} {again['seconds']:>9.1f} {again['peak_mb']:>9,.0f}   "
                f"stages run: {again['stages_run']:.0f} (peer: the cold run, "
                f"{total / max(again['seconds'], 1e-9):,.0f}x longer)"
            )


if __name__ == "__main__":
    main()
