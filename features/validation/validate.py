"""The validation stage: Great Expectations suites generated from the data contract, quarantine.

Steps, per table in dependency order (parents before children):

1. **Read** the file (:mod:`features.ingest.readers`) and **coerce** its columns to the
   contract's kinds (:func:`~features.validation.coercion.coerce`). Values that cannot be typed
   are row failures (``unparseable timestamp in <column>``, ``not a number in <column>``); a
   column none of whose values can be typed, a missing required column, an unreadable, empty or
   header-only file are table-level failures.
2. **Validate** with one GE ``ExpectationSuite`` per table, built from
   ``contract.TABLES[...].columns`` (:func:`~features.validation.suites.build_suite`): not null,
   unique, value in a closed vocabulary, minimum, one column not before another, and the
   cross-table rules (:mod:`~features.validation.cross_table`), which are validated by GE on
   columns derived by joining the parent tables (foreign keys, not before the lead's creation, no
   event after the lead's won/lost, not after the horizon / not in the future).
3. **Quarantine** every row failing a rule to ``<out>/quarantine/<table>.parquet`` (original
   values, ``source_row`` and ``quarantine_reason``); rows whose parent row is quarantined follow
   it (``parent lead quarantined``…); all copies of a duplicated id are quarantined.
4. **Fail** the stage (:class:`UserError`, previous output kept) when a table's quarantined share
   exceeds ``validate.max_quarantine_share``; otherwise write the typed valid rows.

Timestamps: everything is UTC. Naive timestamps are taken as UTC; a column mixing naive and
offset-aware values is accepted and every value converted to UTC. ISO 8601 is parsed first; other
formats are inferred (day-first when that parses more values).

The data horizon is ``data.horizon`` when params fix it (a later time is ``<column> after
horizon``); otherwise it is the latest lead creation or event time that is not in the future,
and a time later than ``now`` (the wall clock) is a ``future timestamp in <column>``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from features import contract
from features.cluster import cluster
from features.errors import UserError
from features.ingest.readers import PASSED_ON, file_kind, find_table_files, read_table_file
from features.params import Params
from features.storage import atomic_directory
from features.validation.checking import merge_failures, validate_table
from features.validation.chunked import TableTyping, type_in_chunks, typing_rules, write_shards
from features.validation.coercion import CoercionNotes, ValidatedTable, coerce, warn_dropped
from features.validation.cross_table import close_times
from features.validation.outputs import (
    arrow_quarantine,
    arrow_valid,
    quarantine_rows,
)
from features.validation.partitioned import by_lead, finish_datasets, validate_by_partition
from features.validation.report import (
    TableSummary,
    ValidationSummary,
    log_summary,
    summarise,
    threshold_failure,
    write_report,
)
from features.validation.suites import (
    SuiteSettings,
    build_suite,
    failures_from_result,
    ge_context,
    run_suite,
)

if TYPE_CHECKING:
    pass


# One logger for the whole stage, named as before the split into modules.
logger = logging.getLogger(__name__)


def _horizon(
    tables: dict[str, ValidatedTable], fixed: dt.datetime | None, now: pd.Timestamp
) -> pd.Timestamp | None:
    """The fixed horizon, or the latest non-future time of leads and events (None: no times)."""
    if fixed is not None:
        return contract.utc(fixed)
    return contract.latest_time({name: item.typed for name, item in tables.items()}, now)


def check_table(
    table: contract.Table,
    frame: pd.DataFrame,
    source: str | Path,
    now: pd.Timestamp | None = None,
    first_row: int = 1,
    example_column: str | None = None,
) -> pd.DataFrame:
    """One table checked on its own with the validate stage's own rules and words (typing per
    the contract, then the table's Great Expectations suite; no cross-table rules): the typed
    frame, or a :class:`UserError` naming the file, the rule (which names the column), the
    count of bad rows and a few of them (numbered from ``first_row``, or named by their
    ``example_column`` value when the frame is not the file's rows in order). For callers that must
    refuse bad input rather than quarantine it, such as batch scoring."""
    source = str(source)
    typed, failures = coerce(table, frame, source)
    settings = SuiteSettings(now=contract.utc(now if now is not None else dt.datetime.now(dt.UTC)))
    result = run_suite(ge_context(), table.name, typed, build_suite(table, settings))
    merge_failures(failures, failures_from_result(result, table.name))
    if failures:
        rule, positions = max(failures.items(), key=lambda item: (len(item[1]), item[0]))
        bad = np.unique(np.concatenate(list(failures.values())))
        if example_column is not None:
            values = typed[example_column].iloc[positions[:5]].astype("string").fillna("null")
            examples = f"{example_column} " + ", ".join(values.tolist())
        else:
            examples = "rows " + ", ".join(str(first_row + int(p)) for p in positions[:5])
        others = f"; {len(bad):,} bad rows in all" if len(bad) > len(positions) else ""
        raise UserError(
            f"{source}: {len(positions):,} of {len(typed):,} rows: {rule} (e.g. {examples}){others}"
        )
    return typed


def _table_files(raw: Path) -> dict[str, Path]:
    files = find_table_files(raw)
    if "leads" not in files:
        raise UserError(
            f"{raw}: no leads table (leads.parquet, leads.csv or leads.csv.gz); it is required"
        )
    return files


def read_raw(raw: Path, files: dict[str, Path] | None = None) -> dict[str, ValidatedTable]:
    """The canonical tables in ``raw`` (or only ``files``), read and typed per the contract
    (not yet validated)."""
    tables: dict[str, ValidatedTable] = {}
    for name, path in (files if files is not None else _table_files(raw)).items():
        spec = contract.TABLES[name]
        frame = read_table_file(path)
        notes = CoercionNotes()
        typed, failures = coerce(spec, frame, source=path, notes=notes)
        tables[name] = ValidatedTable(spec, path, frame, typed, failures, notes)
    return tables


def _settings(params: Params, now: pd.Timestamp, horizon: pd.Timestamp | None) -> SuiteSettings:
    return SuiteSettings(
        now=now,
        horizon=horizon if params.data.horizon is not None else None,
        tolerance_seconds=params.validate_.time_tolerance_seconds,
    )


def _summary(
    tables: dict[str, TableSummary],
    horizon: pd.Timestamp | None,
    params: Params,
    now: pd.Timestamp,
    report: Path,
    ge_seconds: float,
) -> ValidationSummary:
    summary = ValidationSummary(
        tables=tables,
        horizon=horizon.isoformat() if horizon is not None else None,
        horizon_fixed=params.data.horizon is not None,
        now=now.isoformat(),
        max_quarantine_share=params.validate_.max_quarantine_share,
        ge_seconds=ge_seconds,
    )
    summary.failure = threshold_failure(summary, report)
    summary.passed = summary.failure is None
    return summary


def validate_tables(
    tables: dict[str, ValidatedTable], params: Params, now: pd.Timestamp, report: Path
) -> ValidationSummary:
    """Validate every table in this process; fills each table's failures and quarantine."""
    horizon = _horizon(tables, params.data.horizon, now)
    settings = _settings(params, now, horizon)
    context = ge_context()
    ge_seconds = 0.0
    close: np.ndarray | None = None
    for name, item in tables.items():  # dependency order: leads before their events
        if name in contract.EVENT_TABLES and close is None:
            close = close_times(tables, settings)
        ge_seconds += validate_table(item, tables, settings, context, close)
    summaries = {
        name: summarise(item, params.validate_.example_ids) for name, item in tables.items()
    }
    return _summary(summaries, horizon, params, now, report, ge_seconds)


def _write_single(staging: Path, name: str, item: ValidatedTable) -> None:
    pq.write_table(arrow_valid(item), staging / f"{name}.parquet", compression="zstd")
    quarantine = arrow_quarantine(quarantine_rows(item))
    pq.write_table(quarantine, staging / "quarantine" / f"{name}.parquet", compression="zstd")


def _pass_on(raw: Path, staging: Path) -> None:
    for side in sorted(PASSED_ON):
        if (raw / side).is_file():
            shutil.copy2(raw / side, staging / side)


def _finish(summary: ValidationSummary, started: float, out: Path) -> ValidationSummary:
    summary.seconds = time.perf_counter() - started
    logger.info(
        "validated %s rows in %.1f s (%.1f s in Great Expectations) into %s",
        f"{summary.rows_in:,}",
        summary.seconds,
        summary.ge_seconds,
        out,
    )
    return summary


def validate_directory(
    raw: Path,
    out: Path,
    report: Path,
    params: Params,
    now: dt.datetime | None = None,
) -> ValidationSummary:
    """Validate the canonical tables in ``raw``; write valid rows to ``out``, quarantined rows to
    ``out/quarantine``, and the report (summary.json, Data Docs) to ``report``.

    Raises :class:`UserError` (one line, ``out`` left as it was) on a table-level failure or when
    a table's quarantined share exceeds ``validate.max_quarantine_share``; the report is written
    in that second case too. Under ``engine.kind: dask`` the lead tables are read, typed and
    validated on the cluster's workers, the same rows, verdict and report.
    """
    started = time.perf_counter()
    raw, out, report = Path(raw), Path(out), Path(report)
    stamp = contract.utc(now if now is not None else dt.datetime.now(dt.UTC))
    if params.engine.kind == "dask":
        return _validate_on_cluster(raw, out, report, params, stamp, started)
    tables = read_raw(raw)
    summary = validate_tables(tables, params, stamp, report)
    summary.seconds = time.perf_counter() - started
    log_summary(summary)
    write_report(report, summary, {name: item.result for name, item in tables.items()})
    if summary.failure is not None:
        raise UserError(summary.failure)
    with atomic_directory(out) as staging:
        (staging / "quarantine").mkdir()
        for name, item in tables.items():
            _write_single(staging, name, item)
        _pass_on(raw, staging)
    return _finish(summary, started, out)


def _typed_in_stage(
    item: ValidatedTable, shards: Path, partitions: int, now: pd.Timestamp
) -> TableTyping:
    """A lead table the stage read (a CSV file) cut into the workers' shards."""
    write_shards(item, shards, 0, 0, partitions)
    return TableTyping(
        item.spec.name,
        item.path,
        len(item.typed),
        dataclasses.replace(item.notes, failed_columns={}),
        typing_rules(item.spec, set(item.failures)),
        contract.latest_time({item.spec.name: item.typed}, now),
    )


def _validate_on_cluster(
    raw: Path, out: Path, report: Path, params: Params, now: pd.Timestamp, started: float
) -> ValidationSummary:
    """The lead tables typed in chunks and validated by lead partition on the cluster, the
    small parent tables here; the valid rows written by the partitions' tasks."""
    files = _table_files(raw)
    chunked = {
        name: path for name, path in files.items() if by_lead(name) and file_kind(path) == "parquet"
    }
    tables = read_raw(raw, {name: path for name, path in files.items() if name not in chunked})
    partitions = params.engine.partitions
    out.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        client = stack.enter_context(cluster(params.engine, "validate"))
        # The workers read and write beside the output (a cluster's workers must reach the data
        # directory anyway).
        shards = Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix=".validate-", dir=out.parent))
        )
        typed = type_in_chunks(chunked, client, now, partitions, shards)
        for name in list(tables):
            if by_lead(name):
                typed[name] = _typed_in_stage(tables.pop(name), shards, partitions, now)
        typing = {name: typed[name] for name in files if name in typed}
        for name, table in typing.items():
            if name in chunked and table.notes.dropped:
                warn_dropped(table.path, name, table.notes.dropped)
        horizon = contract.utc(params.data.horizon) if params.data.horizon is not None else None
        if horizon is None:
            latest = [table.latest for table in typing.values() if table.latest is not None]
            horizon = contract.utc(max(latest)) if latest else None
        settings = _settings(params, now, horizon)
        context = ge_context()
        ge_seconds = sum(
            validate_table(item, tables, settings, context) for item in tables.values()
        )
        staging = Path(stack.enter_context(atomic_directory(out)))
        (staging / "quarantine").mkdir()
        found = validate_by_partition(
            typing,
            tables,
            settings,
            client,
            partitions,
            shards,
            staging,
            params.validate_.example_ids,
        )
        summaries = {
            name: found.summaries[name]
            if name in found.summaries
            else summarise(tables[name], params.validate_.example_ids)
            for name in files
        }
        summary = _summary(summaries, horizon, params, now, report, ge_seconds + found.ge_seconds)
        summary.seconds = time.perf_counter() - started
        log_summary(summary)
        results = {
            name: found.results[name] if name in found.results else tables[name].result
            for name in files
        }
        write_report(report, summary, results)
        if summary.failure is not None:
            raise UserError(summary.failure)  # the staging output is discarded
        for name, item in tables.items():
            _write_single(staging, name, item)
        finish_datasets(staging, found, partitions)
        _pass_on(raw, staging)
    return _finish(summary, started, out)
