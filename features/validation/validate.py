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
import datetime as dt
import logging
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features import contract
from features.cluster import cluster
from features.errors import UserError
from features.ingest.readers import PASSED_ON, find_table_files, read_table_file
from features.params import Params
from features.partitions import write_dataset
from features.storage import atomic_directory
from features.validation.checking import merge_failures, validate_table
from features.validation.coercion import CoercionNotes, ValidatedTable, coerce, mask_positions
from features.validation.cross_table import close_times
from features.validation.partitioned import by_lead, validate_by_partition
from features.validation.report import (
    ValidationSummary,
    log_summary,
    summarise,
    threshold_failure,
    write_report,
)
from features.validation.rules import RowFailures
from features.validation.suites import (
    SuiteSettings,
    build_suite,
    failures_from_result,
    ge_context,
    run_suite,
)

if TYPE_CHECKING:
    from distributed import Client


# One logger for the whole stage, named as before the split into modules.
logger = logging.getLogger(__name__)

REASON_COLUMN = "quarantine_reason"
"""Rule names joined by "; " (not ``reason``: sales_events has a canonical ``reason`` column)."""
ROW_COLUMN = "source_row"
"""1-based data row of the input file (a CSV's line number minus one for the header)."""


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


def _latest(item: ValidatedTable) -> pd.Timestamp | None:
    """The latest time of the table's valid rows (what the data horizon is derived from)."""
    column = item.spec.time_column
    if column is None:
        return None
    latest = item.typed[column][~item.quarantined].max() if len(item.typed) else None
    return None if latest is None or pd.isna(latest) else pd.Timestamp(latest)


def _reasons(failures: RowFailures) -> pd.Series:
    """Failing position → rule names joined by "; " (in the order the rules were checked)."""
    parts = [pd.Series(rule, index=positions) for rule, positions in failures.items()]
    if not parts:
        return pd.Series(dtype="str")
    joined = pd.concat(parts).groupby(level=0, sort=True).agg("; ".join)
    return joined.astype("str")


def _arrow_valid(item: ValidatedTable) -> pa.Table:
    """Valid rows typed per the contract's Arrow schema, extra columns after them."""
    spec = item.spec
    schema = spec.arrow_schema()
    loose = pa.schema([field.with_nullable(True) for field in schema])
    table = pa.Table.from_pandas(
        item.typed[list(spec.column_names)], schema=loose, preserve_index=False
    )
    for name in item.typed.columns:
        if name in spec.column_names:
            continue
        values = pa.array(item.typed[name], from_pandas=True)
        if pa.types.is_large_string(values.type):
            values = values.cast(pa.string())
        table = table.append_column(name, values)
    if item.quarantined.any():
        table = table.filter(pa.array(~item.quarantined))
    fields = list(schema) + [table.schema.field(name) for name in table.column_names[len(schema) :]]
    return table.cast(pa.schema(fields))


def _arrow_quarantine(item: ValidatedTable) -> pa.Table:
    positions = mask_positions(item.quarantined)
    rows = item.raw.iloc[positions].reset_index(drop=True)
    reasons = _reasons(item.failures)
    rows[ROW_COLUMN] = positions + 1
    rows[REASON_COLUMN] = reasons.reindex(positions).to_numpy()
    try:
        return pa.Table.from_pandas(rows, preserve_index=False)
    except (pa.ArrowException, TypeError, ValueError):
        return pa.Table.from_pandas(rows.astype("str"), preserve_index=False)


def read_raw(raw: Path) -> dict[str, ValidatedTable]:
    """The canonical tables in ``raw``, read and typed per the contract (not yet validated)."""
    files = find_table_files(raw)
    if "leads" not in files:
        raise UserError(
            f"{raw}: no leads table (leads.parquet, leads.csv or leads.csv.gz); it is required"
        )
    tables: dict[str, ValidatedTable] = {}
    for name, path in files.items():
        spec = contract.TABLES[name]
        frame = read_table_file(path)
        notes = CoercionNotes()
        typed, failures = coerce(spec, frame, source=path, notes=notes)
        tables[name] = ValidatedTable(spec, path, frame, typed, failures, notes)
    return tables


def validate_tables(
    tables: dict[str, ValidatedTable],
    params: Params,
    now: pd.Timestamp,
    report: Path,
    client: Client | None = None,
    workdir: Path | None = None,
) -> ValidationSummary:
    """Validate every table (with ``client``: the lead tables per lead partition on its Dask
    cluster, the same verdict and rows); fills each table's failures and quarantine."""
    horizon = _horizon(tables, params.data.horizon, now)
    settings = SuiteSettings(
        now=now,
        horizon=horizon if params.data.horizon is not None else None,
        tolerance_seconds=params.validate_.time_tolerance_seconds,
    )
    context = ge_context()
    ge_seconds = 0.0
    close: np.ndarray | None = None
    for name, item in tables.items():  # dependency order: leads before their events
        if client is not None and by_lead(name):
            continue  # below, on the cluster, once their parents are done
        if name in contract.EVENT_TABLES and close is None:
            close = close_times(tables, settings)
        ge_seconds += validate_table(item, tables, settings, context, close)
    if client is not None:
        ge_seconds += validate_by_partition(
            tables, settings, client, params.engine.partitions, workdir
        )
    summary = ValidationSummary(
        tables={
            name: summarise(item, params.validate_.example_ids) for name, item in tables.items()
        },
        horizon=horizon.isoformat() if horizon is not None else None,
        horizon_fixed=params.data.horizon is not None,
        now=now.isoformat(),
        max_quarantine_share=params.validate_.max_quarantine_share,
        ge_seconds=ge_seconds,
    )
    summary.failure = threshold_failure(summary, report)
    summary.passed = summary.failure is None
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
    in that second case too.
    """
    started = time.perf_counter()
    raw, out, report = Path(raw), Path(out), Path(report)
    stamp = contract.utc(now if now is not None else dt.datetime.now(dt.UTC))
    tables = read_raw(raw)
    partitions = params.engine.partitions if params.engine.kind == "dask" else None
    out.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        # The workers read their partitions from beside the output (a cluster's workers must
        # reach the data directory anyway).
        client = stack.enter_context(cluster(params.engine, "validate")) if partitions else None
        summary = validate_tables(tables, params, stamp, report, client, workdir=out.parent)
    summary.seconds = time.perf_counter() - started
    log_summary(summary)
    write_report(report, summary, tables)
    if summary.failure is not None:
        raise UserError(summary.failure)
    with atomic_directory(out) as staging:
        quarantine = staging / "quarantine"
        quarantine.mkdir()
        for name, item in tables.items():
            valid = _arrow_valid(item)
            if partitions is not None and by_lead(name):
                write_dataset(staging / name, valid, partitions, _latest(item))
            else:
                pq.write_table(valid, staging / f"{name}.parquet", compression="zstd")
            pq.write_table(
                _arrow_quarantine(item), quarantine / f"{name}.parquet", compression="zstd"
            )
        for side in sorted(PASSED_ON):
            if (raw / side).is_file():
                shutil.copy2(raw / side, staging / side)
    summary.seconds = time.perf_counter() - started
    logger.info(
        "validated %s rows in %.1f s (%.1f s in Great Expectations) into %s",
        f"{summary.rows_in:,}",
        summary.seconds,
        summary.ge_seconds,
        out,
    )
    return summary
