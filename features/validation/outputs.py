"""What validation writes of a table: its valid rows typed per the contract's Arrow schema, and
its quarantined rows as read with their row numbers and the rules they failed (shared by the
local stage and the per-partition tasks of a Dask cluster)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from features.validation.coercion import ValidatedTable, mask_positions
from features.validation.rules import RowFailures

REASON_COLUMN = "quarantine_reason"
"""Rule names joined by "; " (not ``reason``: sales_events has a canonical ``reason`` column)."""
ROW_COLUMN = "source_row"
"""1-based data row of the input file (a CSV's line number minus one for the header)."""


def latest_valid(item: ValidatedTable) -> pd.Timestamp | None:
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


def arrow_valid(item: ValidatedTable) -> pa.Table:
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


def quarantine_rows(item: ValidatedTable, rows: np.ndarray | None = None) -> pd.DataFrame:
    """The quarantined rows as read, numbered by ``rows`` (the file's row of each of the
    table's rows; None: the table is the file), with the rules they failed."""
    positions = mask_positions(item.quarantined)
    quarantined = item.raw.iloc[positions].reset_index(drop=True)
    reasons = _reasons(item.failures)
    quarantined[ROW_COLUMN] = (positions if rows is None else rows[positions]) + 1
    quarantined[REASON_COLUMN] = reasons.reindex(positions).to_numpy()
    return quarantined


def arrow_quarantine(rows: pd.DataFrame) -> pa.Table:
    """:func:`quarantine_rows` as Arrow (as text when the values do not convert)."""
    try:
        return pa.Table.from_pandas(rows, preserve_index=False)
    except (pa.ArrowException, TypeError, ValueError):
        return pa.Table.from_pandas(rows.astype("str"), preserve_index=False)
