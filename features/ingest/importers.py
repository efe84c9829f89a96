"""Importers: real CRM exports → leadscore's canonical tables, driven by a YAML mapping
(:mod:`features.ingest.mapping` defines, reads and validates it; this module applies it).

- ``format: flat``: one row per lead, outcome in a column. Writes ``leads.parquet``
  (``lead_id``, ``created_at``, the declared categorical and numeric columns under their export
  names, ``outcome_<target>`` booleans) and the manifest ``import.json`` that tells the feature
  stage to build one snapshot per row;
- ``format: tables``: several files renamed onto the canonical tables of
  :mod:`features.contract`, with constants for columns the export lacks. Writes one Parquet file
  per table (no manifest: the data is event-based like the simulator's).

A column the file lacks is one :class:`UserError` line naming the file, the mapping file, the key
and the file's columns. Values that cannot be parsed (numbers, times, outcomes) are one line
naming the file, column, count of bad rows and examples.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features import contract
from features.errors import UserError
from features.ingest.mapping import (
    CANONICAL_LEAD_ATTRIBUTES,
    FlatMapping,
    Outcome,
    ReadOptions,
    TablesMapping,
    TableSource,
    Value,
    as_text,
    examples,
    in_rows,
    keep_rows,
    load_mapping,
    map_values,
    match_values,
    strict_numbers,
    strict_timestamps,
)
from features.ingest.readers import file_kind, find_table_files, read_csv_file, read_table_file
from features.ingest.suspicion import warn_suspicious_names
from features.storage import MANIFEST, write_json, write_parquet

logger = logging.getLogger(__name__)

SYNTHETIC_START = pd.Timestamp("2000-01-01T00:00:00Z")
"""Without a creation-time column, row n (1-based) is created at this time + n minutes."""
MAX_LISTED = 12
"""Column names listed in a 'not in the file' error before the list is cut."""


# ----------------------------------------------------------------------------- values
def parse_strings(values: pd.Series) -> pd.Series:
    """Text as pandas strings (nulls kept); numbers from Parquet become their text."""
    if pd.api.types.is_string_dtype(values):
        return values.astype("str")
    if pd.api.types.is_integer_dtype(values) or pd.api.types.is_bool_dtype(values):
        return values.astype("str").where(values.notna())
    return values.astype(object).where(values.notna()).astype("str").where(values.notna())


# ----------------------------------------------------------------------------- reading
def read_export(path: Path, read: ReadOptions) -> pd.DataFrame:
    """One export file with the mapping's read options (CSV, ``.csv.gz`` or Parquet)."""
    if not path.exists():
        raise UserError(f"{path}: input file not found")
    if path.is_dir():
        raise UserError(f"{path}: is a directory; a flat mapping reads one export file")
    if file_kind(path) == "parquet":
        frame = read_table_file(path)
        if read.na_values:
            missing = set(read.na_values)
            for name in frame.columns:
                column = frame[name]
                if pd.api.types.is_string_dtype(column) or column.dtype == object:
                    frame[name] = column.where(~column.isin(missing))
        return frame
    return read_csv_file(
        path, sep=read.sep, encoding=read.encoding, na_values=list(read.na_values) or None
    )


def _require_columns(
    frame: pd.DataFrame, names: Iterable[tuple[str, str]], where: Path, mapping_path: Path
) -> None:
    columns = [str(name) for name in frame.columns]
    for name, role in names:
        if name in frame.columns:
            continue
        listed = _listing(columns)
        close = difflib.get_close_matches(name, columns, n=1, cutoff=0.75)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UserError(
            f"{where}: column {name!r} named in mapping {mapping_path} ({role}) is not in the "
            f"file{hint}; columns are: {listed}"
        )


# ----------------------------------------------------------------------------- flat
def import_flat(
    mapping: FlatMapping, mapping_path: Path, source: Path, out: Path
) -> dict[str, Any]:
    """A flat export → ``out/leads.parquet`` and ``out/import.json``; returns the manifest."""
    frame = read_export(source, mapping.read)
    needed: list[tuple[str, str]] = []
    if mapping.id is not None:
        needed.append((mapping.id, "id"))
    if mapping.created_at is not None:
        needed.append((mapping.created_at, "created_at"))
    for target, outcome in mapping.outcome.items():
        if outcome.column is not None:
            needed.append((outcome.column, f"outcome {target}"))
    for role in ("categorical", "numeric", "post_outcome"):
        needed += [(name, role) for name in getattr(mapping, role)]
    needed += [(name, f"identity {field}") for field, name in mapping.identity.items()]
    needed += [(name, "where") for name in mapping.where]
    _require_columns(frame, needed, source, mapping_path)
    # Filter first: rows left out (open deals, test records) may hold anything.
    frame = keep_rows(frame, mapping.where, f"{source} (mapping {mapping_path})")

    n = len(frame)
    row = np.arange(1, n + 1)
    leads: dict[str, pd.Series] = {}
    if mapping.id is not None:
        leads["lead_id"] = parse_strings(frame[mapping.id]).str.strip()
    else:
        leads["lead_id"] = pd.Series([f"row-{i}" for i in row], dtype="str")
    if mapping.created_at is not None:
        where = f"{source}: column {mapping.created_at!r} (created_at)"
        leads["created_at"] = strict_timestamps(frame[mapping.created_at], mapping.read, where)
    else:
        leads["created_at"] = pd.Series(SYNTHETIC_START + pd.to_timedelta(row, unit="min")).astype(
            "datetime64[us, UTC]"
        )
    for name in mapping.categorical:
        values = parse_strings(frame[name])
        table = mapping.value_map(name)
        if table is not None:
            values = map_values(values, table, None, f"{source}: column {name!r} (values)")
        leads[mapping.written_name(name)] = values
    for name in mapping.numeric:
        where = f"{source}: column {name!r} (numeric)"
        raw = frame[name]
        table = mapping.value_map(name)
        if table is not None:
            raw = map_values(raw, table, None, where)
        leads[name] = strict_numbers(raw, mapping.read.decimal, where)
    for field, name in mapping.identity.items():
        leads[field] = parse_strings(frame[name]).str.strip()
    outcomes: dict[str, dict[str, Any]] = {}
    for target, outcome in mapping.outcome.items():
        if outcome.column is None:
            continue
        leads[f"outcome_{target}"] = pd.Series(
            _outcome(frame[outcome.column], outcome, f"{source}: column {outcome.column!r}", target)
        )
        positives = int(leads[f"outcome_{target}"].sum())
        outcomes[target] = {
            "column": outcome.column,
            "positive": list(outcome.positive),
            "negative": list(outcome.negative) if outcome.negative is not None else None,
            "positives": positives,
            "positive_share": round(positives / n, 6) if n else None,
        }
    table = pd.DataFrame({name: values.reset_index(drop=True) for name, values in leads.items()})
    for name in mapping.categorical:
        _warn_if_identifier(table[mapping.written_name(name)], source, name)
    # sales-written columns (status, rating, lead quality…) declared as features: say so now
    warn_suspicious_names(
        [*mapping.categorical, *mapping.numeric], mapping.post_outcome, where=str(source)
    )

    # A canonical attribute is written and listed under its canonical name whatever its case
    # in the export (`Country` → `country`): validation and the engine know it by that name.
    written = [mapping.written_name(name) for name in mapping.categorical]
    canonical = [name for name in written if name in CANONICAL_LEAD_ATTRIBUTES]
    manifest: dict[str, Any] = {
        "format": "flat",
        "source_file": source.name,
        "mapping_file": mapping_path.name,
        "order": mapping.order or "time",
        "has_timestamps": mapping.has_timestamps,
        "id": mapping.id,
        "created_at": mapping.created_at,
        "categorical": [name for name in written if name not in canonical],
        "canonical": canonical,
        "numeric": list(mapping.numeric),
        "post_outcome": list(mapping.post_outcome),
        "identity": sorted(mapping.identity),
        "labels": mapping.written_labels(),
        "engagement": mapping.written_engagement(),
        "outcomes": outcomes,
        "rows": n,
    }
    write_parquet(out / "leads.parquet", table)
    write_json(out / MANIFEST, manifest)
    logger.info(
        "imported %s rows from %s: %s",
        f"{n:,}",
        source,
        ", ".join(f"{t} {o['positives']:,} positive" for t, o in outcomes.items()),
    )
    return manifest


def _outcome(values: pd.Series, outcome: Outcome, where: str, target: str) -> np.ndarray:
    missing = as_text(values).isna()
    if missing.any():
        raise UserError(
            f"{where} (outcome {target}): no value (empty or in read.na_values) "
            f"{in_rows(int(missing.sum()), len(values))}; every row needs a known outcome"
        )
    positive = match_values(values, outcome.positive)
    if outcome.negative is not None:
        known = positive | match_values(values, outcome.negative)
        if not known.all():
            stray = values[~known]
            raise UserError(
                f"{where} (outcome {target}): neither positive {list(outcome.positive)} nor "
                f"negative {list(outcome.negative)} {in_rows(len(stray), len(values))}, "
                f"e.g. {examples(stray.astype('str'))}"
            )
    return positive


def _warn_if_identifier(values: pd.Series, source: Path, name: str) -> None:
    distinct = values.nunique()
    if len(values) >= 1000 and distinct > 0.5 * len(values):
        logger.warning(
            "%s: categorical column %r has %s distinct values in %s rows: an identifier or "
            "free text? It will mostly fall into the rare-category bucket",
            source,
            name,
            f"{distinct:,}",
            f"{len(values):,}",
        )


# ----------------------------------------------------------------------------- tables
def to_canonical(frame: pd.DataFrame, table: str, read: ReadOptions, where: Path) -> pd.DataFrame:
    """Canonical columns of ``table`` converted to their contract types (contract order), then
    the frame's other columns unchanged when the table allows extra columns."""
    spec = contract.TABLES[table]
    frame = _canonical_headers(frame, spec)
    result: dict[str, pd.Series] = {}
    for column in spec:
        if column.name not in frame.columns:
            continue
        values = frame[column.name]
        label = f"{where}: column {column.name!r} ({table}.{column.name})"
        if column.kind is contract.Kind.TIMESTAMP:
            result[column.name] = strict_timestamps(values, read, label)
        elif column.kind is contract.Kind.FLOAT:
            result[column.name] = strict_numbers(values, read.decimal, label)
        else:
            result[column.name] = parse_strings(values)
    extras = [name for name in frame.columns if name not in spec.column_names]
    if spec.extra_columns_allowed:
        for name in extras:
            result[str(name)] = frame[name]
    elif extras:
        logger.info("%s: columns %s are not part of %s; not copied", where, extras, table)
    missing = [name for name in spec.required_columns if name not in result]
    if missing:
        raise UserError(
            f"{where}: table {table} needs the columns {missing}; columns are: "
            f"{_listing(frame.columns)}"
        )
    return pd.DataFrame({name: values.reset_index(drop=True) for name, values in result.items()})


def _canonical_headers(frame: pd.DataFrame, spec: contract.Table) -> pd.DataFrame:
    """Headers that are a canonical column of ``spec`` by :func:`contract.canonical_name`'s
    rule (``Created_At`` → ``created_at``) renamed to it, as the validation stage does; a header
    already exactly canonical wins over a look-alike, which stays an extra column."""
    renames = contract.canonical_renames(frame.columns, spec)
    return frame.rename(columns=renames) if renames else frame


def _listing(columns: Iterable[Any]) -> str:
    names = [str(name) for name in columns]
    listed = ", ".join(repr(c) for c in names[:MAX_LISTED])
    if len(names) > MAX_LISTED:
        listed += f", … ({len(names) - MAX_LISTED} more)"
    return listed


Reads = dict[tuple[Path, ReadOptions], pd.DataFrame]
"""Export files already read, by path and read options: one file may feed several entries."""


def _mapped_table(
    table: str,
    source: TableSource,
    default_read: ReadOptions,
    directory: Path,
    mapping_path: Path,
    reads: Reads | None = None,
) -> pd.DataFrame:
    path = directory / source.file
    read = source.read or default_read
    if not path.is_file():
        raise UserError(
            f"{path}: file named in mapping {mapping_path} (tables.{table}.file) not found"
        )
    key = (path.resolve(), read)
    reads = reads if reads is not None else {}
    if key not in reads:
        reads[key] = read_export(path, read)
    frame = reads[key]
    needed = [
        (name, f"tables.{table}.columns.{canonical}") for canonical, name in source.columns.items()
    ]
    needed += [(name, f"tables.{table}.extra") for name in source.extra]
    needed += [(name, f"tables.{table}.where") for name in source.where]
    _require_columns(frame, needed, path, mapping_path)
    # Filter first: rows left out (open deals for a won/lost entry) may hold anything.
    frame = keep_rows(frame, source.where, f"{path} (mapping {mapping_path}, tables.{table})")
    spec = contract.TABLES[table]
    mapped = set(source.columns.values())
    # Export columns that are canonical by the one rule (`Country`, ` stage `), unless the
    # entry maps them to something else.
    implicit: dict[str, Any] = {}
    for name in frame.columns:
        canonical = contract.canonical_name(name, spec)
        free = name not in mapped and name not in source.extra
        if canonical is not None and free and (canonical not in implicit or canonical == name):
            implicit[canonical] = name
    renamed: dict[str, pd.Series] = {}
    for canonical in spec.column_names:
        if canonical in source.columns:
            renamed[canonical] = frame[source.columns[canonical]]
        elif canonical in source.constants:
            value = source.constants[canonical]
            renamed[canonical] = pd.Series([_constant(value)] * len(frame), dtype="str")
        elif canonical in implicit:
            renamed[canonical] = frame[implicit[canonical]]
    for canonical, values in source.values.items():
        if canonical not in renamed:
            raise UserError(
                f"{path}: tables.{table}.values.{canonical} in mapping {mapping_path}: the entry "
                f"has no {canonical} column (map it in `columns`)"
            )
        origin = source.columns.get(canonical, implicit.get(canonical, canonical))
        label = f"{path}: column {str(origin)!r} ({table}.{canonical})"
        renamed[canonical] = map_values(
            renamed[canonical], values, spec.column(canonical).allowed, label
        )
    for name in source.extra:
        renamed[name] = frame[name]
    return to_canonical(pd.DataFrame(renamed, index=frame.index), table, read, path)


def _constant(value: Value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def import_tables(
    mapping: TablesMapping | None, mapping_path: Path | None, directory: Path, out: Path
) -> dict[str, int]:
    """Canonical tables from ``directory``: the mapping's tables, plus files already named after
    a canonical table (``leads.csv``, ``touches.parquet`` …) that the mapping does not use."""
    if not directory.exists():
        raise UserError(f"{directory}: input directory not found")
    if not directory.is_dir():
        raise UserError(f"{directory}: is a file; canonical tables are read from a directory")
    frames: dict[str, pd.DataFrame] = {}
    used: set[Path] = set()
    if mapping is not None:
        assert mapping_path is not None
        reads: Reads = {}
        for table, sources in mapping.tables.items():
            parts = [
                _mapped_table(table, source, mapping.read, directory, mapping_path, reads)
                for source in sources
            ]
            used |= {(directory / source.file).resolve() for source in sources}
            frames[table] = parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)
    # An export directory may also hold files the mapping reads under other names.
    for table, path in find_table_files(directory, strict=False).items():
        if table in frames or path.resolve() in used:
            continue
        read = mapping.read if mapping is not None else ReadOptions()
        frame = read_table_file(path) if mapping is None else read_export(path, read)
        frames[table] = to_canonical(frame, table, read, path)
    if "leads" not in frames:
        raise UserError(
            f"{directory}: no leads table (leads.csv or leads.parquet"
            + (f", or tables.leads in {mapping_path}" if mapping_path else "")
            + ")"
        )
    counts: dict[str, int] = {}
    for table in contract.TABLES:
        if table in frames:
            write_parquet(out / f"{table}.parquet", frames[table])
            counts[table] = len(frames[table])
    logger.info("tables from %s: %s", directory, ", ".join(f"{t} {n:,}" for t, n in counts.items()))
    return counts


# ----------------------------------------------------------------------------- entry points
def import_export(mapping_path: Path, source: Path, out: Path) -> None:
    """``leadscore import``: a flat export file or a directory of tables, per the mapping, into
    the empty staging directory ``out`` (the caller swaps it in atomically)."""
    mapping_path, source, out = Path(mapping_path), Path(source), Path(out)
    mapping = load_mapping(mapping_path)
    if not source.exists():
        raise UserError(f"{source}: input not found")
    if isinstance(mapping, FlatMapping):
        import_flat(mapping, mapping_path, source, out)
    else:
        import_tables(mapping, mapping_path, source, out)


def copy_tables(source: Path, out: Path, mapping_path: Path | None) -> None:
    """params ``source.kind: tables``: canonical tables (CSV or Parquet) from a directory to
    ``out`` as Parquet, typed per the contract; a ``format: tables`` mapping renames first."""
    source, out = Path(source), Path(out)
    mapping: TablesMapping | None = None
    if mapping_path is not None:
        loaded = load_mapping(mapping_path)
        if not isinstance(loaded, TablesMapping):
            raise UserError(
                f"{mapping_path}: source.kind 'tables' needs a mapping with `format: tables`, "
                f"not {loaded.format!r} (use source.kind: flat)"
            )
        mapping = loaded
    import_tables(mapping, Path(mapping_path) if mapping_path else None, source, out)
