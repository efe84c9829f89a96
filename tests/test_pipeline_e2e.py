"""End to end: a fresh clone, `dvc repro` with real DVC, MLflow (sqlite) and every stage.

The clone gets a smaller simulated CRM (params edited in the clone only) so the whole pipeline
runs in well under a minute; everything else is exactly what the README's first command runs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.slow


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{args}: {result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    if not (REPO / ".git").exists() or shutil.which("git") is None:
        pytest.fail("the end-to-end test needs the git checkout")
    target = tmp_path_factory.mktemp("e2e") / "repo"
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    # Copy the working tree (committed or not) as a fresh repository: a clone of what is here.
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
    params["generate"]["leads"] = 4000
    (target / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for command in (
        ["git", "init", "-q"],
        ["git", "-c", "user.email=ci@example.invalid", "-c", "user.name=ci", "add", "-A"],
        [
            "git",
            "-c",
            "user.email=ci@example.invalid",
            "-c",
            "user.name=ci",
            "commit",
            "-qm",
            "e2e",
        ],
    ):
        _run(command, target, env)
    return target, env


@pytest.fixture(scope="module")
def reproduced(clone: tuple[Path, dict[str, str]]) -> tuple[Path, dict[str, str]]:
    repo, env = clone
    _run([str(BIN / "dvc"), "repro"], repo, env)
    return repo, env


def test_every_stage_output_exists(reproduced: tuple[Path, dict[str, str]]) -> None:
    repo, _ = reproduced
    pipeline = yaml.safe_load((repo / "dvc.yaml").read_text())
    for name, stage in pipeline["stages"].items():
        for out in stage.get("outs", []) + stage.get("metrics", []):
            path = next(iter(out)) if isinstance(out, dict) else out
            assert (repo / path).exists(), f"stage {name}: {path} missing"


def test_no_change_repro_does_nothing(reproduced: tuple[Path, dict[str, str]]) -> None:
    repo, env = reproduced
    result = _run([str(BIN / "dvc"), "repro"], repo, env)
    assert "Running stage" not in result.stdout
    status = _run([str(BIN / "dvc"), "status"], repo, env)
    assert "changed" not in status.stdout


def test_metrics_and_registry(reproduced: tuple[Path, dict[str, str]]) -> None:
    repo, env = reproduced
    shown = _run([str(BIN / "dvc"), "metrics", "show", "--json"], repo, env)
    assert "roc_auc" in shown.stdout
    metrics = json.loads((repo / "artifacts" / "metrics.json").read_text())
    primary = metrics["primary_target"]
    assert metrics[primary]["model"]["roc_auc"] > 0.6
    registry = json.loads((repo / "artifacts" / "registry.json").read_text())
    assert registry["alias"] == "champion"
    assert (repo / "mlflow.db").exists()


def test_param_change_reruns_from_the_right_stage(
    reproduced: tuple[Path, dict[str, str]],
) -> None:
    repo, env = reproduced
    result = _run([str(BIN / "dvc"), "exp", "run", "-S", "train.num_leaves=15"], repo, env)
    assert "Running stage 'train'" in result.stdout
    assert "Running stage 'ingest'" not in result.stdout
    assert "Running stage 'features'" not in result.stdout
