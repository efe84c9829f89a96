"""Batch scoring's duplicate-id check across chunks (:class:`models.batch.SeenIds`): 8 bytes a
lead, exact even when two ids share a hash, and the re-read ids typed as the checks type them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features import contract
from features.validation.validate import check_table
from models.batch import LeadFile, SeenIds, id_hashes, lead_chunks, lead_ids


def _ids(*values: str) -> pd.Series:
    return pd.Series(list(values), dtype="str")


def _chunks(*chunks: pd.Series) -> tuple[SeenIds, list[int]]:
    """A SeenIds over ``chunks`` (added in order), and the count of re-reads it made."""
    reads: list[int] = []

    def earlier() -> Iterator[pd.Series]:
        reads.append(1)
        yield from chunks

    return SeenIds(earlier), reads


def _collide(ids: pd.Series) -> np.ndarray:
    """Every id the same hash: each lookup is a hit that only the exact check can settle."""
    return np.zeros(len(ids), dtype=np.uint64)


def test_eight_bytes_a_lead() -> None:
    seen, _ = _chunks()
    for start in range(0, 250_000, 50_000):
        seen.add(pd.Series([f"L{i:09d}" for i in range(start, start + 50_000)], dtype="str"))
    assert seen.count == 250_000
    assert seen.nbytes == 8 * 250_000  # a set of these str ids costs ~100 bytes each


def test_ids_of_earlier_chunks_are_found_and_new_ones_are_not() -> None:
    first, second = _ids("a", "b", "c"), _ids("d", "e")
    seen, reads = _chunks(first, second)
    seen.add(first)
    assert not seen.repeated(second).any()
    assert reads == []  # no hash hit: the file is not read again
    seen.add(second)
    again = seen.repeated(_ids("x", "c", "y", "e", "a"))
    assert again.tolist() == [False, True, False, True, True]
    assert reads == [1]


def test_a_shared_hash_is_not_a_duplicate() -> None:
    first, second = _ids("a", "b"), _ids("c", "d")
    seen, reads = _chunks(first, second)
    seen._hasher = _collide
    seen.add(first)
    seen.add(second)
    assert seen.repeated(_ids("e", "f")).tolist() == [False, False]  # every hash hits
    assert seen.repeated(_ids("f", "d", "a")).tolist() == [False, True, True]
    assert len(reads) == 2


def test_the_current_chunk_is_not_compared_with_itself() -> None:
    """The re-read yields the file's chunks, the one being checked too: only the rows added
    before count (here the current chunk repeats no earlier id, but shares every hash)."""
    first, current = _ids("a", "b"), _ids("c", "d")
    seen, _ = _chunks(first, current)
    seen._hasher = _collide
    seen.add(first)
    assert not seen.repeated(current).any()


def test_hashes_depend_on_the_id_alone() -> None:
    ids = pd.Series([f"L{i}" for i in range(1000)], dtype="str")
    hashes = id_hashes(ids)
    assert hashes.dtype == np.uint64
    assert len(np.unique(hashes)) == 1000
    part = ids.iloc[500:510].reset_index(drop=True)
    assert (id_hashes(part) == hashes[500:510]).all()
    assert (id_hashes(part.astype(object)) == hashes[500:510]).all()


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_ids_read_again_are_the_ids_the_checks_typed(tmp_path: Path, suffix: str) -> None:
    """The re-read ids (:meth:`LeadFile.typed_ids`) equal the checked chunks' ids, chunk by
    chunk, for ids the contract's coercion changes: spaces trimmed, whole floats as integers."""
    created = "2025-01-02T03:04:05Z"
    path = tmp_path / f"leads{suffix}"
    if suffix == ".csv":
        leads = pd.DataFrame(
            {"lead_id": [" a", "b ", "c", "é", "12", "x y "], "created_at": created}
        )
        leads.to_csv(path, index=False)
    else:
        leads = pd.DataFrame({"lead_id": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], "created_at": created})
        leads["created_at"] = pd.to_datetime(leads["created_at"], utc=True)
        leads.to_parquet(path, row_group_size=2)
    file: LeadFile = lead_chunks(path, 4)
    checked = [lead_ids(check_table(contract.LEADS, frame, path)) for frame, _ in file.chunks]
    again = list(file.typed_ids())
    assert [len(c) for c in again] == [len(c) for c in checked] == [4, 2]
    for left, right in zip(again, checked, strict=True):
        assert left.tolist() == right.tolist()
    expected = ["a", "b", "c", "é"] if suffix == ".csv" else ["1", "2", "3", "4"]
    assert checked[0].tolist() == expected
