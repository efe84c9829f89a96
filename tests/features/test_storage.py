"""Atomic outputs: all or nothing, and with the permissions a plain write would have given."""

from __future__ import annotations

import os
import stat
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
