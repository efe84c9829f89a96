"""Validation per lead partition on a Dask cluster (``params.yaml`` ``engine.kind: dask``).

The tables with a ``lead_id`` (leads, touches, sales events) arrive as shards, one per lead
partition and chunk of their file (:mod:`features.validation.chunked`: typed on the workers,
cut by the stable hash of :mod:`features.partitions`). Each partition, with the small parent
tables (campaigns, accounts: validated first, in the stage's process) whole, is validated on a
worker by the same Great Expectations suites and cross-table rules as the local path. That is
exact, not an approximation: every row with a given ``lead_id`` is in the same partition, so a
duplicated lead id meets its copies there (the suite's uniqueness rule quarantines all of
them), a touch finds its lead or finds it missing there, and a lead's close time comes from
its own sales events.

The task writes its partition of the valid rows straight into the stage's staging output (the
dataset's part file) and its quarantined rows beside it, and returns counts: per rule the rows
failing it and a few example ids, the GE result with row numbers of the whole file, the latest
valid time, the Arrow schema written. Merged, they are the quarantine, the report and the
verdict of one run over the whole table, and the stage's process never holds the lead tables.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import pickle
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features import contract
from features.errors import UserError
from features.partitions import META, ORDER_COLUMN, part_name
from features.validation.checking import validate_table
from features.validation.chunked import (
    TableTyping,
    read_shards,
    shard_files,
    shard_pattern,
    table_part,
)
from features.validation.coercion import ValidatedTable
from features.validation.cross_table import close_times
from features.validation.outputs import (
    ROW_COLUMN,
    arrow_quarantine,
    arrow_valid,
    latest_valid,
    quarantine_rows,
)
from features.validation.report import TableSummary, example_candidates, merge_examples
from features.validation.suites import SuiteSettings, ge_context

if TYPE_CHECKING:
    from distributed import Client

PARTIAL = 20
"""GE's partial unexpected lists keep this many values."""


def by_lead(name: str) -> bool:
    return "lead_id" in contract.TABLES[name].column_names


@dataclass
class PartitionFound:
    """One lead table's findings in one partition (row numbers of the whole file)."""

    rows: int
    quarantined: int
    rules: dict[str, int]
    examples: dict[str, list[tuple[int, str]]]
    result: Any
    latest: pd.Timestamp | None
    schema: pa.Schema


@dataclass
class _Work:
    """What a partition's task is given (pickled to a file beside the output)."""

    parents: dict[str, ValidatedTable]
    templates: dict[str, ValidatedTable]
    names: list[str]
    settings: SuiteSettings
    shards: str
    staging: str
    quarantine: str
    example_ids: int


def _validate_partition(path: str, partition: int) -> tuple[dict[str, PartitionFound], float]:
    """On a worker: one partition's lead tables validated as the local stage does, beside the
    parents; the valid rows written to the staging dataset, the quarantined rows beside it."""
    with open(path, "rb") as handle:
        work: _Work = pickle.load(handle)
    tables: dict[str, ValidatedTable] = dict(work.parents)
    rows: dict[str, np.ndarray] = {}
    for name in work.names:
        read = read_shards(shard_files(work.shards, name, partition))
        if read is None:
            tables[name], rows[name] = work.templates[name], np.zeros(0, dtype=np.int64)
        else:
            tables[name], rows[name] = read
    context = ge_context()
    close = None
    seconds = 0.0
    found: dict[str, PartitionFound] = {}
    for name in work.names:  # dependency order: leads before their events
        item = tables[name]
        if name in contract.EVENT_TABLES and close is None:
            close = close_times(tables, work.settings)
        seconds += validate_table(item, tables, work.settings, context, close)
        found[name] = _findings(item, rows[name], work, partition)
    return found, seconds


def _findings(
    item: ValidatedTable, rows: np.ndarray, work: _Work, partition: int
) -> PartitionFound:
    name = item.spec.name
    valid = arrow_valid(item)
    valid = valid.append_column(ORDER_COLUMN, pa.array(rows[~item.quarantined], pa.int64()))
    pq.write_table(valid, Path(work.staging) / name / part_name(partition), compression="zstd")
    if item.quarantined.any():
        quarantined = quarantine_rows(item, rows)
        with (Path(work.quarantine) / f"{name}-{partition:05d}.pkl").open("wb") as handle:
            pickle.dump(quarantined, handle, protocol=pickle.HIGHEST_PROTOCOL)
    return PartitionFound(
        rows=len(item.typed),
        quarantined=int(item.quarantined.sum()),
        rules={rule: len(positions) for rule, positions in item.failures.items()},
        examples={
            rule: example_candidates(item, positions, work.example_ids, rows)
            for rule, positions in item.failures.items()
        },
        result=merge_results([(rows, item.result)]),
        latest=latest_valid(item),
        schema=valid.schema,
    )


@dataclass
class ClusterValidation:
    """The lead tables validated on the cluster: per table its summary and GE result."""

    summaries: dict[str, TableSummary] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)
    latest: dict[str, pd.Timestamp | None] = field(default_factory=dict)
    schemas: dict[str, pa.Schema] = field(default_factory=dict)
    empty_quarantine: dict[str, pd.DataFrame] = field(default_factory=dict)
    """Per table its quarantine file's columns, no rows (what a table without one writes)."""
    ge_seconds: float = 0.0


def validate_by_partition(
    typing: dict[str, TableTyping],
    parents: dict[str, ValidatedTable],
    settings: SuiteSettings,
    client: Client,
    partitions: int,
    shards: Path,
    staging: Path,
    example_ids: int,
) -> ClusterValidation:
    """Validate the lead tables typed into ``shards`` on ``client``'s workers, one task per
    lead partition, after their ``parents`` (already validated). Each task writes its valid
    rows into ``staging/<table>/`` and its quarantined rows beside them; the stage's
    :func:`finish_datasets` completes them once the verdict is known."""
    from features.cluster import cluster_failures, one_line

    names = list(typing)
    templates = {}
    for name in names:
        first = read_shards(shard_files(shards, name, _a_partition(shards, name)))
        assert first is not None  # a table typed in chunks has rows
        templates[name] = table_part(first[0], np.zeros(0, dtype=np.int64))
        (staging / name).mkdir(parents=True)
    quarantine = staging / ".quarantine-parts"
    quarantine.mkdir()
    stripped = {name: dataclasses.replace(item, result=None) for name, item in parents.items()}
    with tempfile.NamedTemporaryFile(
        prefix=".validate-dask-", suffix=".pkl", dir=shards.parent, delete=False
    ) as handle:
        work = _Work(
            stripped,
            templates,
            names,
            settings,
            str(shards),
            str(staging),
            str(quarantine),
            example_ids,
        )
        pickle.dump(work, handle, protocol=pickle.HIGHEST_PROTOCOL)
    try:
        futures = [
            client.submit(_validate_partition, handle.name, p, pure=False)
            for p in _partitions_with_rows(shards, names)  # an empty one: an empty file, later
        ]
        results = client.gather(futures)
    except cluster_failures() as error:
        raise UserError(
            f"validate: the Dask cluster failed during validation: {one_line(error)}"
        ) from None
    finally:
        Path(handle.name).unlink(missing_ok=True)
    merged = ClusterValidation()
    for _, spent in results:
        merged.ge_seconds += spent
    for name in names:
        pieces = [found[name] for found, _ in results]
        result = merge_results([(None, piece.result) for piece in pieces])
        order = _rule_order(typing[name].rules, result)
        counts: Counter[str] = Counter()
        for piece in pieces:
            counts.update(piece.rules)
        rank = {rule: i for i, rule in enumerate(order)}
        first_met = list(dict.fromkeys(rule for piece in pieces for rule in piece.rules))
        rules = sorted(first_met, key=lambda rule: rank.get(rule, len(rank)))  # stable
        rows_in = sum(piece.rows for piece in pieces)
        quarantined = sum(piece.quarantined for piece in pieces)
        notes = typing[name].notes
        merged.summaries[name] = TableSummary(
            name=name,
            source=str(typing[name].path),
            rows_in=rows_in,
            rows_valid=rows_in - quarantined,
            rows_quarantined=quarantined,
            rules={rule: counts[rule] for rule in rules},
            examples={
                rule: merge_examples([p.examples.get(rule, []) for p in pieces], example_ids)
                for rule in rules
            },
            normalised=dict(notes.normalised),
            renamed=dict(notes.renamed),
            dropped_columns=list(notes.dropped),
            added_columns=list(notes.added),
            expectations=len(result.results) if result is not None else 0,
        )
        merged.results[name] = result
        latest = [piece.latest for piece in pieces if piece.latest is not None]
        merged.latest[name] = max(latest, default=None)
        merged.schemas[name] = _unified_schema([piece.schema for piece in pieces])
        empty = dataclasses.replace(templates[name], quarantined=np.zeros(0, dtype=bool))
        merged.empty_quarantine[name] = quarantine_rows(empty)
    return merged


def _shard_partitions(shards: Path, name: str) -> list[int]:
    """The partitions that have rows of table ``name`` (in order)."""
    import glob

    found = {int(Path(path).name.split("-")[0]) for path in glob.glob(shard_pattern(shards, name))}
    return sorted(found)


def _a_partition(shards: Path, name: str) -> int:
    return _shard_partitions(shards, name)[0]


def _partitions_with_rows(shards: Path, names: list[str]) -> list[int]:
    return sorted({p for name in names for p in _shard_partitions(shards, name)})


def _unified_schema(schemas: list[pa.Schema]) -> pa.Schema:
    """Per column the first type that is not null (a partition whose extra column is all
    missing reads it as Arrow's null type)."""
    fields = []
    for index, first in enumerate(schemas[0]):
        typed = next(
            (s.field(index) for s in schemas if not pa.types.is_null(s.field(index).type)), first
        )
        fields.append(typed)
    return pa.schema(fields)


def finish_datasets(staging: Path, cluster: ClusterValidation, partitions: int) -> None:
    """Once the verdict is a pass: every partition file in the table's one schema, the
    datasets' ``_dataset.json``, each table's quarantined rows as one file in file order."""
    quarantine_parts = staging / ".quarantine-parts"
    for name, schema in cluster.schemas.items():
        directory = staging / name
        for p in range(partitions):
            path = directory / part_name(p)
            if not path.exists():  # no row of any lead table in the partition
                pq.write_table(schema.empty_table(), path, compression="zstd")
                continue
            table = pq.read_table(path)
            if not table.schema.equals(schema):
                pq.write_table(table.cast(schema), path, compression="zstd")
        latest = cluster.latest[name]
        meta = {
            "partitions": partitions,
            "rows": cluster.summaries[name].rows_valid,
            "latest": None if latest is None else pd.Timestamp(latest).isoformat(),
        }
        (directory / META).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        parts = sorted(quarantine_parts.glob(f"{name}-*.pkl"))
        frames = [pd.read_pickle(part) for part in parts]
        rows = (
            pd.concat(frames, ignore_index=True).sort_values(ROW_COLUMN, kind="stable")
            if frames
            else None
        )
        if rows is None:
            rows = cluster.empty_quarantine[name]
        quarantined = arrow_quarantine(rows.reset_index(drop=True))
        target = staging / "quarantine" / f"{name}.parquet"
        pq.write_table(quarantined, target, compression="zstd")
    for part in quarantine_parts.iterdir():
        part.unlink()
    quarantine_parts.rmdir()


def _rule_order(typing_rules: list[str], result: Any) -> list[str]:
    """The local path's order of rules: typing's first, then the suite's in its order (the
    cascades, whatever else, after them), so the quarantine reasons read the same."""
    suite = [
        str(item.expectation_config.meta["rule"])
        for item in (result.results if result is not None else [])
        if item.expectation_config is not None and item.expectation_config.meta
    ]
    return list(dict.fromkeys([*typing_rules, *suite]))


def merge_results(parts: list[tuple[np.ndarray | None, Any]]) -> Any:
    """One GE suite result from the partitions' (same suite, other rows): per expectation the
        counts summed and the percentages recomputed over all rows, success only if every partition
        succeeded, the partial lists (of 20) filled from the partitions in turn with row numbers of
        the whole table (``positions``: the whole table's row of each of the part's rows; None: they
    are already); the suite's statistics recomputed. None without partitions."""
    if not parts:
        return None
    _, first = parts[0]
    merged = first
    for index, expectation in enumerate(merged.results):
        pieces = [(positions, result.results[index]) for positions, result in parts]
        expectation.success = all(piece.success for _, piece in pieces)
        expectation.result = _merge_counts([(pos, piece.result) for pos, piece in pieces])
    evaluated = len(merged.results)
    successful = sum(1 for expectation in merged.results if expectation.success)
    merged.statistics = {
        **merged.statistics,
        "evaluated_expectations": evaluated,
        "successful_expectations": successful,
        "unsuccessful_expectations": evaluated - successful,
        "success_percent": successful / evaluated * 100 if evaluated else None,  # GE's order
    }
    merged.success = successful == evaluated
    return merged


def _merge_counts(pieces: list[tuple[np.ndarray | None, dict[str, Any]]]) -> dict[str, Any]:
    result = dict(pieces[0][1])
    for key in ("element_count", "unexpected_count", "missing_count"):
        if key in result:
            result[key] = sum(int(piece.get(key) or 0) for _, piece in pieces)
    elements = int(result.get("element_count") or 0)
    unexpected = int(result.get("unexpected_count") or 0)
    if "missing_count" in result:
        missing = int(result["missing_count"])
        nonmissing = elements - missing
        result["missing_percent"] = missing / elements * 100 if elements else None
        result["unexpected_percent_total"] = unexpected / elements * 100 if elements else None
        share = unexpected / nonmissing * 100 if nonmissing else None
        result["unexpected_percent_nonmissing"] = share
        result["unexpected_percent"] = share
    elif "unexpected_percent" in result:
        result["unexpected_percent"] = unexpected / elements * 100 if elements else None
    values: list[Any] = []
    indexes: list[int] = []
    counts: Counter[Any] = Counter()
    for positions, piece in pieces:
        values.extend(piece.get("partial_unexpected_list") or [])
        listed = piece.get("partial_unexpected_index_list") or []
        indexes.extend(int(i if positions is None else positions[i]) for i in listed)
        for entry in piece.get("partial_unexpected_counts") or []:
            with contextlib.suppress(TypeError):  # an unhashable value: left out of the counts
                counts[entry["value"]] += int(entry["count"])
    for key, merged_list in (
        ("partial_unexpected_list", values),
        ("partial_unexpected_index_list", indexes),
    ):
        if key in result:
            result[key] = merged_list[:PARTIAL]
    if "partial_unexpected_counts" in result:
        result["partial_unexpected_counts"] = [
            {"value": value, "count": count} for value, count in counts.most_common(PARTIAL)
        ]
    return result
