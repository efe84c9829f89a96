"""Checking one table: its Great Expectations suite and cross-table rules, and the rows each
rule fails (shared by the local stage and the per-partition tasks of a Dask cluster)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np

from features.validation.coercion import ValidatedTable
from features.validation.cross_table import cross_table
from features.validation.rules import RowFailures, rule_missing
from features.validation.suites import (
    SuiteSettings,
    build_suite,
    failures_from_result,
    run_suite,
    trim_for_docs,
)

if TYPE_CHECKING:
    from great_expectations.data_context import AbstractDataContext


def merge_failures(into: RowFailures, more: RowFailures) -> None:
    for rule, positions in more.items():
        if len(positions):
            into[rule] = np.union1d(into[rule], positions) if rule in into else positions


def validate_table(
    item: ValidatedTable,
    tables: dict[str, ValidatedTable],
    settings: SuiteSettings,
    context: AbstractDataContext,
    close: np.ndarray | None = None,
) -> float:
    """Run the table's GE suite; fill ``item.failures`` and ``item.quarantined``. Returns the
    seconds spent inside Great Expectations."""
    derived, cascade = cross_table(item, tables, settings, close)
    suite = build_suite(item.spec, settings, derived)
    frame = item.typed
    if derived:
        frame = frame.assign(**{d.column: d.values for d in derived})
    started = time.perf_counter()
    result = run_suite(context, item.spec.name, frame, suite)
    seconds = time.perf_counter() - started
    found = failures_from_result(result, item.spec.name)
    trim_for_docs(result)
    item.result = result
    for name, bad in item.notes.failed_columns.items():
        rule = rule_missing(name)
        if rule in found:
            found[rule] = np.setdiff1d(found[rule], bad)
            if not len(found[rule]):
                del found[rule]
    merge_failures(item.failures, found)
    merge_failures(item.failures, cascade)
    quarantined = np.zeros(len(item.typed), dtype=bool)
    for positions in item.failures.values():
        quarantined[positions] = True
    item.quarantined = quarantined
    return seconds
