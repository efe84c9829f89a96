"""Every command that writes, on a full disk and on a read-only filesystem: one line naming the
output and the problem, exit code 2, no traceback, nothing half-written, the previous output
intact.

The faults are real: a tmpfs mounted for the test (filled up, or remounted read-only), which
needs root (as on this machine and in CI). Where mounting is refused, the test falls back to
honest equivalents in the same process: ``RLIMIT_FSIZE`` for the full disk (writes past the
limit fail with EFBIG) and a folder without write permission for the read-only one (only
meaningful for non-root users, who are the ones that cannot mount)."""

from __future__ import annotations

import gzip
import os
import re
import resource
import signal
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from features.ingest.simulate import simulate
from features.params import GenerateParams, Params
from pipelines import evaluate as evaluate_stage
from pipelines import features as features_stage
from pipelines import train as train_stage
from pipelines.cli import app

REPO = Path(__file__).resolve().parents[2]
PREVIOUS = "the previous output\n"


# ------------------------------------------------------------------ the faults
def _mount(disk: Path, options: str) -> bool:
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(disk)], capture_output=True
    )
    return done.returncode == 0


def _unmount(disk: Path) -> None:
    # Lazy as a last resort: a handle left open by a failed writer must not leave the mount
    # behind for the rest of the session.
    if subprocess.run(["umount", str(disk)], capture_output=True).returncode:
        subprocess.run(["umount", "-l", str(disk)], check=True)


def _fill(disk: Path) -> None:
    """Write until the filesystem refuses one more byte."""
    descriptor = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(descriptor, b"\0" * 4096)
    except OSError as error:
        if error.errno != 28:
            raise
    finally:
        os.close(descriptor)
    for size in (512, 64, 1):  # the last partial blocks too
        try:
            with (disk / "filler").open("ab") as handle:
                while True:
                    handle.write(b"\0" * size)
                    handle.flush()
        except OSError:
            pass


@contextmanager
def faulty_disk(root: Path, fault: str, previous: Callable[[Path], None]) -> Iterator[Path]:
    """A folder on a full or a read-only filesystem, holding the previous output."""
    disk = root / "disk"
    disk.mkdir()
    if _mount(disk, "size=256k,mode=0755"):
        try:
            previous(disk)
            if fault == "full":
                _fill(disk)
            else:
                subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
            yield disk
        finally:
            _unmount(disk)
        return
    assert os.geteuid() != 0, "root could not mount a tmpfs"
    previous(disk)
    if fault == "full":
        limits = resource.getrlimit(resource.RLIMIT_FSIZE)
        handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, limits[1]))
        try:
            yield disk
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, limits)
            signal.signal(signal.SIGXFSZ, handler)
    else:
        disk.chmod(0o555)
        try:
            yield disk
        finally:
            disk.chmod(0o755)


# ------------------------------------------------------------------ the inputs
@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory, repo_params: Params) -> dict[str, Path]:
    """Small, good inputs of every command, made once: raw tables, the feature stage's,
    train stage's and evaluate stage's outputs, a bundle, an MLflow store, a flat export."""
    root = tmp_path_factory.mktemp("disk-faults")
    p = {
        "params": root / "params.yaml",
        "raw": root / "raw",
        "validated": root / "raw",  # simulator tables are canonical and valid
        "features": root / "features",
        "train": root / "train",
        "model": root / "model",
        "artifacts": root / "artifacts",
        "lock": root / "dvc.lock",
        "export": root / "bank.csv",
        "store": root / "mlflow.db",
    }
    raw = repo_params.model_dump(mode="json", by_alias=True)
    raw["train"].update(num_threads=1, learning_rate=0.1, max_rounds=100, early_stopping_rounds=20)
    raw["generate"].update(leads=150)  # what `ingest` generates
    p["params"].write_text(yaml.safe_dump(raw, sort_keys=False))
    simulate(GenerateParams(leads=2000, seed=31), p["raw"])
    features_stage.run(p["validated"], p["features"], p["params"])
    train_stage.run(p["features"], p["validated"], p["train"], p["params"], model=p["model"])
    evaluate_stage.run(p["features"], p["validated"], p["train"], p["artifacts"], p["params"])
    p["lock"].write_text(yaml.safe_dump({"schema": "2.0", "stages": {}}))
    with gzip.open(REPO / "data/samples/bank-additional-full.csv.gz", "rt") as handle:
        p["export"].write_text("".join(next(handle) for _ in range(301)))
    return p


def _register(p: dict[str, Path], out: Path) -> list[str]:
    a = p["artifacts"]
    return [
        *("register", "--model", str(p["model"]), "--features", str(p["features"])),
        *("--validated", str(p["validated"]), "--metrics", str(a / "metrics.json")),
        *("--plots", str(a / "plots"), "--model-card", str(a / "model_card.md")),
        *("--kpis", str(a / "kpis.json"), "--dvc-lock", str(p["lock"]), "--out", str(out)),
        *("--tracking-uri", f"sqlite:///{p['store']}", "--params", str(p["params"])),
    ]


# name → (the output's name on the faulty disk, is it a folder, the arguments)
COMMANDS: dict[str, tuple[str, bool, Callable[[dict[str, Path], Path], list[str]]]] = {
    "generate": ("raw", True, lambda p, o: ["generate", "--leads", "100", "--out", str(o)]),
    "ingest": ("raw", True, lambda p, o: ["ingest", "--out", str(o), "--params", str(p["params"])]),
    "import": (
        "raw",
        True,
        lambda p, o: [
            *("import", "--mapping", str(REPO / "mappings/bank_marketing.yaml")),
            *("--input", str(p["export"]), "--out", str(o)),
        ],
    ),
    "validate --out": (
        "validated",
        True,
        lambda p, o: [
            *("validate", "--raw", str(p["raw"]), "--out", str(o)),
            *("--report", str(o.parent.parent / "report"), "--params", str(p["params"])),
        ],
    ),
    "validate --report": (
        "report",
        True,
        lambda p, o: [
            *("validate", "--raw", str(p["raw"]), "--out", str(o.parent.parent / "validated")),
            *("--report", str(o), "--params", str(p["params"])),
        ],
    ),
    "features": (
        "features",
        True,
        lambda p, o: [
            *("features", "--validated", str(p["validated"]), "--out", str(o)),
            *("--params", str(p["params"])),
        ],
    ),
    "train": (
        "train",
        True,
        lambda p, o: [
            *("train", "--features", str(p["features"]), "--validated", str(p["validated"])),
            *("--out", str(o), "--params", str(p["params"])),
        ],
    ),
    "evaluate": (
        "artifacts",
        True,
        lambda p, o: [
            *("evaluate", "--features", str(p["features"]), "--validated", str(p["validated"])),
            *("--train", str(p["train"]), "--out", str(o), "--params", str(p["params"])),
        ],
    ),
    "register --out": ("registry.json", False, _register),
    "queue": (
        "queue.parquet",
        False,
        lambda p, o: [
            *("queue", "--validated", str(p["validated"]), "--out", str(o)),
            *("--model", str(p["model"]), "--params", str(p["params"])),
        ],
    ),
    "score": (
        "scores.parquet",
        False,
        lambda p, o: [
            *("score", "--model", str(p["model"]), "--input", str(p["raw"] / "leads.parquet")),
            *("--output", str(o), "--reasons", "1", "--as-of", "2025-06-01T00:00:00Z"),
        ],
    ),
}
PROBLEMS = {"full": ("no space left on device", "file too large"), "read-only": ("read-only",)}


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["full", "read-only"])
@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_full_or_read_only_output_is_one_line_and_keeps_the_previous_output(
    inputs: dict[str, Path], tmp_path: Path, command: str, fault: str
) -> None:
    name, is_folder, arguments = COMMANDS[command]

    def previous(disk: Path) -> None:
        if is_folder:
            (disk / name).mkdir()
            (disk / name / "previous.txt").write_text(PREVIOUS)
        else:
            (disk / name).write_text(PREVIOUS)

    (tmp_path / "elsewhere").mkdir()  # where a command's other output goes
    with faulty_disk(tmp_path / "elsewhere", fault, previous) as disk:
        out = disk / name
        result = CliRunner().invoke(app, arguments(inputs, out))
        assert result.exit_code == 2, (result.output, result.exception)
        lines = [line for line in result.output.splitlines() if line.startswith("error: ")]
        assert len(lines) == 1, result.output
        assert "Traceback" not in result.output
        # The output, or the file of it that could not be written (evaluate's metrics.json,
        # register's promotion.json beside registry.json), never a temporary copy.
        named = rf"{re.escape(str(out))}(/[\w.]+)?"
        if command == "register --out":
            named = rf"({named}|{re.escape(str(out.with_name('promotion.json')))})"
        assert re.match(rf"error: {named}: cannot be written, ", lines[0]), lines[0]
        assert any(problem in lines[0] for problem in PROBLEMS[fault]), lines[0]
        # The previous output as it was, and nothing half-written beside it.
        kept = out / "previous.txt" if is_folder else out
        assert kept.read_text() == PREVIOUS
        if is_folder:
            assert [e.name for e in out.iterdir()] == ["previous.txt"]
        assert {e.name for e in disk.iterdir()} - {"filler"} == {name}
    if command == "register --out" and inputs["store"].exists():
        # nothing registered that no registry.json would name
        from models.packaging.tracking import client

        store = client(f"sqlite:///{inputs['store']}")
        assert store.search_model_versions() == []


def test_the_shared_translation_names_the_output_not_its_temporary_copy(tmp_path: Path) -> None:
    """Unit-level: the rules of ``features.storage.write_error``."""
    from features.storage import write_error

    target = tmp_path / "data" / "raw"
    staging = tmp_path / "data" / ".raw.tmp-1-abc" / "leads.parquet"
    full = write_error(OSError(28, "No space left on device"), target)
    assert str(full) == f"{target}: cannot be written, no space left on device"
    ro = write_error(OSError(30, "Read-only file system", str(staging)), target)
    assert str(ro) == f"{target}: cannot be written, read-only file system"
    denied = write_error(PermissionError(13, "Permission denied", str(tmp_path / "data")), target)
    assert str(denied) == f"{target}: cannot be written, {tmp_path / 'data'}: permission denied"
    # An unreadable input read inside the with block is not the output's problem.
    assert (
        write_error(PermissionError(13, "Permission denied", "/elsewhere/in.csv"), target) is None
    )
    assert write_error(OSError(13, "Permission denied"), target) is None
    assert write_error(FileNotFoundError(2, "No such file", "/elsewhere/in.csv"), target) is None
    other = write_error(OSError(28, "No space left on device", "/var/tmp/x"), target)
    assert str(other) == "/var/tmp/x: cannot be written, no space left on device"


def test_the_fallback_boundary_names_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A write outside the atomic writers that meets a full disk still ends in one line."""
    import typer

    from pipelines.cli import _run

    def body() -> None:
        raise OSError(28, "No space left on device", str(tmp_path / "mlflow.db"))

    with pytest.raises(typer.Exit) as exit_:
        _run(body)
    assert exit_.value.exit_code == 2
    line = f"error: {tmp_path / 'mlflow.db'}: cannot be written, no space left on device\n"
    assert capsys.readouterr().err == line

    def bug() -> None:
        raise FileNotFoundError(2, "No such file or directory", "x")

    with pytest.raises(FileNotFoundError):  # not a write fault: a bug keeps its traceback
        _run(bug)
