"""Robust reading of one canonical-table file (CSV, ``.csv.gz`` or Parquet).

Real exports come with a byte-order mark, Windows line ends, cp1252/latin-1 bytes, ``;`` or tab
delimiters and the occasional enormous free-text field. This module reads all of those; what it
cannot read becomes a one-line :class:`UserError` naming the file.

CSV columns are read as text (pandas ``str``); typing them is the validation stage's job, so that
a bad value becomes a quarantined row, not a failed read. Only empty strings (and the caller's
``na_values``) are missing values: ``NA`` is Namibia's country code, not a null.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features import contract
from features.errors import UserError

PARQUET_SUFFIXES: tuple[str, ...] = (".parquet", ".pq")
CSV_SUFFIXES: tuple[str, ...] = (".csv", ".csv.gz", ".tsv", ".txt")
"""Every suffix a table file may have, by format: the one table of file types."""
WRITABLE_SUFFIXES: tuple[str, ...] = (".parquet", ".pq", ".csv")
"""The suffixes leadscore writes tables as (comma-separated, uncompressed CSV)."""
TABLE_SUFFIXES: tuple[str, ...] = (".parquet", ".csv", ".csv.gz")
"""The suffixes a canonical table is found by in a directory (the file name is the table
name)."""
PASSED_ON: frozenset[str] = frozenset({"truth.parquet", "import.json"})
"""Side files validation copies beside the validated tables (the simulator's truth, a flat
import's manifest)."""
SIDE_FILES: frozenset[str] = PASSED_ON | {"defects.parquet"}
"""Files other stages write beside the tables; not tables, never an error."""
DELIMITERS: tuple[str, ...] = (",", ";", "\t", "|")
FALLBACK_ENCODINGS: tuple[str, ...] = ("cp1252", "latin-1")
SNIFF_BYTES = 1 << 16


def _table_name(path: Path) -> tuple[str, str] | None:
    """(stem, suffix) when the file has a table suffix, else None."""
    lower = path.name.lower()
    for suffix in sorted(TABLE_SUFFIXES, key=len, reverse=True):
        if lower.endswith(suffix):
            return path.name[: -len(suffix)], suffix
    return None


def find_table_files(directory: Path, strict: bool = True) -> dict[str, Path]:
    """Canonical table name → its file in ``directory``, in contract (dependency) order.

    With ``strict`` (the validation stage), any other file except the side files other stages
    write and hidden files is an error: a misspelled ``lead.csv`` must not be silently skipped.
    ``strict=False`` skips other files (an export directory that also holds files a mapping
    reads under other names).
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise UserError(f"{directory}: directory not found")
    found: dict[str, Path] = {}
    for path in sorted(directory.iterdir()):
        if path.name.startswith(".") or path.name in SIDE_FILES or path.is_dir():
            continue
        parsed = _table_name(path)
        if parsed is None or parsed[0] not in contract.TABLES:
            if not strict:
                continue
            raise UserError(
                f"{path}: unknown table file; canonical tables are "
                f"{', '.join(contract.TABLES)} (as {', '.join(TABLE_SUFFIXES)})"
            )
        name = parsed[0]
        if name in found:
            raise UserError(
                f"{path}: table {name!r} is given twice ({found[name].name} and {path.name}); "
                "keep one file per table"
            )
        found[name] = path
    return {name: found[name] for name in contract.TABLES if name in found}


def _open_binary(path: Path) -> io.BufferedIOBase:
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rb")
    return path.open("rb")


def _head(path: Path) -> bytes:
    try:
        with _open_binary(path) as handle:
            return handle.read(SNIFF_BYTES)
    except (OSError, EOFError) as error:
        raise UserError(f"{path}: cannot be read ({error})") from None


def _bom_encoding(head: bytes) -> str | None:
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    return None


def _sample_lines(head: bytes, encoding: str, truncated: bool) -> list[str]:
    text = head.decode(encoding if encoding != "utf-16" else "utf-16", errors="replace")
    text = text.lstrip("\ufeff")
    lines = text.splitlines()
    if truncated and len(lines) > 1:
        lines = lines[:-1]  # the last line is cut by the sample size
    return lines[:50]


def _field_counts(lines: list[str], delimiter: str) -> list[int]:
    previous = csv.field_size_limit()
    csv.field_size_limit(1 << 30)
    try:
        return [len(row) for row in csv.reader(lines, delimiter=delimiter) if row]
    except csv.Error:
        return []
    finally:
        csv.field_size_limit(previous)


def sniff_delimiter(lines: list[str]) -> str:
    """The delimiter among ``, ; tab |`` that splits the header into the most fields and the
    sample rows consistently (quoted fields respected); ``,`` when nothing splits."""
    best, best_score = ",", (False, 1)
    for delimiter in DELIMITERS:
        counts = _field_counts(lines, delimiter)
        if not counts or counts[0] < 2:
            continue
        score = (all(count == counts[0] for count in counts), counts[0])
        if score > best_score:
            best, best_score = delimiter, score
    return best


def _header(lines: list[str], delimiter: str) -> list[str]:
    if not lines:
        return []
    previous = csv.field_size_limit()
    csv.field_size_limit(1 << 30)
    try:
        return next(csv.reader(lines[:1], delimiter=delimiter), [])
    except csv.Error:
        return []
    finally:
        csv.field_size_limit(previous)


@dataclass(frozen=True)
class CsvLayout:
    """How a CSV file is laid out, sniffed from its head: delimiter, the encodings to try
    (first one first) and the header."""

    delimiter: str
    encodings: tuple[str, ...]
    header: tuple[str, ...]


def sniff_csv(path: Path, sep: str | None = None, encoding: str | None = None) -> CsvLayout:
    """The layout of a CSV (or ``.csv.gz``) file, or a :class:`UserError` for a file that is
    missing, empty, binary (an Excel workbook…), in an unknown encoding, or whose header names a
    column twice. ``sep`` None sniffs it among ``, ; tab |``; ``encoding`` None is UTF-8 (a
    byte-order mark is stripped, UTF-16 with a BOM is recognised), then cp1252, then latin-1."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    head = _head(path)
    if not head.strip():
        raise UserError(f"{path}: empty file")
    bom = _bom_encoding(head)
    if b"\x00" in head and bom != "utf-16" and encoding is None:
        kind = "an Excel workbook" if head.startswith(b"PK") else "binary data"
        raise UserError(f"{path}: not CSV text (looks like {kind}); export it as CSV or Parquet")
    if encoding is not None:
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise UserError(f"{path}: unknown encoding {encoding!r}") from None
        candidates: tuple[str, ...] = (encoding,)
    elif bom is not None:
        candidates = (bom,)
    else:
        candidates = ("utf-8", *FALLBACK_ENCODINGS)
    truncated = len(head) >= SNIFF_BYTES
    lines = _sample_lines(head, candidates[0], truncated)
    lines = [line for line in lines if line.strip()]
    if not lines:
        raise UserError(f"{path}: empty file")
    delimiter = sep if sep is not None else sniff_delimiter(lines)
    header = [name.strip() for name in _header(lines, delimiter)]
    duplicated = sorted({name for name in header if header.count(name) > 1})
    if duplicated:
        raise UserError(f"{path}: column {duplicated[0]!r} appears more than once in the header")
    return CsvLayout(delimiter, candidates, tuple(header))


def csv_error(path: Path, error: Exception) -> UserError:
    """One line for a CSV that pandas could not read."""
    if isinstance(error, pd.errors.EmptyDataError):
        return UserError(f"{path}: empty file")
    detail = " ".join(str(error).split())
    if isinstance(error, pd.errors.ParserError):
        detail = detail.replace("Error tokenizing data. C error: ", "")
        return UserError(f"{path}: malformed CSV ({detail})")
    if isinstance(error, UnicodeDecodeError):
        return UserError(f"{path}: cannot be decoded as text ({detail})")
    return UserError(f"{path}: cannot be read as CSV ({detail})")


def read_csv_file(
    path: Path,
    sep: str | None = None,
    encoding: str | None = None,
    na_values: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Every column of a CSV (or ``.csv.gz``) file as text (layout: :func:`sniff_csv`).
    Empty strings and ``na_values`` are nulls. Column names are stripped of surrounding
    spaces."""
    path = Path(path)
    layout = sniff_csv(path, sep, encoding)
    nulls = ["", *(na_values or ())]
    last_error: UnicodeDecodeError | None = None
    for candidate in layout.encodings:
        try:
            frame = pd.read_csv(
                path,
                sep=layout.delimiter,
                dtype=str,
                encoding=candidate,
                keep_default_na=False,
                na_values=nulls,
                skip_blank_lines=True,
                engine="c",
                compression="infer",
            )
        except UnicodeDecodeError as error:
            last_error = error
            continue
        except (pd.errors.EmptyDataError, pd.errors.ParserError) as error:
            raise csv_error(path, error) from None
        except (OSError, EOFError, ValueError, MemoryError) as error:
            raise csv_error(path, error) from None
        break
    else:
        raise UserError(
            f"{path}: cannot be decoded as {' or '.join(layout.encodings)} text ({last_error})"
        )
    frame.columns = pd.Index([str(name).strip().lstrip("\ufeff") for name in frame.columns])
    if frame.empty:
        raise UserError(f"{path}: header only, no rows")
    return frame


def _unreadable(path: Path, error: Exception) -> UserError:
    detail = " ".join(str(error).split())
    return UserError(f"{path}: not a readable Parquet file ({detail})")


def _check_parquet_path(path: Path) -> None:
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise UserError(f"{path}: empty file")


def read_parquet_file(path: Path) -> pd.DataFrame:
    """A Parquet file with its types (timestamps stay timestamps, strings pandas ``str``)."""
    path = Path(path)
    _check_parquet_path(path)
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError, ValueError) as error:
        raise _unreadable(path, error) from None
    if table.num_rows == 0:
        raise UserError(f"{path}: header only, no rows")
    return table.to_pandas()


def parquet_row_groups(path: Path) -> list[int]:
    """The rows of each row group of a Parquet file (the errors :func:`read_parquet_file`
    gives for a missing, empty or unreadable file, or one without rows)."""
    path = Path(path)
    _check_parquet_path(path)
    try:
        metadata = pq.ParquetFile(path).metadata
    except (pa.ArrowException, OSError, ValueError) as error:
        raise _unreadable(path, error) from None
    groups = [metadata.row_group(index).num_rows for index in range(metadata.num_row_groups)]
    if not sum(groups):
        raise UserError(f"{path}: header only, no rows")
    return groups


def read_parquet_chunk(path: Path, groups: Sequence[int]) -> pd.DataFrame:
    """Row groups ``groups`` of a Parquet file, typed as :func:`read_parquet_file` types the
    whole file."""
    try:
        table = pq.ParquetFile(path).read_row_groups(list(groups))
    except (pa.ArrowException, OSError, ValueError) as error:
        raise _unreadable(Path(path), error) from None
    return table.to_pandas()


def file_kind(path: Path) -> str | None:
    """``"parquet"`` or ``"csv"`` by the file's suffix (:data:`PARQUET_SUFFIXES`,
    :data:`CSV_SUFFIXES`), None for any other file."""
    lower = Path(path).name.lower()
    if lower.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if lower.endswith(CSV_SUFFIXES):
        return "csv"
    return None


def read_table_file(path: Path) -> pd.DataFrame:
    """One table file, dispatching on its suffix (:func:`file_kind`)."""
    path = Path(path)
    kind = file_kind(path)
    if kind == "parquet":
        return read_parquet_file(path)
    if kind == "csv":
        return read_csv_file(path)
    raise UserError(f"{path}: unsupported file type; use {', '.join(TABLE_SUFFIXES)}")
