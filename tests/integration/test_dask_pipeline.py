"""The pipeline with ``engine.kind: dask`` (features and LightGBM on the cluster) through the
real tools: `dvc exp run -S engine.kind=dask` on a copy of the project (a real two-process
``LocalCluster`` started and closed by the features and train stages), against the same
project's local `dvc repro`; and a Dask worker killed with SIGKILL while it computes its partition.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from features.partitions import is_dataset
from tests.project import BIN, GIT, commit_all, copy_project, pipeline_env, run_ok

pytestmark = pytest.mark.slow

FEATURES = "data/features/snapshots.parquet"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _edit(repo: Path, **sections: dict[str, Any]) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    for section, values in sections.items():
        params[section] = {**params[section], **values}
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The main pipeline run locally and committed, then `dvc exp run -S engine.kind=dask`."""
    repo = tmp_path_factory.mktemp("dask-pipeline") / "repo"
    env = pipeline_env(repo)
    copy_project(repo)
    _edit(repo, generate={"leads": 3000}, train={"num_threads": 1}, engine={"partitions": 4})
    commit_all(repo, env, "baseline")
    run_ok([str(BIN / "dvc"), "repro"], repo, env)
    local = {
        "metrics": json.loads((repo / "artifacts/metrics.json").read_text()),
        "features": pd.read_parquet(repo / FEATURES),
    }
    run_ok([*GIT, "add", "-A"], repo, env)
    run_ok([*GIT, "commit", "-qm", "main pipeline run"], repo, env)
    experiment = run_ok(
        [str(BIN / "dvc"), "exp", "run", "-n", "on-dask", "-S", "engine.kind=dask"], repo, env
    )
    dask = {
        "metrics": json.loads((repo / "artifacts/metrics.json").read_text()),
        "features": pd.read_parquet(repo / FEATURES),
        "output": experiment.stdout + experiment.stderr,
        "train": json.loads((repo / "artifacts/train/report.json").read_text()),
        "partitioned": {
            name: is_dataset(repo / "data/validated" / name)
            for name in ("leads", "touches", "sales_events", "campaigns")
        },
    }
    return {"repo": repo, "env": env, "local": local, "dask": dask}


def test_exp_run_on_dask_records_the_engine_and_matches_the_local_run(
    project: dict[str, Any],
) -> None:
    local, dask = project["local"], project["dask"]
    assert local["metrics"]["engine"] == "local"
    assert dask["metrics"]["engine"] == "dask"
    assert "engine: dask" in dask["output"]  # the features stage's own log line
    # validated on the cluster into lead-partitioned datasets; campaigns stay one file
    assert dask["partitioned"] == {
        "leads": True,
        "touches": True,
        "sales_events": True,
        "campaigns": False,
    }
    # the same rows and bits; LightGBM then trains on the cluster, with the sample's trees
    pd.testing.assert_frame_equal(dask["features"], local["features"], check_exact=True)
    for report in dask["train"].values():
        assert report["cluster"]["trees"] == report["best_iteration"] > 0
    primary = local["metrics"]["primary_target"]
    auc_local = local["metrics"][primary]["model"]["roc_auc"]
    auc_dask = dask["metrics"][primary]["model"]["roc_auc"]
    assert abs(auc_dask - auc_local) <= 0.01
    assert auc_local > 0.6


# ------------------------------------------------------------ a worker killed mid-stage
def _kill_a_working_worker(process: subprocess.Popen[str], log: Path, timeout: float = 600) -> bool:
    """SIGKILL the worker process that is computing a partition: the test watches the stage's
    own cluster through a client of its scheduler (whose address the stage logs) and kills the
    first worker the scheduler lists a task as processing on. False if `dvc repro` ended
    first."""
    from distributed import Client

    deadline = time.monotonic() + timeout
    address = None
    while address is None:
        if process.poll() is not None or time.monotonic() > deadline:
            return False
        found = re.search(r"Dask cluster (tcp://[0-9.]+:[0-9]+)", log.read_text())
        address = found.group(1) if found else None
        time.sleep(0.05)
    with Client(address, timeout="20s", set_as_default=False) as observer:
        while process.poll() is None and time.monotonic() < deadline:
            busy = [worker for worker, keys in observer.processing().items() if keys]
            if busy:
                # run on the worker's event loop, not its (busy) task thread
                pids = observer.run(os.getpid, workers=busy[:1])
                os.kill(pids[busy[0]], signal.SIGKILL)
                return True
            time.sleep(0.01)
    return False


def test_a_worker_killed_mid_stage_fails_it_in_one_line_and_keeps_the_outputs(
    project: dict[str, Any], tmp_path: Path
) -> None:
    repo, env = project["repo"], project["env"]
    run_ok([str(BIN / "dvc"), "exp", "apply", "on-dask"], repo, env)
    kept = (FEATURES, "artifacts/metrics.json", "data/validated/touches/part-00000.parquet")
    before = {path: _sha(repo / path) for path in kept}
    params = yaml.safe_load((repo / "params.yaml").read_text())
    # a change that re-runs the features stage, on the cluster
    _edit(
        repo,
        engine={"kind": "dask", "partitions": 1},  # one task: long enough to aim at
        features={"rate_smoothing": params["features"]["rate_smoothing"] + 5},
    )
    # No retry on another worker: the first death of a task's worker fails the task.
    faulty = {**env, "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0"}
    log = tmp_path / "repro.log"  # a file, not a pipe: nobody reads a pipe while we watch
    with log.open("w") as sink:
        process = subprocess.Popen(
            [str(BIN / "dvc"), "repro"],
            cwd=repo,
            env=faulty,
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:
            killed = _kill_a_working_worker(process, log)
            process.wait(timeout=600)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
    output = log.read_text()
    assert killed, f"no worker went to work: {output[-3000:]}"
    assert process.returncode != 0, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    # the change re-runs validate first (engine is one of its params), then features: the
    # worker dies in whichever of them is on the cluster
    [line] = [line for line in output.splitlines() if "the Dask cluster failed during" in line]
    assert re.search(r"\b(validate|features): the Dask cluster failed during", line), line
    assert "KilledWorker" in line
    # the last good outputs stay, the features and everything after them
    assert {path: _sha(repo / path) for path in before} == before
    # and the next `dvc repro` (the cluster healthy again) completes with the change
    run_ok([str(BIN / "dvc"), "repro"], repo, env)
    assert _sha(repo / FEATURES) != before[FEATURES]
    assert json.loads((repo / "artifacts/metrics.json").read_text())["engine"] == "dask"
