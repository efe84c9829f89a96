"""Coercion: a file's columns typed to the contract's kinds (:func:`coerce`), leniently.

Values that cannot be typed are row failures (``unparseable timestamp in <column>``, ``not a
number in <column>``); a column none of whose values can be typed and a missing required
column are table-level failures (:class:`UserError`). Also :class:`ValidatedTable`, one table
of the stage: read, typed, then validated.
"""

from __future__ import annotations

import logging
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features import contract
from features.contract import Kind
from features.errors import UserError
from features.validation.rules import RowFailures, rule_not_a_number, rule_unparseable

# One logger for the whole stage, named as before the split into modules.
logger = logging.getLogger(__name__)

NULL_TOKENS = frozenset({"nan", "null", "none", "na", "n/a", "#n/a", "nat", "<na>"})
"""Text that means "no value" in a number or timestamp column (not in text columns: NA is
Namibia's country code)."""


@dataclass
class CoercionNotes:
    """What :func:`coerce` fixed or dropped without quarantining anything."""

    normalised: dict[str, int] = field(default_factory=dict)
    """Column → values changed by normalisation (surrounding spaces; case of lowercase columns)."""
    renamed: dict[str, str] = field(default_factory=dict)
    """File header → canonical column, when they differ only in case or spaces."""
    dropped: list[str] = field(default_factory=list)
    """Extra columns dropped (tables that do not allow extra columns)."""
    added: list[str] = field(default_factory=list)
    """Nullable canonical columns absent from the file, added as nulls."""
    failed_columns: dict[str, np.ndarray] = field(default_factory=dict)
    """Column → positions whose value could not be typed."""


@dataclass(frozen=True)
class ColumnDecision:
    """What typing decides over a whole column, so that chunks of a file typed apart (on a
    cluster's workers) are typed as the one file would be. None: decide from the values."""

    whole: bool | None = None
    """A text column read as floats: every value is a whole number (then "12", not "12.0")."""
    first: str | None = None
    """A timestamp column: its first value that is not ISO 8601 (pandas infers the format of
    every such value from it)."""
    dayfirst: bool | None = None
    """A timestamp column: its non-ISO values are read day first (more of them parse)."""


@dataclass
class ColumnStats:
    """One chunk's view of a column: what it decided alone, what it used, the counts the
    whole column's decisions are made from."""

    used: ColumnDecision = field(default_factory=ColumnDecision)
    own_whole: bool | None = None
    own_first: str | None = None
    formats: tuple[str | None, str | None] | None = None
    """The formats the chunk's non-ISO values were parsed with (inferred from ``used.first``),
    month first and day first."""
    counts: tuple[int, int] = (0, 0)
    """Non-ISO values parsed month first and day first (with ``used.first``'s format)."""
    nonnull: int = 0
    typed: int = 0
    example: str | None = None
    what: str = ""
    """What a value should be (``"a number"``…), for the error refusing the column."""
    mistyped: str | None = None
    """What a value should be (``"a number (type bool)"``…) when the chunk's type cannot be."""


def inferred_formats(first: str | None) -> tuple[str | None, str | None] | None:
    """The formats pandas infers from ``first``, month first and day first (None: no value)."""
    if first is None:
        return None
    from pandas.tseries.api import guess_datetime_format

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return guess_datetime_format(first, dayfirst=False), guess_datetime_format(
            first, dayfirst=True
        )


def _is_text(series: pd.Series) -> bool:
    return isinstance(series.dtype, pd.StringDtype) or series.dtype == object


def arrow(series: pd.Series) -> pa.Array | pa.ChunkedArray:
    return pa.array(
        series.astype("str") if not isinstance(series.dtype, pd.StringDtype) else series
    )


def _from_arrow(values: pa.Array | pa.ChunkedArray) -> pd.Series:
    return pd.Series(values.to_pandas(), dtype="str").reset_index(drop=True)


def _text(series: pd.Series) -> pd.Series:
    """Text with surrounding spaces removed; empty strings and null tokens become null."""
    text = series.astype("str").str.strip()
    return text.mask(text.str.casefold().isin(NULL_TOKENS) | (text == ""))


def mistyped_error(source: str, name: str, what: str, count: int, example: Any) -> UserError:
    """A column none of whose ``count`` values is ``what``: the one line refusing its file."""
    return UserError(
        f"{source}: column '{name}' is mistyped: none of its {count:,} "
        f"values is {what} (e.g. {str(example)[:40]!r})"
    )


def _mistyped(source: str, name: str, what: str, values: pd.Series) -> UserError:
    example = values.dropna().iloc[0] if values.notna().any() else None
    return mistyped_error(source, name, what, int(values.notna().sum()), example)


def mask_positions(mask: pd.Series | np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.asarray(mask, dtype=bool)).astype(np.int64)


def coerce_strings(
    raw: pd.Series,
    column: contract.Column,
    notes: CoercionNotes,
    decision: ColumnDecision | None = None,
    stats: ColumnStats | None = None,
) -> pd.Series:
    """Text: surrounding spaces stripped, empty → null, lowercase columns lowered."""
    if pd.api.types.is_float_dtype(raw.dtype):  # ids read as floats: 12.0 → "12"
        values = raw.dropna()
        own = bool(((values == np.floor(values)) & (values.abs() < 2**53)).all())
        whole = decision.whole if decision is not None and decision.whole is not None else own
        if stats is not None:
            stats.own_whole = own
            stats.used = ColumnDecision(whole=whole)
        if whole:
            raw = raw.astype("Int64")
    if not isinstance(raw.dtype, pd.StringDtype):
        raw = raw.astype("str")
    values = arrow(raw)
    clean = pc.utf8_trim_whitespace(values)
    if column.lowercase:
        clean = pc.utf8_lower(clean)
    blank = pc.equal(clean, "")
    changed = pc.sum(pc.and_(pc.not_equal(values, clean), pc.invert(blank))).as_py() or 0
    empty = pc.sum(blank).as_py() or 0
    if not changed and not empty:
        return raw.reset_index(drop=True)
    if empty:
        clean = pc.if_else(blank, pa.scalar(None, clean.type), clean)
    if changed:
        notes.normalised[column.name] = int(changed)
    return _from_arrow(clean)


def lenient_timestamps(
    text: pd.Series, decision: ColumnDecision | None = None, stats: ColumnStats | None = None
) -> pd.Series:
    """Text → ``datetime64[us, UTC]``, leniently: NaT where it does not parse (the row is then
    quarantined, where the importer's :func:`~features.ingest.mapping.strict_timestamps` refuses
    the file).

    ISO 8601 first (naive values taken as UTC, offsets converted); the rest with a format
    inferred from the values, day-first when that parses more of them, then value by value.
    ``decision`` imposes the whole column's first non-ISO value (pandas infers the format from
    the first value) and its day-first choice on a chunk of it; ``stats`` receives the chunk's.
    """
    parsed = pd.to_datetime(text, utc=True, format="ISO8601", errors="coerce")
    parsed = parsed.dt.floor("us").dt.as_unit("us")
    left = parsed.isna() & text.notna()
    if not left.any():
        if stats is not None:
            stats.used = decision or ColumnDecision()
        return parsed
    rest = text[left]
    first = decision.first if decision is not None and decision.first is not None else None
    probe = rest
    if first is not None:  # parsed with the format pandas infers from the column's first value
        probe = pd.concat([pd.Series([first], dtype=rest.dtype), rest], ignore_index=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tries = []
        for dayfirst in (False, True):
            guess = pd.to_datetime(probe, utc=True, errors="coerce", dayfirst=dayfirst)
            if first is not None:
                guess = guess.iloc[1:].set_axis(rest.index)
            tries.append((int(guess.notna().sum()), dayfirst, guess))
        if decision is not None and decision.dayfirst is not None:
            count, dayfirst, guess = tries[int(decision.dayfirst)]
        else:
            count, dayfirst, guess = max(tries, key=lambda item: item[0])
        if stats is not None:
            stats.own_first = str(rest.iloc[0])
            stats.formats = inferred_formats(first or stats.own_first)
            stats.counts = (tries[0][0], tries[1][0])
            stats.used = ColumnDecision(first=first or stats.own_first, dayfirst=dayfirst)
        if count < len(rest):
            still = guess.isna()
            mixed = pd.to_datetime(
                rest[still], utc=True, errors="coerce", format="mixed", dayfirst=dayfirst
            )
            guess = guess.astype("datetime64[us, UTC]")
            guess[still] = mixed.astype("datetime64[us, UTC]")
    parsed[left] = guess.dt.floor("us").astype("datetime64[us, UTC]")
    return parsed


def _tally(stats: ColumnStats | None, text: pd.Series, typed: pd.Series, what: str) -> None:
    if stats is None:
        return
    stats.what = what
    stats.nonnull = int(text.notna().sum())
    stats.typed = int(typed.notna().sum())
    stats.example = str(text.dropna().iloc[0]) if stats.nonnull else None


def _mistyped_type(
    stats: ColumnStats | None, source: str, name: str, what: str, values: pd.Series
) -> UserError | None:
    """A column whose type cannot be typed: the error, or (a chunk) recorded in ``stats``."""
    if stats is None:
        return _mistyped(source, name, what, values)
    stats.mistyped = what
    stats.nonnull = int(values.notna().sum())
    stats.example = str(values.dropna().iloc[0]) if stats.nonnull else None
    return None


def coerce_timestamps(
    raw: pd.Series,
    column: contract.Column,
    source: str,
    decision: ColumnDecision | None = None,
    stats: ColumnStats | None = None,
) -> tuple[pd.Series, np.ndarray]:
    """(``stats``: a chunk of the column, typed per ``decision``; a column none of whose values
    types is then the caller's to refuse, from every chunk's counts.)"""
    if isinstance(raw.dtype, pd.DatetimeTZDtype):
        typed = raw.dt.tz_convert("UTC")
    elif pd.api.types.is_datetime64_dtype(raw.dtype):
        typed = raw.dt.tz_localize("UTC")
    elif _is_text(raw):
        text = _text(raw)
        typed = lenient_timestamps(text, decision, stats)
        bad = typed.isna() & text.notna()
        _tally(stats, text, typed, "a timestamp")
        if stats is None and bad.any() and not typed.notna().any():
            raise _mistyped(source, column.name, "a timestamp", text)
        return typed.reset_index(drop=True), mask_positions(bad)
    elif raw.isna().all():
        typed = pd.Series(pd.NaT, index=raw.index, dtype="datetime64[us, UTC]")
    else:
        error = _mistyped_type(stats, source, column.name, f"a timestamp (type {raw.dtype})", raw)
        if error is not None:
            raise error
        typed = pd.Series(pd.NaT, index=raw.index, dtype="datetime64[us, UTC]")
    typed = typed.dt.floor("us").astype("datetime64[us, UTC]")
    return typed.reset_index(drop=True), np.empty(0, dtype=np.int64)


_GROUPED_COMMAS = re.compile(r"^[+-]?\d{1,3}(,\d{3})+(\.\d*)?$")
_SPACES = re.compile(r"[\s_'\u00a0\u2009\u202f]")


def lenient_numbers(text: pd.Series) -> pd.Series:
    """Text → float64, leniently: NaN where it does not parse (quarantined). Digit-group
    separators are accepted: spaces, ``_`` and ``'`` anywhere, ``,`` only in groups of three
    before an optional ``.`` (``1,234.50``); a decimal comma (``1234,5``) is ambiguous and does
    not parse."""
    parsed = pd.to_numeric(text, errors="coerce").astype("float64")
    left = parsed.isna() & text.notna()
    if left.any():
        rest = text[left].str.replace(_SPACES, "", regex=True)
        grouped = rest.str.match(_GROUPED_COMMAS).fillna(False).astype(bool)
        rest = rest.where(~grouped, rest.str.replace(",", "", regex=False))
        parsed[left] = pd.to_numeric(rest, errors="coerce").astype("float64")
    parsed[np.isinf(parsed.to_numpy())] = np.nan
    return parsed


def coerce_floats(
    raw: pd.Series, column: contract.Column, source: str, stats: ColumnStats | None = None
) -> tuple[pd.Series, np.ndarray]:
    if pd.api.types.is_numeric_dtype(raw.dtype) or pd.api.types.is_bool_dtype(raw.dtype):
        typed = raw.astype("float64")
        bad = np.isinf(typed.to_numpy())
        typed[bad] = np.nan
        return typed.reset_index(drop=True), mask_positions(bad)
    if not _is_text(raw) and not raw.isna().all():
        error = _mistyped_type(stats, source, column.name, f"a number (type {raw.dtype})", raw)
        if error is not None:
            raise error
        typed = pd.Series(np.nan, index=pd.RangeIndex(len(raw)), dtype="float64")
        return typed, np.empty(0, dtype=np.int64)
    text = _text(raw)
    typed = lenient_numbers(text)
    bad = typed.isna() & text.notna()
    _tally(stats, text, typed, "a number")
    if stats is None and bad.any() and not typed.notna().any():
        raise _mistyped(source, column.name, "a number", text)
    return typed.reset_index(drop=True), mask_positions(bad)


def _null_column(column: contract.Column, rows: int) -> pd.Series:
    if column.kind is Kind.TIMESTAMP:
        return pd.Series(pd.NaT, index=pd.RangeIndex(rows), dtype="datetime64[us, UTC]")
    if column.kind is Kind.FLOAT:
        return pd.Series(np.nan, index=pd.RangeIndex(rows), dtype="float64")
    return pd.Series(pd.NA, index=pd.RangeIndex(rows), dtype="str")


def _match_headers(
    table: contract.Table, frame: pd.DataFrame, notes: CoercionNotes
) -> pd.DataFrame:
    """Accept headers that differ from the contract's only in case or surrounding spaces
    (:func:`contract.canonical_name`, the rule the importers and the engine apply too). A
    header already exactly canonical wins over a look-alike, which stays an extra column."""
    renames = contract.canonical_renames(frame.columns, table)
    if renames:
        notes.renamed.update({str(k): v for k, v in renames.items()})
        frame = frame.rename(columns=renames)
    return frame


def _missing_column(source: str, name: str, frame: pd.DataFrame) -> UserError:
    message = f"{source}: missing required column '{name}'"
    columns = [str(column) for column in frame.columns]
    if len(columns) == 1 and any(sep in columns[0] for sep in ",;\t|:"):
        message += f" (the header is one column {columns[0][:60]!r}: wrong delimiter?)"
    else:
        shown = ", ".join(columns[:12]) + (", …" if len(columns) > 12 else "")
        message += f" (columns: {shown})"
    return UserError(message)


def warn_dropped(source: str | Path, table: str, columns: list[str]) -> None:
    """The one warning for extra columns a table that allows none had in its file."""
    logger.warning(
        "%s: extra columns dropped (%s allows none): %s", source, table, ", ".join(columns)
    )


def coerce(
    table: contract.Table,
    frame: pd.DataFrame,
    source: str | Path = "",
    notes: CoercionNotes | None = None,
    decisions: dict[str, ColumnDecision] | None = None,
    stats: dict[str, ColumnStats] | None = None,
) -> tuple[pd.DataFrame, RowFailures]:
    """Type ``frame``'s columns per the contract; return the typed frame and row failures.

    The typed frame has a ``RangeIndex`` (positions of the input rows), every canonical column
    (absent nullable ones added as nulls) and, on tables that allow them, the extra columns
    unchanged. Raises :class:`UserError` for a missing required column or a column none of whose
    values can be typed.

    A chunk of a file (``stats`` given, filled per column): typed with the whole column's
    ``decisions``, and a column none of whose values types is not refused here but counted
    (:mod:`features.validation.chunked` refuses it from every chunk's counts).
    """
    source = str(source) or table.name
    notes = notes if notes is not None else CoercionNotes()
    frame = _match_headers(table, frame.reset_index(drop=True), notes)
    for name in table.required_columns:
        if name not in frame.columns:
            raise _missing_column(source, name, frame)
    rows = len(frame)
    failures: RowFailures = {}
    columns: dict[str, pd.Series] = {}
    for column in table.columns:
        if column.name not in frame.columns:
            notes.added.append(column.name)
            columns[column.name] = _null_column(column, rows)
            continue
        raw = frame[column.name]
        decision = (decisions or {}).get(column.name)
        column_stats = None
        if stats is not None:
            column_stats = stats[column.name] = ColumnStats()
        if column.kind is Kind.STRING:
            columns[column.name] = coerce_strings(raw, column, notes, decision, column_stats)
            continue
        if column.kind is Kind.TIMESTAMP:
            typed, bad = coerce_timestamps(raw, column, source, decision, column_stats)
            rule = rule_unparseable(column.name)
        else:
            typed, bad = coerce_floats(raw, column, source, column_stats)
            rule = rule_not_a_number(column.name)
        columns[column.name] = typed
        if len(bad):
            failures[rule] = bad
            notes.failed_columns[column.name] = bad
    extras = [str(name) for name in frame.columns if name not in table.column_names]
    if extras and not table.extra_columns_allowed:
        notes.dropped.extend(extras)
        if stats is None:  # a chunk's: the stage warns once for the file
            warn_dropped(source, table.name, extras)
    elif extras:
        for name in extras:
            columns[name] = frame[name].reset_index(drop=True)
    typed_frame = pd.DataFrame(columns, index=pd.RangeIndex(rows), copy=False)
    return typed_frame, failures


@dataclass
class ValidatedTable:
    """One table of the stage (its spec is a :class:`contract.Table`): the file's rows as read,
    typed by :func:`coerce`, and what validation found (filled in by the stage)."""

    spec: contract.Table
    path: Path
    raw: pd.DataFrame
    typed: pd.DataFrame
    failures: RowFailures
    notes: CoercionNotes
    quarantined: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    result: Any = None
