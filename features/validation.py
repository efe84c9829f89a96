"""The validation stage: Great Expectations suites generated from the data contract, quarantine.

Steps, per table in dependency order (parents before children):

1. **Read** the file (:mod:`features.ingest.readers`) and **coerce** its columns to the
   contract's kinds (:func:`coerce`). Values that cannot be typed are row failures
   (``unparseable timestamp in <column>``, ``not a number in <column>``); a column none of
   whose values can be typed, a missing required column, an unreadable, empty or header-only
   file are table-level failures.
2. **Validate** with one GE ``ExpectationSuite`` per table, built from
   ``contract.TABLES[...].columns`` (:func:`build_suite`): not null, unique, value in a closed
   vocabulary, minimum, one column not before another, and the cross-table rules, which are
   validated by GE on columns derived by joining the parent tables (foreign keys, not before the
   lead's creation, no event after the lead's won/lost, not after the horizon / not in the future).
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

import datetime as dt
import functools
import html
import json
import logging
import re
import shutil
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from features import contract
from features.contract import Kind
from features.errors import UserError
from features.ingest.readers import PASSED_ON, find_table_files, read_table_file
from features.params import Params
from features.storage import atomic_directory

if TYPE_CHECKING:
    from great_expectations.core import ExpectationSuite, ExpectationSuiteValidationResult
    from great_expectations.data_context import AbstractDataContext

logger = logging.getLogger(__name__)

RowFailures = dict[str, np.ndarray]
"""Rule name → sorted positions (0-based rows of the input file) failing it."""

"""Files of the raw directory copied unchanged into the validated one (other stages read them)."""
REASON_COLUMN = "quarantine_reason"
"""Rule names joined by "; " (not ``reason``: sales_events has a canonical ``reason`` column)."""
ROW_COLUMN = "source_row"
"""1-based data row of the input file (a CSV's line number minus one for the header)."""
NULL_TOKENS = frozenset({"nan", "null", "none", "na", "n/a", "#n/a", "nat", "<na>"})
"""Text that means "no value" in a number or timestamp column (not in text columns: NA is
Namibia's country code)."""

# ----------------------------------------------------------------------------- rule names
DUPLICATE_ID = "duplicate id"
AFTER_CLOSE = "occurred_at after lead won/lost"


def rule_missing(column: str) -> str:
    return f"missing {column}"


def rule_duplicate(table: contract.Table, column: str) -> str:
    return DUPLICATE_ID if column == table.key else f"duplicate {column}"


def rule_not_allowed(column: str) -> str:
    return f"unknown {column}"


def rule_below_min(column: str, minimum: float) -> str:
    return f"negative {column}" if minimum == 0 else f"{column} below {minimum:g}"


def rule_before_column(column: str, other: str) -> str:
    return f"{column} before {other}"


def rule_unknown_reference(column: str, table: str) -> str:
    return f"{column} not in {table}"


def rule_parent_quarantined(table: str) -> str:
    key = contract.TABLES[table].key or table
    return f"parent {key.removesuffix('_id')} quarantined"


def rule_before_lead_created(column: str) -> str:
    return f"{column} before lead created_at"


def rule_after_horizon(column: str) -> str:
    return f"{column} after horizon"


def rule_future(column: str) -> str:
    return f"future timestamp in {column}"


def rule_unparseable(column: str) -> str:
    return f"unparseable timestamp in {column}"


def rule_not_a_number(column: str) -> str:
    return f"not a number in {column}"


# ----------------------------------------------------------------------------- coercion
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


def _is_text(series: pd.Series) -> bool:
    return isinstance(series.dtype, pd.StringDtype) or series.dtype == object


def _arrow(series: pd.Series) -> pa.Array | pa.ChunkedArray:
    return pa.array(
        series.astype("str") if not isinstance(series.dtype, pd.StringDtype) else series
    )


def _from_arrow(values: pa.Array | pa.ChunkedArray) -> pd.Series:
    return pd.Series(values.to_pandas(), dtype="str").reset_index(drop=True)


def _text(series: pd.Series) -> pd.Series:
    """Text with surrounding spaces removed; empty strings and null tokens become null."""
    text = series.astype("str").str.strip()
    return text.mask(text.str.casefold().isin(NULL_TOKENS) | (text == ""))


def _mistyped(source: str, name: str, what: str, values: pd.Series) -> UserError:
    example = values.dropna().iloc[0] if values.notna().any() else None
    return UserError(
        f"{source}: column '{name}' is mistyped: none of its {int(values.notna().sum()):,} "
        f"values is {what} (e.g. {str(example)[:40]!r})"
    )


def _positions(mask: pd.Series | np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.asarray(mask, dtype=bool)).astype(np.int64)


def coerce_strings(raw: pd.Series, column: contract.Column, notes: CoercionNotes) -> pd.Series:
    """Text: surrounding spaces stripped, empty → null, lowercase columns lowered."""
    if pd.api.types.is_float_dtype(raw.dtype):  # ids read as floats: 12.0 → "12"
        whole = raw.dropna()
        if bool(((whole == np.floor(whole)) & (whole.abs() < 2**53)).all()):
            raw = raw.astype("Int64")
    if not isinstance(raw.dtype, pd.StringDtype):
        raw = raw.astype("str")
    values = _arrow(raw)
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


def lenient_timestamps(text: pd.Series) -> pd.Series:
    """Text → ``datetime64[us, UTC]``, leniently: NaT where it does not parse (the row is then
    quarantined, where the importer's :func:`~features.ingest.importers.strict_timestamps` refuses
    the file).

    ISO 8601 first (naive values taken as UTC, offsets converted); the rest with a format
    inferred from the values, day-first when that parses more of them, then value by value.
    """
    parsed = pd.to_datetime(text, utc=True, format="ISO8601", errors="coerce")
    parsed = parsed.dt.floor("us").dt.as_unit("us")
    left = parsed.isna() & text.notna()
    if not left.any():
        return parsed
    rest = text[left]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tries = []
        for dayfirst in (False, True):
            guess = pd.to_datetime(rest, utc=True, errors="coerce", dayfirst=dayfirst)
            tries.append((int(guess.notna().sum()), dayfirst, guess))
        count, dayfirst, guess = max(tries, key=lambda item: item[0])
        if count < len(rest):
            still = guess.isna()
            mixed = pd.to_datetime(
                rest[still], utc=True, errors="coerce", format="mixed", dayfirst=dayfirst
            )
            guess = guess.astype("datetime64[us, UTC]")
            guess[still] = mixed.astype("datetime64[us, UTC]")
    parsed[left] = guess.dt.floor("us").astype("datetime64[us, UTC]")
    return parsed


def coerce_timestamps(
    raw: pd.Series, column: contract.Column, source: str
) -> tuple[pd.Series, np.ndarray]:
    if isinstance(raw.dtype, pd.DatetimeTZDtype):
        typed = raw.dt.tz_convert("UTC")
    elif pd.api.types.is_datetime64_dtype(raw.dtype):
        typed = raw.dt.tz_localize("UTC")
    elif _is_text(raw):
        text = _text(raw)
        typed = lenient_timestamps(text)
        bad = typed.isna() & text.notna()
        if bad.any() and not typed.notna().any():
            raise _mistyped(source, column.name, "a timestamp", text)
        return typed.reset_index(drop=True), _positions(bad)
    elif raw.isna().all():
        typed = pd.Series(pd.NaT, index=raw.index, dtype="datetime64[us, UTC]")
    else:
        raise _mistyped(source, column.name, f"a timestamp (type {raw.dtype})", raw)
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
    raw: pd.Series, column: contract.Column, source: str
) -> tuple[pd.Series, np.ndarray]:
    if pd.api.types.is_numeric_dtype(raw.dtype) or pd.api.types.is_bool_dtype(raw.dtype):
        typed = raw.astype("float64")
        bad = np.isinf(typed.to_numpy())
        typed[bad] = np.nan
        return typed.reset_index(drop=True), _positions(bad)
    if not _is_text(raw) and not raw.isna().all():
        raise _mistyped(source, column.name, f"a number (type {raw.dtype})", raw)
    text = _text(raw)
    typed = lenient_numbers(text)
    bad = typed.isna() & text.notna()
    if bad.any() and not typed.notna().any():
        raise _mistyped(source, column.name, "a number", text)
    return typed.reset_index(drop=True), _positions(bad)


def _null_column(column: contract.Column, rows: int) -> pd.Series:
    if column.kind is Kind.TIMESTAMP:
        return pd.Series(pd.NaT, index=pd.RangeIndex(rows), dtype="datetime64[us, UTC]")
    if column.kind is Kind.FLOAT:
        return pd.Series(np.nan, index=pd.RangeIndex(rows), dtype="float64")
    return pd.Series(pd.NA, index=pd.RangeIndex(rows), dtype="str")


def _match_headers(
    table: contract.Table, frame: pd.DataFrame, notes: CoercionNotes
) -> pd.DataFrame:
    """Accept headers that differ from the contract's only in case or surrounding spaces."""
    present = set(frame.columns)
    wanted = {name.casefold(): name for name in table.column_names if name not in present}
    renames: dict[Any, str] = {}
    for name in frame.columns:
        canonical = wanted.get(str(name).strip().casefold())
        if canonical is not None and canonical not in renames.values():
            renames[name] = canonical
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


def coerce(
    table: contract.Table,
    frame: pd.DataFrame,
    source: str | Path = "",
    notes: CoercionNotes | None = None,
) -> tuple[pd.DataFrame, RowFailures]:
    """Type ``frame``'s columns per the contract; return the typed frame and row failures.

    The typed frame has a ``RangeIndex`` (positions of the input rows), every canonical column
    (absent nullable ones added as nulls) and, on tables that allow them, the extra columns
    unchanged. Raises :class:`UserError` for a missing required column or a column none of whose
    values can be typed.
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
        if column.kind is Kind.STRING:
            columns[column.name] = coerce_strings(raw, column, notes)
            continue
        if column.kind is Kind.TIMESTAMP:
            typed, bad = coerce_timestamps(raw, column, source)
            rule = rule_unparseable(column.name)
        else:
            typed, bad = coerce_floats(raw, column, source)
            rule = rule_not_a_number(column.name)
        columns[column.name] = typed
        if len(bad):
            failures[rule] = bad
            notes.failed_columns[column.name] = bad
    extras = [str(name) for name in frame.columns if name not in table.column_names]
    if extras and not table.extra_columns_allowed:
        notes.dropped.extend(extras)
        logger.warning(
            "%s: extra columns dropped (%s allows none): %s", source, table.name, ", ".join(extras)
        )
    elif extras:
        for name in extras:
            columns[name] = frame[name].reset_index(drop=True)
    typed_frame = pd.DataFrame(columns, index=pd.RangeIndex(rows), copy=False)
    return typed_frame, failures


# ----------------------------------------------------------------------------- GE suites
@dataclass(frozen=True)
class Derived:
    """A column computed by joining other tables, validated by GE like any other column."""

    column: str
    values: Any
    rule: str
    value_set: tuple[Any, ...] | None = None
    min_value: float | None = None
    max_value: float | None = None


@dataclass(frozen=True)
class SuiteSettings:
    """Values the contract's time rules need: ``horizon`` when params fix it, else ``now``."""

    now: pd.Timestamp
    horizon: pd.Timestamp | None = None
    tolerance_seconds: float = 0.0


def _quiet_gx() -> None:
    """GE logs hundreds of INFO lines while importing; keep its warnings only."""
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    # this one sets its own level (INFO) when imported
    logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.WARNING)


def _expectation(kind: str, rule: str, **kwargs: Any) -> Any:
    _quiet_gx()
    import great_expectations.expectations as gxe

    classes = {
        "not_null": gxe.ExpectColumnValuesToNotBeNull,
        "unique": gxe.ExpectColumnValuesToBeUnique,
        "in_set": gxe.ExpectColumnValuesToBeInSet,
        "between": gxe.ExpectColumnValuesToBeBetween,
        "pair_ge": gxe.ExpectColumnPairValuesAToBeGreaterThanB,
    }
    return classes[kind](meta={"rule": rule}, **kwargs)


def suite_expectations(
    table: contract.Table, settings: SuiteSettings, derived: Sequence[Derived] = ()
) -> list[Any]:
    """The GE expectations of ``table``, each with its rule name in ``meta["rule"]``."""
    expectations = []
    for column in table.columns:
        name = column.name
        if not column.nullable:
            expectations.append(_expectation("not_null", rule_missing(name), column=name))
        if column.unique:
            expectations.append(_expectation("unique", rule_duplicate(table, name), column=name))
        if column.allowed is not None:
            expectations.append(
                _expectation(
                    "in_set",
                    rule_not_allowed(name),
                    column=name,
                    value_set=list(column.allowed),
                )
            )
        if column.min_value is not None:
            expectations.append(
                _expectation(
                    "between",
                    rule_below_min(name, column.min_value),
                    column=name,
                    min_value=column.min_value,
                )
            )
        if column.not_before_column is not None:
            expectations.append(
                _expectation(
                    "pair_ge",
                    rule_before_column(name, column.not_before_column),
                    column_A=name,
                    column_B=column.not_before_column,
                    or_equal=True,
                    ignore_row_if="either_value_is_missing",
                )
            )
        if column.not_after_horizon:
            if settings.horizon is not None:
                bound, rule = settings.horizon, rule_after_horizon(name)
            else:
                bound, rule = settings.now, rule_future(name)
            expectations.append(
                _expectation("between", rule, column=name, max_value=bound.to_pydatetime())
            )
    for item in derived:
        if item.value_set is not None:
            expectations.append(
                _expectation(
                    "in_set", item.rule, column=item.column, value_set=list(item.value_set)
                )
            )
        else:
            expectations.append(
                _expectation(
                    "between",
                    item.rule,
                    column=item.column,
                    min_value=item.min_value,
                    max_value=item.max_value,
                )
            )
    return expectations


def build_suite(
    table: contract.Table, settings: SuiteSettings, derived: Sequence[Derived] = ()
) -> ExpectationSuite:
    """One GE suite for ``table`` generated from the contract, plus derived cross-table columns."""
    _quiet_gx()
    import great_expectations as gx

    suite = gx.ExpectationSuite(name=f"leadscore.{table.name}")
    for expectation in suite_expectations(table, settings, derived):
        suite.add_expectation(expectation)
    return suite


def _context() -> AbstractDataContext:
    _quiet_gx()
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    return context


def _run_suite(
    context: AbstractDataContext, name: str, frame: pd.DataFrame, suite: ExpectationSuite
) -> ExpectationSuiteValidationResult:
    sources = context.data_sources
    source: Any = (
        sources.get("leadscore")
        if "leadscore" in sources.all()
        else sources.add_pandas("leadscore")
    )
    asset = source.add_dataframe_asset(name)
    batch_definition = asset.add_batch_definition_whole_dataframe("whole")
    suite = context.suites.add(suite)
    batch = batch_definition.get_batch(batch_parameters={"dataframe": frame})
    return batch.validate(suite, result_format={"result_format": "COMPLETE"})


def _raised(info: Any) -> str | None:
    if not isinstance(info, dict):
        return None
    if info.get("raised_exception"):
        return str(info.get("exception_message"))
    for value in info.values():
        if isinstance(value, dict) and value.get("raised_exception"):
            return str(value.get("exception_message"))
    return None


def failures_from_result(result: ExpectationSuiteValidationResult, table: str) -> RowFailures:
    """Rule → failing positions, from GE's ``unexpected_index_list`` (a ``RangeIndex`` frame)."""
    failures: RowFailures = {}
    for item in result.results:
        config = item.expectation_config
        rule = str(config.meta["rule"]) if config is not None and config.meta else "unknown rule"
        error = _raised(item.exception_info)
        if error is not None:
            raise RuntimeError(f"Great Expectations could not check {table}: {rule}: {error}")
        if item.success:
            continue
        index = item.result.get("unexpected_index_list") or []
        positions = np.unique(np.asarray(index, dtype=np.int64))
        if len(positions):
            failures[rule] = np.union1d(failures.get(rule, positions), positions)
    return failures


def _trim_for_docs(result: ExpectationSuiteValidationResult) -> None:
    """Drop complete unexpected lists (kept: GE's partial lists of 20) before rendering."""
    for item in result.results:
        for key in ("unexpected_list", "unexpected_index_list", "unexpected_index_query"):
            item.result.pop(key, None)


@functools.cache
def _page_view() -> Any:
    """One Jinja view per process: it compiles GE's page templates once."""
    from great_expectations.render.view import DefaultJinjaPageView

    return DefaultJinjaPageView()


def render_data_docs(result: ExpectationSuiteValidationResult) -> str:
    """GE's own Data Docs page (HTML) for one suite's validation result."""
    from great_expectations.render.renderer import ValidationResultsPageRenderer

    document = ValidationResultsPageRenderer().render(result)
    return str(_page_view().render(document))


# ----------------------------------------------------------------------------- the stage
@dataclass
class TableSummary:
    name: str
    source: str
    rows_in: int
    rows_valid: int = 0
    rows_quarantined: int = 0
    rules: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)
    normalised: dict[str, int] = field(default_factory=dict)
    renamed: dict[str, str] = field(default_factory=dict)
    dropped_columns: list[str] = field(default_factory=list)
    added_columns: list[str] = field(default_factory=list)
    expectations: int = 0

    @property
    def share(self) -> float:
        return self.rows_quarantined / self.rows_in if self.rows_in else 0.0

    def top_rule(self) -> tuple[str, int] | None:
        return max(self.rules.items(), key=lambda item: item[1]) if self.rules else None


@dataclass
class ValidationSummary:
    tables: dict[str, TableSummary]
    horizon: str | None
    horizon_fixed: bool
    now: str
    max_quarantine_share: float
    seconds: float = 0.0
    ge_seconds: float = 0.0
    passed: bool = True
    failure: str | None = None

    @property
    def rows_in(self) -> int:
        return sum(table.rows_in for table in self.tables.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "failure": self.failure,
            "horizon": self.horizon,
            "horizon_fixed": self.horizon_fixed,
            "now": self.now,
            "max_quarantine_share": self.max_quarantine_share,
            "seconds": round(self.seconds, 3),
            "ge_seconds": round(self.ge_seconds, 3),
            "tables": {
                name: {
                    "source": table.source,
                    "rows_in": table.rows_in,
                    "rows_valid": table.rows_valid,
                    "rows_quarantined": table.rows_quarantined,
                    "quarantined_share": table.share,
                    "rules": table.rules,
                    "examples": table.examples,
                    "normalised": table.normalised,
                    "renamed_columns": table.renamed,
                    "dropped_columns": table.dropped_columns,
                    "added_columns": table.added_columns,
                    "expectations": table.expectations,
                }
                for name, table in self.tables.items()
            },
        }


@dataclass
class _Table:
    spec: contract.Table
    path: Path
    raw: pd.DataFrame
    typed: pd.DataFrame
    failures: RowFailures
    notes: CoercionNotes
    quarantined: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    result: Any = None


def _micros(series: pd.Series) -> np.ndarray:
    """``datetime64[us, UTC]`` → int64 microseconds (NaT → int64 min)."""
    return np.asarray(series.array.asi8, dtype=np.int64)


_NAT = np.iinfo(np.int64).min


def _stamp_micros(stamp: pd.Timestamp) -> int:
    """Microseconds since the epoch (``Timestamp.value`` is nanoseconds whatever the unit)."""
    return int(stamp.value // 1000)


def _horizon(
    tables: dict[str, _Table], fixed: dt.datetime | None, now: pd.Timestamp
) -> pd.Timestamp | None:
    """The fixed horizon, or the latest non-future time of leads and events (None: no times)."""
    if fixed is not None:
        return contract.utc(fixed)
    return contract.latest_time({name: item.typed for name, item in tables.items()}, now)


def lookup(values: pd.Series, keys: pd.Series) -> np.ndarray:
    """Position in ``keys`` of each value (first occurrence), -1 where absent or null."""
    if not len(values):
        return np.empty(0, dtype=np.int64)
    found = pc.index_in(_arrow(values), value_set=pa.array(_arrow(keys)))
    return np.asarray(found.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64)


def _seconds(later: np.ndarray, earlier: np.ndarray) -> np.ndarray:
    both = (later != _NAT) & (earlier != _NAT)
    out = np.full(len(later), np.nan)
    out[both] = (later[both] - earlier[both]) / 1e6
    return out


def _gather(values: np.ndarray, positions: np.ndarray, usable: np.ndarray) -> np.ndarray:
    """``values[positions]`` where ``usable``, NaT elsewhere."""
    out = np.full(len(positions), _NAT, dtype=np.int64)
    out[usable] = values[positions[usable]]
    return out


def close_times(tables: dict[str, _Table], settings: SuiteSettings) -> np.ndarray | None:
    """Per lead (position in the leads file): its first won/lost time (µs; NaT when it never
    closed) among the sales events that pass the reference and time rules; None without sales
    events. Needs the leads validated (quarantined leads close nothing)."""
    if "sales_events" not in tables:
        return None
    leads, events = tables["leads"], tables["sales_events"].typed
    lead_pos = lookup(events["lead_id"], leads.typed["lead_id"])
    created = _micros(leads.typed["created_at"])
    times = _micros(events["occurred_at"])
    ok = lead_pos >= 0
    ok[ok] = ~leads.quarantined[lead_pos[ok]]
    ok &= (times != _NAT) & events["stage"].isin(contract.CLOSING_STAGES).to_numpy(bool)
    tolerance = round(settings.tolerance_seconds * 1e6)
    ok[ok] &= times[ok] >= created[lead_pos[ok]] - tolerance
    ok &= times <= _stamp_micros(settings.horizon if settings.horizon is not None else settings.now)
    never = np.iinfo(np.int64).max
    close = np.full(len(leads.typed), never, dtype=np.int64)
    np.minimum.at(close, lead_pos[ok], times[ok])
    close[close == never] = _NAT
    return close


def _cross_table(
    item: _Table,
    tables: dict[str, _Table],
    settings: SuiteSettings,
    close: np.ndarray | None = None,
) -> tuple[list[Derived], RowFailures]:
    """Derived columns (validated by GE) and cascade failures of ``item``'s references."""
    derived: list[Derived] = []
    cascade: RowFailures = {}
    frame = item.typed
    lead_pos: np.ndarray | None = None
    for column in item.spec.columns:
        parent_name = column.referenced_table
        if parent_name is None or parent_name not in tables:
            continue
        parent = tables[parent_name]
        key = column.references.split(".")[1]  # type: ignore[union-attr]
        positions = lookup(frame[column.name], parent.typed[key])
        present = frame[column.name].notna().to_numpy(bool)
        known = pd.array(positions >= 0, dtype="boolean")
        known[~present] = pd.NA
        derived.append(
            Derived(
                f"__{column.name}_in_{parent_name}",
                known,
                rule_unknown_reference(column.name, parent_name),
                value_set=(True,),
            )
        )
        orphaned = positions >= 0
        orphaned[orphaned] = parent.quarantined[positions[orphaned]]
        if orphaned.any():
            cascade[rule_parent_quarantined(parent_name)] = _positions(orphaned)
        if parent_name == "leads":
            lead_pos = np.where(orphaned, -1, positions)
    if lead_pos is None:
        return derived, cascade
    leads = tables["leads"]
    usable = lead_pos >= 0
    for column in item.spec.columns:
        if column.not_before_lead_created:
            created = _gather(_micros(leads.typed["created_at"]), lead_pos, usable)
            derived.append(
                Derived(
                    f"__{column.name}_seconds_after_lead_created",
                    _seconds(_micros(frame[column.name]), created),
                    rule_before_lead_created(column.name),
                    min_value=-settings.tolerance_seconds or 0.0,
                )
            )
    time_column = item.spec.time_column
    if item.spec.name in contract.EVENT_TABLES and time_column is not None and close is not None:
        derived.append(
            Derived(
                f"__{time_column}_seconds_after_lead_closed",
                _seconds(_micros(frame[time_column]), _gather(close, lead_pos, usable)),
                AFTER_CLOSE.replace("occurred_at", time_column),
                max_value=0.0,
            )
        )
    return derived, cascade


def _merge(into: RowFailures, more: RowFailures) -> None:
    for rule, positions in more.items():
        if len(positions):
            into[rule] = np.union1d(into[rule], positions) if rule in into else positions


def _validate_table(
    item: _Table,
    tables: dict[str, _Table],
    settings: SuiteSettings,
    context: AbstractDataContext,
    close: np.ndarray | None = None,
) -> float:
    """Run the table's GE suite; fill ``item.failures`` and ``item.quarantined``. Returns the
    seconds spent inside Great Expectations."""
    derived, cascade = _cross_table(item, tables, settings, close)
    suite = build_suite(item.spec, settings, derived)
    frame = item.typed
    if derived:
        frame = frame.assign(**{d.column: d.values for d in derived})
    started = time.perf_counter()
    result = _run_suite(context, item.spec.name, frame, suite)
    seconds = time.perf_counter() - started
    found = failures_from_result(result, item.spec.name)
    _trim_for_docs(result)
    item.result = result
    for name, bad in item.notes.failed_columns.items():
        rule = rule_missing(name)
        if rule in found:
            found[rule] = np.setdiff1d(found[rule], bad)
            if not len(found[rule]):
                del found[rule]
    _merge(item.failures, found)
    _merge(item.failures, cascade)
    quarantined = np.zeros(len(item.typed), dtype=bool)
    for positions in item.failures.values():
        quarantined[positions] = True
    item.quarantined = quarantined
    return seconds


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
    result = _run_suite(_context(), table.name, typed, build_suite(table, settings))
    _merge(failures, failures_from_result(result, table.name))
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


def _reasons(failures: RowFailures) -> pd.Series:
    """Failing position → rule names joined by "; " (in the order the rules were checked)."""
    parts = [pd.Series(rule, index=positions) for rule, positions in failures.items()]
    if not parts:
        return pd.Series(dtype="str")
    joined = pd.concat(parts).groupby(level=0, sort=True).agg("; ".join)
    return joined.astype("str")


def _example_ids(item: _Table, positions: np.ndarray, count: int) -> list[str]:
    """Up to ``count`` distinct ids (the table's key, else lead_id, else the row number)."""
    key = item.spec.key or ("lead_id" if "lead_id" in item.raw.columns else None)
    if key is None or key not in item.raw.columns:
        return [f"row {position + 1}" for position in positions[:count]]
    examples: list[str] = []
    step = max(count * 20, 100)
    for start in range(0, len(positions), step):
        head = positions[start : start + step]
        values = item.raw[key].iloc[head]
        for value, position in zip(values, head, strict=True):
            text = str(value) if pd.notna(value) else f"row {position + 1}"
            if text not in examples:
                examples.append(text)
            if len(examples) >= count:
                return examples
    return examples


def _summarise(item: _Table, example_ids: int) -> TableSummary:
    rows = len(item.typed)
    quarantined = int(item.quarantined.sum())
    return TableSummary(
        name=item.spec.name,
        source=str(item.path),
        rows_in=rows,
        rows_valid=rows - quarantined,
        rows_quarantined=quarantined,
        rules={rule: len(positions) for rule, positions in item.failures.items()},
        examples={
            rule: _example_ids(item, positions, example_ids)
            for rule, positions in item.failures.items()
        },
        normalised=dict(item.notes.normalised),
        renamed=dict(item.notes.renamed),
        dropped_columns=list(item.notes.dropped),
        added_columns=list(item.notes.added),
        expectations=len(item.result.results) if item.result is not None else 0,
    )


def _rows(count: int) -> str:
    return f"{count:,} row" if count == 1 else f"{count:,} rows"


def _percent(share: float) -> str:
    return f"{share:.1%}" if share == 0 or share >= 0.001 else f"{share:.2%}"


def _log_summary(summary: ValidationSummary) -> None:
    horizon = summary.horizon or "none"
    logger.info(
        "data horizon %s (%s)", horizon, "fixed in params" if summary.horizon_fixed else "derived"
    )
    for table in summary.tables.values():
        logger.info(
            "%s: %s rows, %s valid, %s quarantined (%s)",
            table.name,
            f"{table.rows_in:,}",
            f"{table.rows_valid:,}",
            f"{table.rows_quarantined:,}",
            _percent(table.share),
        )
        for rule, count in sorted(table.rules.items(), key=lambda item: -item[1]):
            examples = ", ".join(table.examples.get(rule, []))
            logger.info("  %s: %s (e.g. %s)", rule, _rows(count), examples)
        for column, count in table.normalised.items():
            logger.info("  %s: %s values normalised (spaces/case)", column, f"{count:,}")
        for name, canonical in table.renamed.items():
            logger.info("  column %r read as %r", name, canonical)


def _threshold_failure(summary: ValidationSummary, report: Path) -> str | None:
    over = [t for t in summary.tables.values() if t.share > summary.max_quarantine_share]
    if not over:
        return None
    first = over[0]
    top = first.top_rule()
    top_text = f" (top rule: {top[0]}, {_rows(top[1])})" if top else ""
    others = f"; also over: {', '.join(t.name for t in over[1:])}" if len(over) > 1 else ""
    return (
        f"{first.source}: {first.rows_quarantined:,} of {first.rows_in:,} rows "
        f"({_percent(first.share)}) quarantined > {_percent(summary.max_quarantine_share)} "
        f"allowed{top_text}{others}; report: {report / 'index.html'}"
    )


def _arrow_valid(item: _Table) -> pa.Table:
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


def _arrow_quarantine(item: _Table) -> pa.Table:
    positions = _positions(item.quarantined)
    rows = item.raw.iloc[positions].reset_index(drop=True)
    reasons = _reasons(item.failures)
    rows[ROW_COLUMN] = positions + 1
    rows[REASON_COLUMN] = reasons.reindex(positions).to_numpy()
    try:
        return pa.Table.from_pandas(rows, preserve_index=False)
    except (pa.ArrowException, TypeError, ValueError):
        return pa.Table.from_pandas(rows.astype("str"), preserve_index=False)


def _index_page(summary: ValidationSummary) -> str:
    status = "passed" if summary.passed else "FAILED"
    rows = []
    for table in summary.tables.values():
        rules = "<br>".join(
            f"{html.escape(rule)}: {count:,} (e.g. {html.escape(', '.join(table.examples[rule]))})"
            for rule, count in sorted(table.rules.items(), key=lambda item: -item[1])
        )
        rows.append(
            f"<tr><td><a href='data_docs/{table.name}.html'>{table.name}</a></td>"
            f"<td>{html.escape(table.source)}</td><td>{table.rows_in:,}</td>"
            f"<td>{table.rows_valid:,}</td><td>{table.rows_quarantined:,}</td>"
            f"<td>{_percent(table.share)}</td><td>{rules or '—'}</td></tr>"
        )
    failure = f"<p><b>{html.escape(summary.failure)}</b></p>" if summary.failure else ""
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>leadscore validation</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{border:1px solid #ccc;"
        "padding:4px 8px;vertical-align:top}table{border-collapse:collapse}</style></head><body>"
        f"<h1>Validation {status}</h1>{failure}"
        f"<p>Data horizon: {html.escape(summary.horizon or 'none')} "
        f"({'fixed in params' if summary.horizon_fixed else 'latest non-future time'}); "
        f"quarantine allowed per table: {_percent(summary.max_quarantine_share)}. "
        "Each table name links to its Great Expectations Data Docs page.</p>"
        "<table><tr><th>table</th><th>file</th><th>rows</th><th>valid</th><th>quarantined</th>"
        f"<th>share</th><th>rules</th></tr>{''.join(rows)}</table></body></html>\n"
    )


def _write_report(report: Path, summary: ValidationSummary, tables: dict[str, _Table]) -> None:
    with atomic_directory(report) as staging:
        (staging / "summary.json").write_text(
            json.dumps(summary.to_dict(), indent=2, default=str) + "\n", encoding="utf-8"
        )
        docs = staging / "data_docs"
        docs.mkdir()
        suites = staging / "suites"
        suites.mkdir()
        for name, item in tables.items():
            if item.result is None:
                continue
            suite = item.result.suite_name
            try:
                page = render_data_docs(item.result)
            except Exception as error:  # the report page must never fail the stage
                logger.warning("%s: Data Docs page not rendered (%s)", name, error)
                page = f"<pre>{html.escape(json.dumps(item.result.to_json_dict(), indent=1))}</pre>"
            (docs / f"{name}.html").write_text(page, encoding="utf-8")
            expectations = [
                result.expectation_config.to_json_dict() for result in item.result.results
            ]
            (suites / f"{name}.json").write_text(
                json.dumps({"name": suite, "expectations": expectations}, indent=1, default=str)
                + "\n",
                encoding="utf-8",
            )
        (staging / "index.html").write_text(_index_page(summary), encoding="utf-8")


def _read(raw: Path) -> dict[str, _Table]:
    files = find_table_files(raw)
    if "leads" not in files:
        raise UserError(
            f"{raw}: no leads table (leads.parquet, leads.csv or leads.csv.gz); it is required"
        )
    tables: dict[str, _Table] = {}
    for name, path in files.items():
        spec = contract.TABLES[name]
        frame = read_table_file(path)
        notes = CoercionNotes()
        typed, failures = coerce(spec, frame, source=path, notes=notes)
        tables[name] = _Table(spec, path, frame, typed, failures, notes)
    return tables


def validate_tables(
    tables: dict[str, _Table],
    params: Params,
    now: pd.Timestamp,
    report: Path,
) -> ValidationSummary:
    horizon = _horizon(tables, params.data.horizon, now)
    settings = SuiteSettings(
        now=now,
        horizon=horizon if params.data.horizon is not None else None,
        tolerance_seconds=params.validate_.time_tolerance_seconds,
    )
    context = _context()
    ge_seconds = 0.0
    close: np.ndarray | None = None
    for name, item in tables.items():  # dependency order: leads before their events
        if name in contract.EVENT_TABLES and close is None:
            close = close_times(tables, settings)
        ge_seconds += _validate_table(item, tables, settings, context, close)
    summary = ValidationSummary(
        tables={
            name: _summarise(item, params.validate_.example_ids) for name, item in tables.items()
        },
        horizon=horizon.isoformat() if horizon is not None else None,
        horizon_fixed=params.data.horizon is not None,
        now=now.isoformat(),
        max_quarantine_share=params.validate_.max_quarantine_share,
        ge_seconds=ge_seconds,
    )
    summary.failure = _threshold_failure(summary, report)
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
    tables = _read(raw)
    summary = validate_tables(tables, params, stamp, report)
    summary.seconds = time.perf_counter() - started
    _log_summary(summary)
    _write_report(report, summary, tables)
    if summary.failure is not None:
        raise UserError(summary.failure)
    with atomic_directory(out) as staging:
        quarantine = staging / "quarantine"
        quarantine.mkdir()
        for name, item in tables.items():
            pq.write_table(_arrow_valid(item), staging / f"{name}.parquet", compression="zstd")
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
