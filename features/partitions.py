"""Lead partitions: a stable hash of ``lead_id`` into N partitions, and the partitioned Parquet
dataset a table with a ``lead_id`` is written as under ``engine.kind: dask``.

A dataset is a directory ``<table>/`` of ``part-00000.parquet`` … ``part-<N-1>.parquet`` (one
per partition, empty ones included, so a task never meets a missing file) and ``_dataset.json``
(``{"partitions": N, "rows": …, "latest": …}``). Every row of a lead, in every table, is in the
file of the lead's partition, so a task given partition p of leads, touches and sales events has
each of those leads' whole history. Each row carries its position in the table as written
(``_row``; validation's tasks write the row's number in the raw file instead, which orders the
valid rows the same): a reader puts the rows back in that order, so reading a dataset gives the
same frame as reading the single file the local engine writes, row for row.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

HASH_KEY = "leadscore:leadid"
"""The 16-byte key of the SipHash behind :func:`lead_partition` (fixed: partitions are the same
in every process, run and machine)."""
ORDER_COLUMN = "_row"
"""A number ordering a dataset's rows as in its table (the order a reader restores)."""
META = "_dataset.json"


def lead_partition(
    lead_ids: pd.Series | pd.Index | np.ndarray | Sequence[Any], n: int
) -> np.ndarray:
    """The partition (0 … n-1) of each lead id, by a keyed SipHash of its text
    (``pandas.util.hash_array``, not Python's salted ``hash``): the same in every process, run
    and machine, so every row of a lead, in any table, falls in the same partition."""
    if n < 1:
        raise ValueError(f"partitions must be at least 1, not {n}")
    text = np.asarray(pd.Series(np.asarray(lead_ids, dtype=object)).astype(str), dtype=object)
    if len(text) == 0:
        return np.zeros(0, dtype=np.int64)
    hashes = pd.util.hash_array(text, encoding="utf8", hash_key=HASH_KEY, categorize=True)
    return (hashes % np.uint64(n)).astype(np.int64)


def lead_filter(lead_ids: Sequence[str]) -> pc.Expression:
    """A Parquet read filter keeping the rows of ``lead_ids`` (typed, so an empty list is a
    filter that keeps nothing rather than an error)."""
    return pc.field("lead_id").isin(pa.array([str(lead) for lead in lead_ids], pa.string()))


def partition_rows(part: np.ndarray, partitions: int) -> list[np.ndarray]:
    """Per partition 0 … ``partitions``-1, the positions of its rows (``part``: each row's
    partition, :func:`lead_partition`), in the table's order."""
    order = np.argsort(part, kind="stable")
    bounds = np.searchsorted(part[order], np.arange(partitions + 1))
    return [order[bounds[p] : bounds[p + 1]] for p in range(partitions)]


def part_name(partition: int) -> str:
    return f"part-{partition:05d}.parquet"


def is_dataset(path: Path | str) -> bool:
    return (Path(path) / META).is_file()


def dataset_meta(path: Path | str) -> dict[str, Any]:
    meta: dict[str, Any] = json.loads((Path(path) / META).read_text(encoding="utf-8"))
    return meta


def write_dataset(
    directory: Path | str,
    table: pa.Table,
    partitions: int,
    latest: pd.Timestamp | None = None,
) -> None:
    """``table`` (with a ``lead_id`` column) as a dataset of ``partitions`` files under
    ``directory`` (created; the caller writes inside a staging directory it swaps in)."""
    directory = Path(directory)
    directory.mkdir(parents=True)
    table = table.append_column(ORDER_COLUMN, pa.array(np.arange(table.num_rows, dtype=np.int64)))
    part = lead_partition(table.column("lead_id").to_pandas(), partitions)
    for p, rows in enumerate(partition_rows(part, partitions)):
        pq.write_table(table.take(pa.array(rows)), directory / part_name(p), compression="zstd")
    meta = {
        "partitions": partitions,
        "rows": table.num_rows,
        "latest": None if latest is None or pd.isna(latest) else pd.Timestamp(latest).isoformat(),
    }
    (directory / META).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def partition_files(directory: Path | str) -> list[Path]:
    """The dataset's files, partition 0 first."""
    directory = Path(directory)
    return [directory / part_name(p) for p in range(int(dataset_meta(directory)["partitions"]))]


def read_dataset(
    directory: Path | str,
    lead_ids: Sequence[str] | None = None,
    columns: Sequence[str] | None = None,
    partitions: Sequence[int] | None = None,
) -> pd.DataFrame:
    """The dataset's rows in the table's order (``lead_ids``: only theirs, reading only their
    partitions' files; ``partitions``: only those files; ``columns``: only those)."""
    files = partition_files(directory)
    wanted = range(len(files)) if partitions is None else partitions
    filters = None
    if lead_ids is not None:
        wanted = sorted(set(lead_partition(list(lead_ids), len(files)).tolist()) & set(wanted))
        filters = lead_filter(lead_ids)
    read = None if columns is None else [*columns, ORDER_COLUMN]
    # pandas' own reader, file by file: the same dtypes as reading the single-file table
    parts = [pd.read_parquet(files[p], columns=read, filters=filters) for p in wanted]
    if not parts:  # no lead asked for: the schema, no rows
        parts = [pd.read_parquet(files[0], columns=read).iloc[:0]]
    frame = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    frame = frame.sort_values(ORDER_COLUMN, kind="stable").drop(columns=ORDER_COLUMN)
    return frame.reset_index(drop=True)
