"""This project copied into a fresh git repository, for the tests that run the real pipeline
(``dvc repro``, ``dvc exp run``) in it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
GIT = ("git", "-c", "user.email=ci@example.invalid", "-c", "user.name=ci")
LOCAL_ONLY = ("dvc.lock", "artifacts/")
"""What the working directory's own runs wrote (``dvc.lock`` is never committed, and the
git-tracked summaries under ``artifacts/`` are regenerated): not part of a copy."""


def copy_project(target: Path) -> None:
    """The working tree, committed or not (what a clone would be after a commit), into
    ``target``; fails the test outside a git checkout."""
    if not (REPO / ".git").exists() or shutil.which("git") is None:
        pytest.fail("this test copies the project: it needs the git checkout and git")
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    for name in filter(None, files):
        source = REPO / name
        if source.is_file() and not name.startswith(LOCAL_ONLY):
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


def pipeline_env(target: Path) -> dict[str, str]:
    """The environment of a pipeline run in the copy at ``target``: this venv's commands first,
    the copy's own MLflow store and code, one BLAS thread, no DVC analytics."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    for inherited in ("MLFLOW_TRACKING_URI", "DVC_EXP_NAME", "DVC_EXP_BASELINE_REV"):
        env.pop(inherited, None)
    # The stages import the copy's code (what DVC hashes as their deps), not the editable
    # install's: PYTHONPATH comes before setuptools' editable finder.
    env |= {"PYTHONPATH": str(target), "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    env["DVC_NO_ANALYTICS"] = "1"  # no network calls, no daemon forked after each command
    return env


def commit_all(target: Path, env: dict[str, str], message: str) -> None:
    """``git init`` in ``target`` and one commit of everything in it."""
    for command in (["git", "init", "-q"], [*GIT, "add", "-A"], [*GIT, "commit", "-qm", message]):
        result = subprocess.run(command, cwd=target, env=env, capture_output=True, text=True)
        assert result.returncode == 0, f"{command}: {result.stdout}\n{result.stderr}"


def run_ok(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``args`` in ``cwd``; fails the test with the output's tail unless it exits 0."""
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, f"{args}: {result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def wait_ready(base: str, process: subprocess.Popen[Any], log: Path, seconds: float) -> None:
    """Until ``base``/readyz answers 200; fails with the server's log if it exits or is not
    ready within ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"server did not become ready:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)
