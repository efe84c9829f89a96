"""The CLI: help everywhere, one clear line and a non-zero exit on bad arguments."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]
LEADSCORE = str(Path(sys.executable).with_name("leadscore"))


def _run(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LEADSCORE, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "120"},
    )


@pytest.mark.parametrize("command", ["", "generate", "ingest", "import", "validate"])
def test_help(command: str) -> None:
    result = _run(*([command] if command else []), "--help")
    assert result.returncode == 0
    assert "Usage" in result.stdout


def test_generate_writes_tables(tmp_path: Path) -> None:
    result = _run("generate", "--leads", "300", "--seed", "5", "--out", str(tmp_path / "raw"))
    assert result.returncode == 0, result.stderr
    names = sorted(p.name for p in (tmp_path / "raw").iterdir())
    assert names == [
        "accounts.parquet",
        "campaigns.parquet",
        "leads.parquet",
        "sales_events.parquet",
        "touches.parquet",
        "truth.parquet",
    ]
    assert len(pd.read_parquet(tmp_path / "raw" / "leads.parquet")) == 300


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["generate", "--leads", "-4"], "--leads"),
        (["generate", "--leads", "many"], "--leads"),
        (["generate", "--params", "missing.yaml"], "missing.yaml: file not found"),
        (["frobnicate"], "No such command"),
    ],
)
def test_bad_arguments_give_one_clear_line(tmp_path: Path, args: list[str], message: str) -> None:
    result = _run(*args, "--out", str(tmp_path / "out")) if args[0] == "generate" else _run(*args)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "out").exists()


def test_bad_params_key_is_named(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("generate: {leadz: 10}\n")
    result = _run("generate", "--params", str(params), "--out", str(tmp_path / "raw"))
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [f"error: {params}: unknown key 'generate.leadz' (misspelled?)"]


def test_failed_generate_keeps_previous_output(tmp_path: Path) -> None:
    out = tmp_path / "raw"
    assert _run("generate", "--leads", "200", "--out", str(out)).returncode == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    params = tmp_path / "params.yaml"
    params.write_text("generate: {seed: -1}\n")
    assert _run("generate", "--params", str(params), "--out", str(out)).returncode == 2
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_register_can_be_forced_past_an_unreadable_champion() -> None:
    result = _run("register", "--help")
    assert result.returncode == 0
    assert "--force" in result.stdout


def test_openmp_threads_spin_briefly_unless_the_user_chose() -> None:
    from pipelines.cli import quiet_openmp

    environ: dict[str, str] = {}
    quiet_openmp(environ)
    assert environ == {"GOMP_SPINCOUNT": "1000"}
    for chosen in ({"OMP_WAIT_POLICY": "ACTIVE"}, {"GOMP_SPINCOUNT": "300000"}):
        given = dict(chosen)
        quiet_openmp(given)
        assert given == chosen


def test_the_wait_policy_is_set_before_lightgbm_loads() -> None:
    """libgomp reads its settings once, when LightGBM's library loads: the CLI must not import
    it before its callback has set them."""
    probe = "import sys, pipelines.cli; print('lightgbm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("command", "with_sklearn"), [("score", False), ("queue", False), ("train", True)]
)
def test_predicting_commands_load_lightgbm_without_scikit_learn(
    command: str, with_sklearn: bool
) -> None:
    """A command that only predicts imports LightGBM with scikit-learn hidden (about 1 s of
    imports per stage process); one that fits models keeps it."""
    probe = (
        "import sys\n"
        "from pipelines.cli import app\n"
        f"app([{command!r}, '--help'], standalone_mode=False)\n"
        "import pipelines." + command + "\n"
        "print('lightgbm' in sys.modules, 'sklearn' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert out.stdout.split()[-2:] == ["True", str(with_sklearn)]
