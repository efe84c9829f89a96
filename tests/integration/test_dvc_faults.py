"""Faults through real `dvc repro`: a failing stage and `kill -9` of the whole `dvc repro`
inside each stage in turn.

What is promised (README, "A stage that fails or is killed"): every output a person or the
server reads stays in place, complete, until its replacement is; the next `dvc repro`
completes, `dvc status` is clean afterwards, the registry holds exactly one new version for the
new bundle and no run left RUNNING, and the champion moves only if the new version was
promoted. Everything is real: a copy of the project with a small simulated CRM, DVC, MLflow on
sqlite, the stage processes and SIGKILL to the process group.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import psutil
import pyarrow.parquet as pq
import pytest
import yaml

from tests.project import BIN, commit_all, copy_project, pipeline_env, run_ok
from tests.test_pipeline_e2e import _fingerprint

pytestmark = pytest.mark.slow

STAGES = ("ingest", "validate", "features", "train", "evaluate", "register", "queue")
"""The pipeline's stages in the order `dvc repro` runs them."""

LEFTOVER = re.compile(r"^\..+\.(tmp|old)-\d+")


# ------------------------------------------------------------------ the project copy
@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """The working tree copied into a fresh git repository (as the end-to-end test does), with
    a small CRM and quick training, reproduced once."""
    target = tmp_path_factory.mktemp("faults") / "repo"
    env = pipeline_env(target)
    copy_project(target)
    params = yaml.safe_load((target / "params.yaml").read_text())
    params["generate"]["leads"] = 2000
    params["train"].update(
        num_threads=1, learning_rate=0.1, max_rounds=150, early_stopping_rounds=20
    )
    (target / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    commit_all(target, env, "faults")
    run_ok([str(BIN / "dvc"), "repro"], target, env)
    return target, env


def _outputs(repo: Path) -> dict[str, list[str]]:
    """Every output path of every stage, from the copy's dvc.yaml."""
    pipeline = yaml.safe_load((repo / "dvc.yaml").read_text())
    return {
        name: [
            next(iter(out)) if isinstance(out, dict) else out
            for out in stage.get("outs", []) + stage.get("metrics", [])
        ]
        for name, stage in pipeline["stages"].items()
    }


def _state(repo: Path, paths: list[str]) -> dict[str, Any]:
    """Byte contents of each output (a dict for a directory; None if absent)."""
    out: dict[str, Any] = {}
    for path in paths:
        where = repo / path
        out[path] = (
            _fingerprint(where)
            if where.is_dir()
            else where.read_bytes()
            if where.exists()
            else None
        )
    return out


def _downstream(repo: Path, stage: str) -> list[str]:
    """The outputs of ``stage`` and of every stage after it."""
    outputs = _outputs(repo)
    return [p for name in STAGES[STAGES.index(stage) :] for p in outputs[name]]


def _assert_complete(repo: Path, paths: list[str]) -> None:
    """Every output present and every file in it readable as what its name says."""
    for path in paths:
        where = repo / path
        assert where.exists(), f"{path}: absent"
        files = [f for f in where.rglob("*") if f.is_file()] if where.is_dir() else [where]
        assert files, f"{path}: empty"
        for file in files:
            if file.suffix == ".parquet":
                pq.read_table(file)
            elif file.suffix == ".json":
                json.loads(file.read_text())
            elif file.suffix == ".csv":
                pd.read_csv(file)
            elif file.suffix == ".pkl":
                with file.open("rb") as handle:
                    pickle.load(handle)
            elif file.name == "MLmodel":
                yaml.safe_load(file.read_text())


def _leftovers(repo: Path) -> list[str]:
    return sorted(
        str(p.relative_to(repo))
        for base in (repo / "data", repo / "artifacts")
        for p in base.rglob(".*")
        if LEFTOVER.match(p.name)
    )


# ----------------------------------------------------------------------- the registry
def _registry(repo: Path, name: str = "lead-scoring") -> dict[str, Any]:
    from mlflow.tracking import MlflowClient

    store = f"sqlite:///{repo / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=store, registry_uri=store)
    versions = client.search_model_versions(f"name = '{name}'")
    experiment = client.get_experiment_by_name("leadscore")
    runs = client.search_runs([experiment.experiment_id]) if experiment else []
    return {
        "versions": {str(v.version): v.tags.get("leadscore.scorer_sha256") for v in versions},
        "aliases": {k: str(v) for k, v in client.get_registered_model(name).aliases.items()},
        "runs": sorted(r.info.status for r in runs),
    }


def _version_count(repo: Path) -> int:
    """Model versions in the store, read without MLflow (polled while a stage writes)."""
    try:
        with sqlite3.connect(f"file:{repo / 'mlflow.db'}?mode=ro", uri=True, timeout=1) as db:
            return int(db.execute("select count(*) from model_versions").fetchone()[0])
    except sqlite3.Error:
        return -1


def _new_version(repo: Path, count: int) -> Callable[[], bool]:
    """Whether the register stage has created a version (it may not have given it an alias)."""
    return lambda: _version_count(repo) > count


def _bundle_sha(repo: Path) -> str:
    return hashlib.sha256((repo / "artifacts/model/artifacts/scorer.pkl").read_bytes()).hexdigest()


# ------------------------------------------------------------------------- processes
def _start(repo: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    """`dvc repro` in a process group of its own (the stages run inside it)."""
    return subprocess.Popen(
        [str(BIN / "dvc"), "repro"],
        cwd=repo,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )


def _stage_running(process: subprocess.Popen[str], stage: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            children = psutil.Process(process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return False
        for child in children:
            try:
                command = child.cmdline()
            except psutil.Error:
                continue
            if any(part.endswith("leadscore") for part in command) and stage in command:
                return True
        return False

    return check


def _kill_when(
    process: subprocess.Popen[str], condition: Callable[[], bool], timeout: float = 240
) -> bool:
    """SIGKILL the whole `dvc repro` process group as soon as ``condition`` holds; False if
    `dvc repro` ended first."""
    deadline = time.monotonic() + timeout
    try:
        while process.poll() is None and time.monotonic() < deadline:
            if condition():
                os.killpg(process.pid, signal.SIGKILL)
                return True
            time.sleep(0.01)
        return False
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
        # nothing of the group may survive to write on after the kill
        deadline = time.monotonic() + 10
        while _group_alive(process.pid) and time.monotonic() < deadline:
            time.sleep(0.05)


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def _staging(repo: Path, *names: str) -> Callable[[], bool]:
    """Whether a stage is writing one of its outputs (its staging copy is beside it)."""

    def check() -> bool:
        for name in names:
            target = repo / name
            if target.parent.is_dir() and any(
                p.name.startswith(f".{target.name}.tmp-") for p in target.parent.iterdir()
            ):
                return True
        return False

    return check


def _repro(repo: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`dvc repro`, which must succeed; on failure the message shows DVC's lock holders."""
    result = subprocess.run(
        [str(BIN / "dvc"), "repro"], cwd=repo, env=env, capture_output=True, text=True, timeout=900
    )
    if result.returncode != 0:
        lock = repo / ".dvc/tmp/rwlock"
        holders = json.loads(lock.read_text()) if lock.exists() else {}
        pids = {
            int(info["pid"])
            for mode in holders.values()
            for infos in mode.values()
            for info in (infos if isinstance(infos, list) else [infos])
        }
        alive: dict[int, Any] = {}
        for pid in pids:
            try:
                process = psutil.Process(pid)
                alive[pid] = (process.status(), process.ppid(), process.cmdline())
            except psutil.Error as error:
                alive[pid] = type(error).__name__
        pytest.fail(
            f"dvc repro: {result.stdout[-2000:]}\n{result.stderr[-2000:]}\nlock holders: {alive}"
        )
    return result


# ------------------------------------------------------------------------- params
def _edit(repo: Path, change: Callable[[dict[str, Any], Path], None]) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    change(params, repo)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def _next_seed(section: str) -> Callable[[dict[str, Any], Path], None]:
    def change(params: dict[str, Any], _: Path) -> None:
        params[section]["seed"] += 1

    return change


def _earlier_horizon(params: dict[str, Any], repo: Path) -> None:
    touches = pd.read_parquet(repo / "data/validated/touches.parquet", columns=["occurred_at"])
    latest = pd.to_datetime(touches["occurred_at"], utc=True).max()
    params["data"]["horizon"] = (latest - pd.Timedelta(days=2)).isoformat()
    # room for the rows after it, now quarantined
    params["validate"]["max_quarantine_share"] = 0.05


def _less_smoothing(params: dict[str, Any], _: Path) -> None:
    params["features"]["rate_smoothing"] = params["features"]["rate_smoothing"] // 2


# --------------------------------------------------------------- (a) a failing repro
def _failing_repro(repo: Path, env: dict[str, str]) -> str:
    result = subprocess.run(
        [str(BIN / "dvc"), "repro"], cwd=repo, env=env, capture_output=True, text=True
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert "Traceback" not in output
    return output


def test_a_failing_ingest_keeps_every_output_and_the_registry(
    project: tuple[Path, dict[str, str]],
) -> None:
    """A corrupt export (a file without the mapping's columns): `dvc repro` fails in ingest,
    with one line naming the file; every output is byte-identical, the registry untouched."""
    repo, env = project
    paths = [p for paths in _outputs(repo).values() for p in paths]
    before, registry = _state(repo, paths), _registry(repo)
    params = (repo / "params.yaml").read_text()
    export = repo.parent / "corrupt.csv"
    export.write_text("age;job\n41;admin.\n")
    _edit(
        repo,
        lambda p, _: p["source"].update(
            kind="flat", path=str(export), mapping="mappings/bank_marketing.yaml"
        ),
    )
    try:
        output = _failing_repro(repo, env)
    finally:
        (repo / "params.yaml").write_text(params)
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, output[-3000:]
    assert "corrupt.csv" in errors[0]
    assert _state(repo, paths) == before
    assert _registry(repo) == registry
    assert _leftovers(repo) == []
    status = run_ok([str(BIN / "dvc"), "status"], repo, env)
    assert "up to date" in status.stdout, status.stdout


def test_data_that_fails_validation_keeps_every_output_after_ingest(
    project: tuple[Path, dict[str, str]],
) -> None:
    """Dirty data: ingest succeeds, validate fails on the quarantine threshold. The validated
    tables and everything after them are byte-identical, the registry untouched; the report
    is the failed run's (complete: it says why). Reverting the change restores the raw data."""
    repo, env = project
    paths = [p for paths in _outputs(repo).values() for p in paths]
    before, registry = _state(repo, paths), _registry(repo)
    params = (repo / "params.yaml").read_text()

    def dirty(params: dict[str, Any], _: Path) -> None:
        params["generate"]["dirty"] = True
        params["validate"]["max_quarantine_share"] = 0.0  # any defect fails, whatever the size

    _edit(repo, dirty)
    try:
        output = _failing_repro(repo, env)
    finally:
        (repo / "params.yaml").write_text(params)
    assert sum("allowed (top rule:" in line for line in output.splitlines()) == 1, output[-3000:]
    after = _state(repo, paths)
    kept = [p for p in paths if not p.startswith(("data/raw", "artifacts/validation"))]
    assert {p: after[p] for p in kept} == {p: before[p] for p in kept}
    assert after["data/raw"] != before["data/raw"]  # ingest did succeed
    summary = json.loads((repo / "artifacts/validation/summary.json").read_text())
    assert summary["passed"] is False
    assert "allowed (top rule:" in summary["failure"]
    assert _registry(repo) == registry
    assert _leftovers(repo) == []

    run_ok([str(BIN / "dvc"), "repro"], repo, env)
    restored = _state(repo, paths)
    # the report is rewritten (it records when it ran); the data and what follows are not
    assert [p for p in paths if restored[p] != before[p]] == ["artifacts/validation"]
    summary = json.loads((repo / "artifacts/validation/summary.json").read_text())
    assert summary["tables"] == json.loads(before["artifacts/validation"]["summary.json"])["tables"]
    status = run_ok([str(BIN / "dvc"), "status"], repo, env)
    assert "up to date" in status.stdout, status.stdout


# ------------------------------------------------------------ (b) kill -9 in each stage
SCENARIOS: dict[str, tuple[Callable[[dict[str, Any], Path], None], tuple[str, ...]]] = {
    # stage killed: (the params change that re-runs the pipeline through it, what it writes
    # while a second kill lands mid-write; () = its writes are too short to aim at)
    "ingest": (_next_seed("generate"), ("data/raw",)),
    "validate": (_earlier_horizon, ("artifacts/validation", "data/validated")),
    "features": (_less_smoothing, ("data/features",)),
    "train": (_next_seed("train"), ("artifacts/model",)),
    "evaluate": (_next_seed("train"), ()),
    "register": (_next_seed("train"), ()),  # aimed at the new version's creation instead
    "queue": (_next_seed("train"), ()),
}


@pytest.mark.parametrize("stage", list(SCENARIOS))
def test_kill_9_inside_a_stage_then_repro_completes(
    project: tuple[Path, dict[str, str]], stage: str
) -> None:
    """A change that re-runs the pipeline through ``stage``; `kill -9` of the whole `dvc repro`
    as the stage starts (its outputs and all later ones byte-identical) and, where it can be
    aimed, while it writes (every output present and readable); then `dvc repro` completes."""
    repo, env = project
    change, writes = SCENARIOS[stage]
    kept = _downstream(repo, stage)
    before, registry = _state(repo, kept), _registry(repo)
    champion = registry["aliases"]["champion"]
    _edit(repo, change)

    # killed as soon as the stage's process runs: DVC has deleted nothing of its
    process = _start(repo, env)
    assert _kill_when(process, _stage_running(process, stage)), f"{stage} never ran"
    assert _state(repo, kept) == before, f"killed in {stage}: an output changed or vanished"
    if STAGES.index(stage) <= STAGES.index("register"):
        assert _registry(repo)["versions"] == registry["versions"]
        assert _registry(repo)["aliases"]["champion"] == champion

    # killed again while the stage writes: every output still there and whole
    trigger = _new_version(repo, len(registry["versions"])) if stage == "register" else None
    if writes:
        trigger = _staging(repo, *writes)
    if trigger is not None:
        assert _kill_when(_start(repo, env), trigger), f"{stage}: ended before the second kill"
        _assert_complete(repo, kept)

    result = _repro(repo, env)
    assert f"Running stage '{stage}'" in result.stdout
    status = run_ok([str(BIN / "dvc"), "status"], repo, env)
    assert "Data and pipelines are up to date." in status.stdout, status.stdout
    assert _leftovers(repo) == []

    after = _registry(repo)
    new = {v: sha for v, sha in after["versions"].items() if v not in registry["versions"]}
    assert list(new.values()) == [_bundle_sha(repo)], (registry, after)
    assert list(after["versions"].values()).count(_bundle_sha(repo)) == 1
    assert "RUNNING" not in after["runs"]
    record = json.loads((repo / "artifacts/registry.json").read_text())
    assert record["version"] in new
    expected = record["version"] if record["alias"] == "champion" else champion
    assert after["aliases"]["champion"] == expected
    queue = pd.read_parquet(repo / "artifacts/queue.parquet", columns=["model_version"])
    assert set(queue["model_version"]) == {expected}
