"""Lead-partitioned datasets (features/partitions.py): a table written as one reads back as the
same frame, row for row, as the single file the local engine writes; every row of a lead is in
its partition's file; a read by lead ids opens only their partitions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.partitions import (
    dataset_meta,
    is_dataset,
    lead_partition,
    partition_files,
    read_dataset,
    write_dataset,
)
from features.storage import read_validated, validated_present

ids = st.text(alphabet="abcXYZ019-_ é", min_size=0, max_size=6)


def _frame(lead_ids: list[str | None]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "lead_id": pd.array(lead_ids, dtype="str"),
            "occurred_at": pd.date_range("2024-01-01", periods=len(lead_ids), freq="h", tz="UTC"),
            "value": np.arange(len(lead_ids), dtype=np.float64) / 3,
        }
    )


def _written(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    """``frame`` as the local engine's single file reads back (the reference)."""
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
    return pd.read_parquet(path)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    lead_ids=st.lists(st.one_of(ids, st.none()), max_size=60),
    partitions=st.integers(1, 7),
    asked=st.lists(ids, max_size=5),
)
def test_a_dataset_reads_back_as_the_single_file(
    tmp_path_factory: pytest.TempPathFactory,
    lead_ids: list[str | None],
    partitions: int,
    asked: list[str],
) -> None:
    work = tmp_path_factory.mktemp("dataset")
    frame = _frame(lead_ids)
    reference = _written(frame, work / "single.parquet")
    table = pa.Table.from_pandas(frame, preserve_index=False)
    write_dataset(work / "touches", table, partitions)
    assert is_dataset(work / "touches")
    assert dataset_meta(work / "touches")["rows"] == len(frame)
    pd.testing.assert_frame_equal(read_dataset(work / "touches"), reference, check_exact=True)
    # every file holds exactly the rows of its partition's leads
    files = partition_files(work / "touches")
    assert len(files) == partitions
    for p, path in enumerate(files):
        part = pd.read_parquet(path)
        assert (lead_partition(part["lead_id"], partitions) == p).all()
    # a read by lead ids: the rows of those leads, in the table's order
    wanted = reference[reference["lead_id"].isin(asked)].reset_index(drop=True)
    pd.testing.assert_frame_equal(
        read_dataset(work / "touches", asked), wanted, check_exact=True, check_index_type=False
    )


def test_read_validated_takes_either_layout_and_opens_only_the_partitions_asked_for(
    tmp_path: Path,
) -> None:
    leads = pd.DataFrame({"lead_id": [f"L{i}" for i in range(200)], "score": np.arange(200.0)})
    touches = pd.DataFrame(
        {"lead_id": [f"L{i % 50}" for i in range(500)], "n": np.arange(500, dtype=np.int64)}
    )
    single, split = tmp_path / "single", tmp_path / "split"
    single.mkdir()
    split.mkdir()
    leads.to_parquet(single / "leads.parquet", index=False)
    touches.to_parquet(single / "touches.parquet", index=False)
    write_dataset(split / "leads", pa.Table.from_pandas(leads, preserve_index=False), 6)
    write_dataset(split / "touches", pa.Table.from_pandas(touches, preserve_index=False), 6)
    assert validated_present(split, "leads")
    assert validated_present(single, "leads")
    assert not validated_present(split, "campaigns")
    whole_single, whole_split = read_validated(single), read_validated(split)
    assert set(whole_split) == {"leads", "touches"}
    for name in whole_single:
        pd.testing.assert_frame_equal(whole_split[name], whole_single[name], check_exact=True)
    # one lead: only its partition's file is opened (the others are made unreadable)
    own = int(lead_partition(["L7"], 6)[0])
    for p, path in enumerate(partition_files(split / "touches")):
        if p != own:
            path.write_bytes(b"not parquet")
    cut = read_validated(split, ["touches"], ["L7"])["touches"]
    assert cut["n"].tolist() == [i for i in range(500) if i % 50 == 7]
    # no lead asked for (a monitor with no recent score): no rows, the same columns, either layout
    none_single = read_validated(single, ["touches"], [])["touches"]
    none_split = read_validated(tmp_path / "split", ["leads"], [])["leads"]
    assert len(none_single) == 0
    assert len(none_split) == 0
    assert none_single.dtypes.to_dict() == whole_single["touches"].dtypes.to_dict()
    assert none_split.dtypes.to_dict() == whole_single["leads"].dtypes.to_dict()
