"""Batch scoring: a leads table (and its event tables) read in chunks, each chunk checked with
the validate stage's own rules, scored with :class:`~models.scorer.LeadScorer` on all cores, and
written incrementally as the API's answer per lead (``leadscore score`` runs it; see
:mod:`pipelines.score` for the file formats)."""

from __future__ import annotations

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
from features.ingest.readers import WRITABLE_SUFFIXES, file_kind
from features.validation.validate import check_table
from models.reasons import reason_records
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
def _leads_columns(path: Path, kind: str) -> list[str]:
    if kind == "parquet":
        return list(pq.ParquetFile(path).schema_arrow.names)
    return list(pd.read_csv(path, nrows=0).columns)


def lead_chunks(path: Path, chunk: int) -> tuple[Iterator[pd.DataFrame], int | None]:
    """The leads table in chunks (strings stay strings), and its row count when known."""
    kind = file_format(path, "--input")
    if not path.exists():
        raise UserError(f"{path}: file not found")
    columns = _leads_columns(path, kind)
    missing = [c for c in contract.LEADS.required_columns if c not in columns]
    if missing:
        raise UserError(f"{path}: column {missing[0]!r} is missing (required: lead_id, created_at)")
    if kind == "parquet":
        handle = pq.ParquetFile(path)

        def parquet() -> Iterator[pd.DataFrame]:
            for batch in handle.iter_batches(batch_size=chunk):
                yield batch.to_pandas()

        return parquet(), handle.metadata.num_rows

    def csv() -> Iterator[pd.DataFrame]:
        yield from pd.read_csv(path, chunksize=chunk, dtype=str, keep_default_na=True)

    return csv(), None


class EventSource:
    """One event table, filtered to a chunk's leads as it is read (streaming scan)."""

    def __init__(self, path: Path, table: contract.Table) -> None:
        kind = file_format(path, f"--{table.name.replace('_', '-')}")
        if not path.exists():
            raise UserError(f"{path}: file not found")
        self.path = path
        self.table = table
        if kind == "parquet":
            self.dataset = ds.dataset(path, format="parquet")
        else:
            names = pd.read_csv(path, nrows=0).columns
            types = {name: pa.string() for name in names}
            self.dataset = ds.dataset(
                path,
                format=ds.CsvFileFormat(convert_options=pacsv.ConvertOptions(column_types=types)),
            )
        present = set(self.dataset.schema.names)
        missing = [c for c in table.required_columns if c not in present]
        if missing:
            raise UserError(f"{path}: column {missing[0]!r} is missing")
        self.columns = [c.name for c in table if c.name in present]

    def for_leads(self, lead_ids: pd.Series) -> pd.DataFrame:
        wanted = pa.array(lead_ids.astype(str).unique(), type=pa.string())
        keep = pc.field("lead_id").cast(pa.string()).isin(wanted)
        frame = self.dataset.to_table(columns=self.columns, filter=keep).to_pandas()
        frame["lead_id"] = frame["lead_id"].astype(str)
        return check_table(self.table, frame, self.path, example_column="lead_id")


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
) -> tuple[pd.DataFrame, pd.Series]:
    """Checked leads of one chunk and their as_of (per row, or the run's)."""
    frame = check_table(contract.LEADS, frame, path, first_row=offset + 1)
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
) -> pd.DataFrame:
    # Series, not .to_numpy(): a tz-aware column would become an object array of Timestamps.
    columns = {"lead_id": leads["lead_id"], "as_of": as_of.reset_index(drop=True)}
    X = scorer.engine.transform(pd.DataFrame(columns), leads, touches, sales_events)
    out = pd.concat([pd.DataFrame(columns), scorer.summarise(X, num_threads=0).frame()], axis=1)
    explained = scorer.explain(X, count=reasons, num_threads=0)
    out["reasons_positive"] = [reason_records(p) for p, _ in explained]
    out["reasons_negative"] = [reason_records(n) for _, n in explained]
    return out


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

    def write(self, frame: pd.DataFrame) -> None:
        if self.kind == "parquet":
            table = pa.Table.from_pandas(frame, schema=self.schema, preserve_index=False)
            if self._parquet is None:
                self._parquet = pq.ParquetWriter(self.path, self.schema, compression="zstd")
            self._parquet.write_table(table)
            return
        text = frame.copy()
        text["as_of"] = pd.to_datetime(text["as_of"], utc=True).map(lambda t: t.isoformat())
        for column in ("reasons_positive", "reasons_negative"):
            text[column] = [json.dumps(v, ensure_ascii=False) for v in text[column]]
        text.to_csv(self.path, mode="w" if self._first else "a", header=self._first, index=False)
        self._first = False

    def close(self) -> None:
        if self.kind == "parquet":
            if self._parquet is None:  # no rows: still a valid, empty file
                self._parquet = pq.ParquetWriter(self.path, self.schema, compression="zstd")
            self._parquet.close()
        elif self._first:
            pd.DataFrame(columns=self.schema.names).to_csv(self.path, index=False)
