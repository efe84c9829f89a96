"""Batch scoring: a leads table (and its event tables) read in chunks, each chunk checked with
the validate stage's own rules, scored with :class:`~models.scorer.LeadScorer` on all cores, and
written incrementally as the API's answer per lead (``leadscore score`` runs it; see
:mod:`pipelines.score` for the file formats)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from features import contract
from features.errors import UserError
from features.ingest.readers import WRITABLE_SUFFIXES, csv_error, file_kind, sniff_csv
from features.validation.validate import check_table
from models.reasons import ReasonColumns, ReasonSide
from models.scorer import LeadScorer

REASON_TYPE = pa.list_(
    pa.struct([("field", pa.string()), ("text", pa.string()), ("contribution", pa.float64())])
)


def file_format(path: Path, role: str) -> str:
    kind = file_kind(path)
    if role == "--output" and not path.name.lower().endswith(WRITABLE_SUFFIXES):
        kind = None
    if kind is None:
        raise UserError(f"{path}: {role} must be .csv or .parquet")
    return kind


# ------------------------------------------------------------------- reading
def _parquet_file(path: Path) -> pq.ParquetFile:
    if path.stat().st_size == 0:
        raise UserError(f"{path}: empty file")
    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError, ValueError) as error:
        detail = " ".join(str(error).split())
        raise UserError(f"{path}: not a readable Parquet file ({detail})") from None


def lead_chunks(path: Path, chunk: int) -> tuple[Iterator[pd.DataFrame], int | None]:
    """The leads table in chunks (strings stay strings), and its row count when known. CSV is
    read as the validate stage reads it (delimiter and encoding sniffed, empty strings null);
    an empty, header-only, binary or truncated file is one :class:`UserError` line."""
    kind = file_format(path, "--input")
    if not path.exists():
        raise UserError(f"{path}: file not found")
    if kind == "parquet":
        handle = _parquet_file(path)
        columns = list(handle.schema_arrow.names)
    else:
        layout = sniff_csv(path)
        columns = list(layout.header)
    missing = [c for c in contract.LEADS.required_columns if c not in columns]
    if missing:
        raise UserError(f"{path}: column {missing[0]!r} is missing (required: lead_id, created_at)")

    def rows() -> Iterator[pd.DataFrame]:
        if kind == "parquet":
            if handle.metadata.num_rows == 0:
                raise UserError(f"{path}: header only, no rows")
            try:
                for batch in handle.iter_batches(batch_size=chunk):
                    if batch.num_rows:
                        yield batch.to_pandas()
            except (pa.ArrowException, OSError, ValueError) as error:
                detail = " ".join(str(error).split())
                raise UserError(f"{path}: not a readable Parquet file ({detail})") from None
            return
        seen_rows = 0
        try:
            for frame in pd.read_csv(
                path,
                sep=layout.delimiter,
                encoding=layout.encodings[0],
                chunksize=chunk,
                dtype=str,
                keep_default_na=False,
                na_values=[""],
                skip_blank_lines=True,
                compression="infer",
            ):
                frame.columns = pd.Index([str(n).strip().lstrip("\ufeff") for n in frame.columns])
                seen_rows += len(frame)
                if len(frame):
                    yield frame
        except (pd.errors.ParserError, UnicodeDecodeError, EOFError, OSError) as error:
            raise csv_error(path, error) from None
        if not seen_rows:
            raise UserError(f"{path}: header only, no rows")

    return rows(), handle.metadata.num_rows if kind == "parquet" else None


class EventSource:
    """One event table, filtered to a chunk's leads as it is read (streaming scan)."""

    def __init__(self, path: Path, table: contract.Table) -> None:
        kind = file_format(path, f"--{table.name.replace('_', '-')}")
        if not path.exists():
            raise UserError(f"{path}: file not found")
        self.path = path
        self.table = table
        if kind == "parquet":
            _parquet_file(path)
            self.dataset = ds.dataset(path, format="parquet")
        else:
            layout = sniff_csv(path)
            types = {name: pa.string() for name in layout.header}
            self.dataset = ds.dataset(
                path,
                format=ds.CsvFileFormat(
                    parse_options=pacsv.ParseOptions(delimiter=layout.delimiter),
                    read_options=pacsv.ReadOptions(encoding=layout.encodings[0]),
                    convert_options=pacsv.ConvertOptions(
                        column_types=types, strings_can_be_null=True
                    ),
                ),
            )
        present = set(self.dataset.schema.names)
        missing = [c for c in table.required_columns if c not in present]
        if missing:
            raise UserError(f"{path}: column {missing[0]!r} is missing")
        self.columns = [c.name for c in table if c.name in present]

    def for_leads(self, lead_ids: pd.Series) -> pd.DataFrame:
        wanted = pa.array(lead_ids.astype(str).unique(), type=pa.string())
        keep = pc.field("lead_id").cast(pa.string()).isin(wanted)
        try:
            frame = self.dataset.to_table(columns=self.columns, filter=keep).to_pandas()
        except (pa.ArrowException, OSError, ValueError) as error:
            detail = " ".join(str(error).split())
            raise UserError(f"{self.path}: cannot be read ({detail})") from None
        frame["lead_id"] = frame["lead_id"].astype(str)
        typed = check_table(self.table, frame, self.path, example_column="lead_id")
        column = self.table.time_column
        if column and column in typed:
            check_time_range(typed[column], column, self.path, examples=typed["lead_id"])
        return typed


EARLIEST = contract.EARLIEST_TIME
END_OF_TIME = contract.END_OF_TIME
"""The contract's range of times (the API's too): batch scoring refuses what ``/v1/score``
refuses, and what the feature engine's nanosecond clock (1677–2262) could not convert."""


def check_time_range(
    values: pd.Series,
    column: str,
    path: Path,
    first_row: int = 1,
    examples: pd.Series | None = None,
) -> None:
    """One :class:`UserError` line, in ``check_table``'s words, for times outside
    [:data:`EARLIEST`, :data:`END_OF_TIME`); ``examples``: the values that name bad rows
    (``lead_id`` of event rows), else row numbers from ``first_row``."""
    times = values.reset_index(drop=True)
    outside = ((times < EARLIEST) | (times >= END_OF_TIME)).fillna(False).to_numpy(dtype=bool)
    if not outside.any():
        return
    positions = np.flatnonzero(outside)
    if examples is not None:
        shown = examples.reset_index(drop=True).iloc[positions[:5]].astype(str)
        where = f"{examples.name} " + ", ".join(shown)
    else:
        where = "rows " + ", ".join(f"{first_row + int(i):,}" for i in positions[:5])
    raise UserError(
        f"{path}: {len(positions):,} of {len(times):,} rows: timestamp out of range in {column} "
        f"(from {EARLIEST.date()} to before {END_OF_TIME.date()}) (e.g. {where})"
    )


def _as_of_times(values: pd.Series) -> tuple[pd.Series, int]:
    parsed = pd.to_datetime(values, utc=True, errors="coerce", format="ISO8601")
    bad = int((parsed.isna() & values.notna()).sum())
    return parsed, bad


def prepare_leads(
    frame: pd.DataFrame,
    path: Path,
    scorer: LeadScorer,
    default_as_of: pd.Timestamp,
    offset: int,
    seen: set[str] | None = None,
) -> tuple[pd.DataFrame, pd.Series]:
    """Checked leads of one chunk and their as_of (per row, or the run's). ``seen``: the ids
    of the earlier chunks (updated here), so an id repeated across chunks is refused too."""
    frame = check_table(contract.LEADS, frame, path, first_row=offset + 1)
    check_time_range(frame["created_at"], "created_at", path, first_row=offset + 1)
    if seen is not None:
        ids = frame["lead_id"].astype(str)
        again = ids.isin(seen).to_numpy()
        if again.any():
            first = int(np.flatnonzero(again)[0])
            raise UserError(
                f"{path}: column 'lead_id': {int(again.sum()):,} ids of rows "
                f"{offset + 1:,}–{offset + len(frame):,} appeared in earlier rows "
                f"(e.g. {ids.iloc[first]!r} in row {offset + first + 1:,}): duplicate id"
            )
        seen.update(ids)
    for name in scorer.engine.numerics_:
        if name in frame:
            numbers = pd.to_numeric(frame[name], errors="coerce")
            wrong = int((numbers.isna() & frame[name].notna()).sum())
            wrong += int((~np.isfinite(numbers.fillna(0.0))).sum())
            if wrong:
                raise UserError(
                    f"{path}: column {name!r}: {wrong} rows not a number (a numeric feature)"
                )
            frame[name] = numbers
    if "as_of" in frame:
        as_of, bad = _as_of_times(frame["as_of"])
        if bad:
            raise UserError(f"{path}: column 'as_of': {bad} rows not a valid timestamp")
        as_of = as_of.fillna(default_as_of)
        check_time_range(as_of, "as_of", path, first_row=offset + 1)
    else:
        as_of = pd.Series(default_as_of, index=frame.index)
    return frame, as_of.astype("datetime64[us, UTC]")


# ------------------------------------------------------------------- scoring
def score_chunk(
    scorer: LeadScorer,
    leads: pd.DataFrame,
    as_of: pd.Series,
    touches: pd.DataFrame | None,
    sales_events: pd.DataFrame | None,
    reasons: int,
) -> tuple[pd.DataFrame, ReasonColumns | None]:
    """The answers of one chunk: the scores, and the reasons as columns (None when not
    asked for): one ``pred_contrib`` call per chunk, no Python object per reason."""
    # Series, not .to_numpy(): a tz-aware column would become an object array of Timestamps.
    columns = {"lead_id": leads["lead_id"], "as_of": as_of.reset_index(drop=True)}
    X = scorer.engine.transform(pd.DataFrame(columns), leads, touches, sales_events)
    out = pd.concat([pd.DataFrame(columns), scorer.summarise(X, num_threads=0).frame()], axis=1)
    explained = (
        scorer.explain_columns(X, count=reasons, num_threads=0) if reasons > 0 and len(X) else None
    )
    return out, explained


def _no_reasons(rows: int) -> pa.Array:
    return pa.ListArray.from_arrays(
        pa.array(np.zeros(rows + 1, dtype=np.int32)), pa.array([], REASON_TYPE.value_type)
    )


def reason_arrow(side: ReasonSide, fields: tuple[str, ...]) -> pa.Array:
    """One side's reasons as the Arrow ``list<struct<field, text, contribution>>`` column."""
    names = np.asarray(fields, dtype=object)[side.field]
    items = pa.StructArray.from_arrays(
        [
            pa.array(names, pa.string()),
            pa.array(side.text, pa.string()),
            pa.array(side.contribution, pa.float64()),
        ],
        fields=list(REASON_TYPE.value_type),
    )
    return pa.ListArray.from_arrays(pa.array(side.offsets.astype(np.int32)), items)


def reason_json(side: ReasonSide, fields: tuple[str, ...]) -> list[str]:
    """One side's reasons per row as the JSON text ``json.dumps(reason_records(...))`` gives,
    each distinct field and text escaped once."""
    quoted = [json.dumps(name, ensure_ascii=False) for name in fields]
    texts, where = np.unique(side.text.astype(str), return_inverse=True)
    quoted_texts = [json.dumps(str(t), ensure_ascii=False) for t in texts]
    items = [
        f'{{"field": {quoted[f]}, "text": {quoted_texts[t]}, "contribution": {json.dumps(c)}}}'
        for f, t, c in zip(
            side.field.tolist(), where.reshape(-1).tolist(), side.contribution.tolist(), strict=True
        )
    ]
    bounds = side.offsets.tolist()
    return ["[" + ", ".join(items[a:b]) + "]" for a, b in itertools.pairwise(bounds)]


# ------------------------------------------------------------------- writing
class Writer:
    def __init__(self, path: Path, kind: str, targets: tuple[str, ...]) -> None:
        self.path = path
        self.kind = kind
        self.schema = pa.schema(
            [
                ("lead_id", pa.string()),
                ("as_of", pa.timestamp("us", tz="UTC")),
                *((f"p_{t}", pa.float64()) for t in targets),
                ("score", pa.int64()),
                ("grade", pa.string()),
                ("handoff", pa.bool_()),
                ("reasons_positive", REASON_TYPE),
                ("reasons_negative", REASON_TYPE),
            ]
        )
        self._parquet: pq.ParquetWriter | None = None
        self._first = True

    def write(self, frame: pd.DataFrame, reasons: ReasonColumns | None = None) -> None:
        """One chunk's scores (``frame``: every column but the reasons) and reasons."""
        sides = ("reasons_positive", "reasons_negative")
        fields = () if reasons is None else reasons.fields
        if self.kind == "parquet":
            scores = pa.schema([f for f in self.schema if f.name not in sides])
            table = pa.Table.from_pandas(frame, schema=scores, preserve_index=False)
            for name, side in zip(sides, _sides(reasons), strict=True):
                column = _no_reasons(len(frame)) if side is None else reason_arrow(side, fields)
                table = table.append_column(pa.field(name, REASON_TYPE), column)
            if self._parquet is None:
                self._parquet = pq.ParquetWriter(self.path, self.schema, compression="zstd")
            self._parquet.write_table(table)
            return
        text = frame.copy()
        text["as_of"] = pd.to_datetime(text["as_of"], utc=True).map(lambda t: t.isoformat())
        for name, side in zip(sides, _sides(reasons), strict=True):
            text[name] = ["[]"] * len(frame) if side is None else reason_json(side, fields)
        text.to_csv(self.path, mode="w" if self._first else "a", header=self._first, index=False)
        self._first = False

    def close(self) -> None:
        if self.kind == "parquet":
            if self._parquet is None:  # no rows: still a valid, empty file
                self._parquet = pq.ParquetWriter(self.path, self.schema, compression="zstd")
            self._parquet.close()
        elif self._first:
            pd.DataFrame(columns=self.schema.names).to_csv(self.path, index=False)


def _sides(reasons: ReasonColumns | None) -> tuple[ReasonSide | None, ReasonSide | None]:
    return (None, None) if reasons is None else (reasons.positive, reasons.negative)
