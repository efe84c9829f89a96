"""Reading and typing the lead tables on a Dask cluster's workers, a chunk of each file at a
time, then cutting every chunk into lead partitions (``engine.kind: dask``).

Typing decides a few things over a whole column, not value by value: a text column read as
floats keeps "12" rather than "12.0" only when every value is whole; the non-ISO timestamps of
a column are read with the format pandas infers from the column's *first* such value, day first
when that parses more of them; a column none of whose values types refuses the file. Chunks
typed alone could decide otherwise than the one file, so each chunk reports what it decided and
the counts the decisions come from (:class:`~features.validation.coercion.ColumnStats`); the
stage makes the whole column's decisions from them, and the chunks that decided otherwise are
typed again with the column's (at most twice: the first value and the counts are known after
the first round, the day-first choice after the second). The typed rows are then exactly those
of typing the file in one piece.

Each chunk writes its rows as shards, one per lead partition (the file's rows there, typed, the
row failures typing found and their row numbers in the file), which the partition's validation
task reads (:mod:`features.validation.partitioned`). So no process but a chunk's worker holds a
chunk, and the stage's process holds counts. Lead tables in CSV files are read by the stage's
process, as locally, and cut into the same shards.
"""

from __future__ import annotations

import dataclasses
import glob
import logging
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from features import contract
from features.errors import UserError
from features.ingest.readers import parquet_row_groups, read_parquet_chunk
from features.partitions import lead_partition, partition_rows
from features.validation.coercion import (
    CoercionNotes,
    ColumnDecision,
    ColumnStats,
    ValidatedTable,
    coerce,
    inferred_formats,
    mistyped_error,
)
from features.validation.rules import rule_not_a_number, rule_unparseable

if TYPE_CHECKING:
    from distributed import Client

logger = logging.getLogger(__name__)

CHUNK_ROWS = 1_000_000
"""Consecutive row groups are typed together up to about this many rows (one task each)."""
ROUNDS = 4
"""Typing rounds at most (three suffice: see the module's docstring)."""


@dataclass(frozen=True)
class Chunk:
    """Row groups ``groups`` of a table's Parquet file: rows ``offset`` … ``offset + rows - 1``."""

    index: int
    table: str
    path: str
    groups: tuple[int, ...]
    offset: int
    rows: int


@dataclass
class ChunkTyped:
    """What typing a chunk found (its rows are in its shards)."""

    rows: int
    notes: CoercionNotes
    stats: dict[str, ColumnStats]
    rules: list[str]
    latest: pd.Timestamp | None
    """The latest time of the chunk's time column not after ``now`` (for the data horizon)."""


@dataclass
class TableTyping:
    """A lead table typed in chunks: what the stage keeps of it."""

    name: str
    path: Path
    rows: int
    notes: CoercionNotes
    rules: list[str] = field(default_factory=list)
    """Typing's row-failure rules, in the order one typing of the file meets them."""
    latest: pd.Timestamp | None = None


def _localise(global_positions: np.ndarray, inverse: np.ndarray) -> np.ndarray:
    local = inverse[global_positions]
    return local[local >= 0]


def table_part(item: ValidatedTable, positions: np.ndarray) -> ValidatedTable:
    """The rows of ``item`` at ``positions`` as a table of their own (row numbers 0…)."""
    inverse = np.full(len(item.typed), -1, dtype=np.int64)
    inverse[positions] = np.arange(len(positions))
    notes = dataclasses.replace(
        item.notes,
        failed_columns={
            column: _localise(bad, inverse) for column, bad in item.notes.failed_columns.items()
        },
    )
    failures = {rule: _localise(bad, inverse) for rule, bad in item.failures.items()}
    return ValidatedTable(
        item.spec,
        item.path,
        item.raw.iloc[positions].reset_index(drop=True),
        item.typed.iloc[positions].reset_index(drop=True),
        {rule: bad for rule, bad in failures.items() if len(bad)},
        notes,
    )


def concat_parts(parts: list[ValidatedTable]) -> ValidatedTable:
    """Parts of one table (in file order) as one table, their row failures renumbered."""
    if len(parts) == 1:
        return parts[0]
    offsets = np.cumsum([0] + [len(part.typed) for part in parts[:-1]])
    failures: dict[str, list[np.ndarray]] = {}
    failed: dict[str, list[np.ndarray]] = {}
    for offset, part in zip(offsets, parts, strict=True):
        for rule, bad in part.failures.items():
            failures.setdefault(rule, []).append(bad + offset)
        for column, bad in part.notes.failed_columns.items():
            failed.setdefault(column, []).append(bad + offset)
    first = parts[0]
    notes = dataclasses.replace(
        first.notes, failed_columns={c: np.concatenate(b) for c, b in failed.items()}
    )
    return ValidatedTable(
        first.spec,
        first.path,
        pd.concat([part.raw for part in parts], ignore_index=True),
        pd.concat([part.typed for part in parts], ignore_index=True),
        {rule: np.concatenate(bad) for rule, bad in failures.items()},
        notes,
    )


def plan_chunks(name: str, path: Path, chunk_rows: int | None = None) -> list[Chunk]:
    """The file's row groups gathered into chunks of about ``chunk_rows`` rows (default
    :data:`CHUNK_ROWS`), in file order."""
    chunk_rows = chunk_rows if chunk_rows is not None else CHUNK_ROWS
    chunks: list[Chunk] = []
    groups: list[int] = []
    offset = rows = 0
    sizes = parquet_row_groups(path)
    for index, size in enumerate(sizes):
        groups.append(index)
        rows += size
        if rows >= chunk_rows or index == len(sizes) - 1:
            chunks.append(Chunk(len(chunks), name, str(path), tuple(groups), offset, rows))
            offset += rows
            groups, rows = [], 0
    return chunks


def shard_pattern(shards: Path | str, table: str, partition: int | None = None) -> str:
    where = "*" if partition is None else f"{partition:05d}"
    return str(Path(shards) / table / f"{where}-*.pkl")


def write_shards(
    item: ValidatedTable, shards: Path | str, chunk: int, offset: int, partitions: int
) -> None:
    """``item`` (rows ``offset`` … of its file) cut into lead partitions, a shard each:
    ``<shards>/<table>/<partition>-<chunk>.pkl``, holding the rows and their row numbers."""
    directory = Path(shards) / item.spec.name
    directory.mkdir(parents=True, exist_ok=True)
    for stale in glob.glob(str(directory / f"*-{chunk:06d}.pkl")):  # a chunk typed again
        Path(stale).unlink()
    part = lead_partition(item.typed["lead_id"], partitions)
    for p, positions in enumerate(partition_rows(part, partitions)):
        if not len(positions):
            continue
        shard = {"table": table_part(item, positions), "rows": offset + positions}
        with (directory / f"{p:05d}-{chunk:06d}.pkl").open("wb") as handle:
            pickle.dump(shard, handle, protocol=pickle.HIGHEST_PROTOCOL)


def _type_chunk(
    chunk: Chunk,
    decisions: dict[str, ColumnDecision] | None,
    now: pd.Timestamp,
    partitions: int,
    shards: str,
) -> ChunkTyped:
    """On a worker: the chunk read, typed with ``decisions`` (None: its own) and written as
    shards; what it decided and counted."""
    spec = contract.TABLES[chunk.table]
    frame = read_parquet_chunk(Path(chunk.path), chunk.groups)
    notes = CoercionNotes()
    stats: dict[str, ColumnStats] = {}
    typed, failures = coerce(spec, frame, chunk.path, notes, decisions, stats)
    item = ValidatedTable(spec, Path(chunk.path), frame, typed, failures, notes)
    write_shards(item, shards, chunk.index, chunk.offset, partitions)
    latest = contract.latest_time({chunk.table: typed}, now)
    kept = dataclasses.replace(notes, failed_columns={})
    return ChunkTyped(len(frame), kept, stats, list(failures), latest)


def _column_decision(column: contract.Column, found: list[ChunkTyped]) -> ColumnDecision:
    """The whole column's decision from its chunks' stats (in file order)."""
    stats = [chunk.stats[column.name] for chunk in found if column.name in chunk.stats]
    wholes = [s.own_whole for s in stats if s.own_whole is not None]
    firsts = [s.own_first for s in stats if s.own_first is not None]
    if column.kind is contract.Kind.STRING:
        return ColumnDecision(whole=all(wholes) if wholes else None)
    if column.kind is not contract.Kind.TIMESTAMP or not firsts:
        return ColumnDecision()
    first = firsts[0]
    formats = inferred_formats(first)
    counted = [s.counts for s in stats if s.own_first is not None and s.formats == formats]
    month_first = sum(count[0] for count in counted)
    day_first = sum(count[1] for count in counted)
    return ColumnDecision(first=first, dayfirst=day_first > month_first)


def _stale(chunk: ChunkTyped, decisions: dict[str, ColumnDecision]) -> bool:
    """Whether the chunk was typed otherwise than the column's decisions say."""
    for name, stats in chunk.stats.items():
        decision = decisions.get(name)
        if decision is None:
            continue
        if stats.own_whole is not None and stats.used.whole != decision.whole:
            return True
        if stats.own_first is not None and (
            stats.formats != inferred_formats(decision.first)
            or stats.used.dayfirst != decision.dayfirst
        ):
            return True
    return False


def _refuse_mistyped(spec: contract.Table, path: Path, found: list[ChunkTyped]) -> None:
    """The error one typing of the file gives for a column none of whose values types."""
    for column in spec.columns:
        stats = [chunk.stats[column.name] for chunk in found if column.name in chunk.stats]
        nonnull = sum(s.nonnull for s in stats)
        examples = [s.example for s in stats if s.nonnull]
        mistyped = next((s.mistyped for s in stats if s.mistyped and s.nonnull), None)
        if mistyped is not None:
            raise mistyped_error(str(path), column.name, mistyped, nonnull, examples[0])
        what = next((s.what for s in stats if s.what), "")
        if what and nonnull and not sum(s.typed for s in stats):
            raise mistyped_error(str(path), column.name, what, nonnull, examples[0])


def typing_rules(spec: contract.Table, rules: set[str]) -> list[str]:
    """Typing's rules among ``rules`` in the order typing the file meets them (its columns')."""
    ordered = [
        rule
        for column in spec.columns
        for rule in (rule_unparseable(column.name), rule_not_a_number(column.name))
    ]
    return [rule for rule in ordered if rule in rules]


def _merge(name: str, path: Path, found: list[ChunkTyped]) -> TableTyping:
    notes = dataclasses.replace(found[0].notes, normalised={})
    for chunk in found:
        for column, count in chunk.notes.normalised.items():
            notes.normalised[column] = notes.normalised.get(column, 0) + count
    rules = typing_rules(contract.TABLES[name], {rule for chunk in found for rule in chunk.rules})
    latest = [chunk.latest for chunk in found if chunk.latest is not None]
    return TableTyping(
        name, path, sum(chunk.rows for chunk in found), notes, rules, max(latest, default=None)
    )


def type_in_chunks(
    files: dict[str, Path],
    client: Client,
    now: pd.Timestamp,
    partitions: int,
    shards: Path,
    chunk_rows: int | None = None,
) -> dict[str, TableTyping]:
    """Type the lead tables' Parquet ``files`` on ``client``'s workers, chunk by chunk, into
    shards under ``shards``; per table what the stage needs (counts, notes, rules)."""
    from features.cluster import cluster_failures, one_line

    chunks = {name: plan_chunks(name, path, chunk_rows) for name, path in files.items()}
    flat = [chunk for name in files for chunk in chunks[name]]
    found: dict[tuple[str, int], ChunkTyped] = {}
    decisions: dict[str, dict[str, ColumnDecision]] = {name: {} for name in files}
    todo: list[Chunk] = flat
    retyped = 0
    try:
        for round_ in range(ROUNDS):
            futures = []
            for chunk in todo:
                given = decisions[chunk.table] if round_ else None
                futures.append(
                    client.submit(
                        _type_chunk, chunk, given, now, partitions, str(shards), pure=False
                    )
                )
            for chunk, result in zip(todo, client.gather(futures), strict=True):
                found[(chunk.table, chunk.index)] = result
            for name in files:
                typed = [found[(name, chunk.index)] for chunk in chunks[name]]
                _refuse_mistyped(contract.TABLES[name], files[name], typed)
                decisions[name] = {
                    column.name: _column_decision(column, typed)
                    for column in contract.TABLES[name].columns
                }
            todo = [c for c in flat if _stale(found[(c.table, c.index)], decisions[c.table])]
            if not todo:
                logger.info(
                    "typed %d chunks of %d files on the cluster in %d rounds (%d chunks again)",
                    len(flat),
                    len(files),
                    round_ + 1,
                    retyped,
                )
                break
            retyped += len(todo)
        else:  # pragma: no cover - the decisions settle in three rounds
            raise RuntimeError("typing in chunks did not settle")
    except cluster_failures() as error:
        raise UserError(
            f"validate: the Dask cluster failed during typing: {one_line(error)}"
        ) from None
    return {
        name: _merge(name, path, [found[(name, chunk.index)] for chunk in chunks[name]])
        for name, path in files.items()
    }


def shard_files(shards: Path | str, table: str, partition: int) -> list[str]:
    """The partition's shards of ``table``, in file order."""
    return sorted(glob.glob(shard_pattern(shards, table, partition)))


def read_shards(paths: list[str]) -> tuple[ValidatedTable, np.ndarray] | None:
    """The shards' rows as one table (their row numbers in the file beside it), in file
    order; None without shards."""
    parts: list[tuple[ValidatedTable, np.ndarray]] = []
    for path in paths:
        with open(path, "rb") as handle:
            shard: dict[str, Any] = pickle.load(handle)
        parts.append((shard["table"], shard["rows"]))
    if not parts:
        return None
    return concat_parts([table for table, _ in parts]), np.concatenate([r for _, r in parts])
