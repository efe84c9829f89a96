"""Atomic outputs: all or nothing, and with the permissions a plain write would have given."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from features.storage import atomic_directory, atomic_file, write_json, write_parquet


@pytest.fixture
def umask_027() -> Iterator[None]:
    before = os.umask(0o027)
    try:
        yield
    finally:
        os.umask(before)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_outputs_get_the_umask_not_owner_only(tmp_path: Path, umask_027: None) -> None:
    write_json(tmp_path / "a.json", {"x": 1})
    write_parquet(tmp_path / "a.parquet", pd.DataFrame({"x": [1]}))
    with atomic_directory(tmp_path / "folder") as staging:
        (staging / "sub").mkdir()
        (staging / "sub" / "f.txt").write_text("x")
    assert _mode(tmp_path / "a.json") == 0o640
    assert _mode(tmp_path / "a.parquet") == 0o640
    assert _mode(tmp_path / "folder") == 0o750
    assert _mode(tmp_path / "folder" / "sub") == 0o750
    assert _mode(tmp_path / "folder" / "sub" / "f.txt") == 0o640


def test_a_failed_write_leaves_the_old_output_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")

    def half_file() -> None:
        with atomic_file(target) as staging:
            staging.write_text("half")
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        half_file()
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "keep").write_text("old")

    def half_directory() -> None:
        with atomic_directory(folder) as staging:
            (staging / "new").write_text("half")
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        half_directory()
    assert [p.name for p in folder.iterdir()] == ["keep"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "out.txt"]


# ------------------------------------------------------------- killed writers
KILLED_WRITER = """
import os, signal, sys
from pathlib import Path
from features import storage

target, mode = Path(sys.argv[1]), sys.argv[2]
if mode == "between-renames":  # the fallback swap, killed after its first rename
    storage._exchange = lambda a, b: False
    first = os.replace
    def replace_then_die(source, destination):
        first(source, destination)
        os.kill(os.getpid(), signal.SIGKILL)
    storage.os.replace = replace_then_die
writer = storage.atomic_file if mode == "file" else storage.atomic_directory
with writer(target) as staging:
    if mode == "file":
        staging.write_text("half")
    else:
        (staging / "part.txt").write_text("new")
    if mode != "between-renames":
        os.kill(os.getpid(), signal.SIGKILL)  # kill -9 half-way: no cleanup runs
"""


def _killed_writer(target: Path, mode: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", KILLED_WRITER, str(target), mode],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == -signal.SIGKILL, result.stderr


def _names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.mark.parametrize("mode", ["file", "directory"])
def test_a_killed_writer_leaves_the_old_output_and_the_next_write_tidies_up(
    tmp_path: Path, mode: str
) -> None:
    target = tmp_path / ("out.txt" if mode == "file" else "folder")
    if mode == "file":
        target.write_text("old")
    else:
        target.mkdir()
        (target / "keep").write_text("old")
    _killed_writer(target, mode)
    leftovers = [n for n in _names(tmp_path) if n != target.name]
    assert len(leftovers) == 1
    assert leftovers[0].startswith(f".{target.name}.tmp-")
    assert (target.read_text() if mode == "file" else (target / "keep").read_text()) == "old"

    if mode == "file":
        write_json(target, {"new": True})
    else:
        with atomic_directory(target) as staging:
            (staging / "new").write_text("new")
    assert _names(tmp_path) == [target.name]


def test_killed_between_the_two_renames_the_previous_output_is_put_back(tmp_path: Path) -> None:
    """Where no atomic exchange exists, the swap is two renames: killed between them, the
    target is absent; the next write of it puts the previous (complete) output back first."""
    target = tmp_path / "folder"
    target.mkdir()
    (target / "keep").write_text("old")
    _killed_writer(target, "between-renames")
    assert not target.exists()
    assert any(n.startswith(".folder.old-") for n in _names(tmp_path))

    def fails() -> None:
        with atomic_directory(target):
            raise RuntimeError("the next run fails too")

    with pytest.raises(RuntimeError):
        fails()
    assert (target / "keep").read_text() == "old"
    assert _names(tmp_path) == ["folder"]


def test_a_live_writers_staging_is_left_alone(tmp_path: Path) -> None:
    target = tmp_path / "folder"
    other = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom features.storage import atomic_directory\n"
            "with atomic_directory(sys.argv[1]) as staging:\n"
            "    print(staging, flush=True)\n    time.sleep(60)\n",
            str(target),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert other.stdout is not None
        staging = Path(other.stdout.readline().strip())
        with atomic_directory(target) as mine:
            (mine / "x").write_text("x")
        assert staging.is_dir()
    finally:
        other.kill()
        other.wait()


def test_a_replaced_directory_is_never_absent_for_a_reader(tmp_path: Path) -> None:
    """Another process polls the directory while it is replaced 300 times: with the atomic
    exchange it never finds it missing (two renames leave it absent in between)."""
    target = tmp_path / "folder"
    with atomic_directory(target) as staging:
        (staging / "f").write_text("0")
    stop = tmp_path / "stop"
    reader = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, sys\nmissing = checks = 0\n"
            "while not os.path.exists(sys.argv[2]):\n"
            "    checks += 1\n    missing += not os.path.exists(sys.argv[1] + '/f')\n"
            "print(missing, checks)\n",
            str(target),
            str(stop),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        for i in range(300):
            with atomic_directory(target) as staging:
                (staging / "f").write_text(str(i))
    finally:
        stop.touch()
        output, _ = reader.communicate(timeout=60)
    missing, checks = map(int, output.split())
    assert checks > 0
    assert missing == 0, f"{missing} of {checks} checks found it absent"
    assert (target / "f").read_text() == "299"
