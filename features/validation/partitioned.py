"""Validation per lead partition on a Dask cluster (``params.yaml`` ``engine.kind: dask``).

The tables with a ``lead_id`` (leads, touches, sales events) are cut into lead partitions by
the stable hash of :mod:`features.partitions`; each partition, with the small parent tables
(campaigns, accounts: validated first, in the stage's process) whole, is validated on a
worker by the same Great Expectations suites and cross-table rules as the local path. That is
exact, not an approximation: every row with a given ``lead_id`` is in the same partition, so a
duplicated lead id meets its copies there (the suite's uniqueness rule quarantines all of
them), a touch finds its lead or finds it missing there, and a lead's close time comes from
its own sales events. The partitions' failing rows are mapped back to the table's row numbers
and their per-rule counts and GE results merged, so the quarantine, the report and the verdict
are those of one run over the whole table.

Each partition goes to the workers as a file (a task whose worker dies can run again on
another); the typed tables are read and coerced in the stage's process, as locally.
"""

from __future__ import annotations

import contextlib
import dataclasses
import pickle
import tempfile
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from features import contract
from features.errors import UserError
from features.partitions import lead_partition, partition_rows
from features.validation.checking import validate_table
from features.validation.coercion import ValidatedTable
from features.validation.cross_table import close_times
from features.validation.rules import RowFailures
from features.validation.suites import SuiteSettings, ge_context

if TYPE_CHECKING:
    from distributed import Client

PARTIAL = 20
"""GE's partial unexpected lists keep this many values."""


def by_lead(name: str) -> bool:
    return "lead_id" in contract.TABLES[name].column_names


def _localise(global_positions: np.ndarray, inverse: np.ndarray) -> np.ndarray:
    local = inverse[global_positions]
    return local[local >= 0]


def _part(item: ValidatedTable, positions: np.ndarray) -> ValidatedTable:
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


def _validate_partition(path: str) -> tuple[dict[str, tuple[RowFailures, Any]], float]:
    """On a worker: one partition's lead tables validated as the local stage does, beside the
    parents in the file; per table its failing rows (partition row numbers) and GE result."""
    with open(path, "rb") as handle:
        work = pickle.load(handle)
    tables: dict[str, ValidatedTable] = work["tables"]
    settings: SuiteSettings = work["settings"]
    context = ge_context()
    close = None
    seconds = 0.0
    found: dict[str, tuple[RowFailures, Any]] = {}
    for name in work["names"]:  # dependency order: leads before their events
        if name in contract.EVENT_TABLES and close is None:
            close = close_times(tables, settings)
        seconds += validate_table(tables[name], tables, settings, context, close)
        found[name] = (tables[name].failures, tables[name].result)
    return found, seconds


def validate_by_partition(
    tables: dict[str, ValidatedTable],
    settings: SuiteSettings,
    client: Client,
    partitions: int,
    workdir: Path | None = None,
) -> float:
    """Validate ``tables``' lead tables on ``client``'s workers, one task per lead partition,
    after their parents (already validated: ``quarantined`` set). Fills each lead table's
    ``failures``, ``quarantined`` and ``result`` as the local path would; returns the seconds
    spent inside Great Expectations (all workers together)."""
    from features.cluster import cluster_failures, one_line

    names = [name for name in tables if by_lead(name)]
    parents = {
        name: dataclasses.replace(item, result=None)
        for name, item in tables.items()
        if not by_lead(name)
    }
    rows = {
        name: partition_rows(lead_partition(tables[name].typed["lead_id"], partitions), partitions)
        for name in names
    }
    with tempfile.TemporaryDirectory(prefix=".validate-dask-", dir=workdir) as shared:
        paths = []
        for p in range(partitions):
            if not any(len(rows[name][p]) for name in names):
                continue
            part = {name: _part(tables[name], rows[name][p]) for name in names}
            path = Path(shared) / f"{p:05d}.pkl"
            with path.open("wb") as handle:
                payload = {"tables": parents | part, "settings": settings, "names": names}
                pickle.dump(payload, handle, protocol=pickle.HIGHEST_PROTOCOL)
            paths.append((p, str(path)))
        try:
            futures = [client.submit(_validate_partition, path, pure=False) for _, path in paths]
            results = client.gather(futures)
        except cluster_failures() as error:
            raise UserError(
                f"validate: the Dask cluster failed during validation: {one_line(error)}"
            ) from None
    seconds = 0.0
    merged: dict[str, list[tuple[np.ndarray, RowFailures, Any]]] = {name: [] for name in names}
    for (p, _), (found, spent) in zip(paths, results, strict=True):
        seconds += spent
        for name, (failures, result) in found.items():
            merged[name].append((rows[name][p], failures, result))
    for name in names:
        item = tables[name]
        result = merge_results([(rows_p, found) for rows_p, _, found in merged[name]])
        item.failures = _merge_failures(merged[name], _rule_order(item.failures, result))
        quarantined = np.zeros(len(item.typed), dtype=bool)
        for positions in item.failures.values():
            quarantined[positions] = True
        item.quarantined = quarantined
        item.result = result
    return seconds


def _rule_order(typing_failures: RowFailures, result: Any) -> list[str]:
    """The local path's order of rules: typing's first, then the suite's in its order (the
    cascades, whatever else, after them), so the quarantine reasons read the same."""
    suite = [
        str(item.expectation_config.meta["rule"])
        for item in (result.results if result is not None else [])
        if item.expectation_config is not None and item.expectation_config.meta
    ]
    return list(dict.fromkeys([*typing_failures, *suite]))


def _merge_failures(
    parts: list[tuple[np.ndarray, RowFailures, Any]], order: list[str]
) -> RowFailures:
    """Per rule, every partition's failing rows as the table's row numbers, rules in
    ``order`` (others after them, as first met)."""
    collected: dict[str, list[np.ndarray]] = {}
    for positions, failures, _ in parts:
        for rule, local in failures.items():
            collected.setdefault(rule, []).append(positions[local])
    rank = {rule: i for i, rule in enumerate(order)}
    rules = sorted(collected, key=lambda rule: rank.get(rule, len(rank)))
    return {rule: np.unique(np.concatenate(collected[rule])) for rule in rules}


def merge_results(parts: list[tuple[np.ndarray, Any]]) -> Any:
    """One GE suite result from the partitions' (same suite, other rows): per expectation the
    counts summed and the percentages recomputed over all rows, success only if every partition
    succeeded, the partial lists (of 20) filled from the partitions in turn with row numbers of
    the whole table; the suite's statistics recomputed. None without partitions."""
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


def _merge_counts(pieces: list[tuple[np.ndarray, dict[str, Any]]]) -> dict[str, Any]:
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
        indexes.extend(int(positions[i]) for i in piece.get("partial_unexpected_index_list") or [])
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
