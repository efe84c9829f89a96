"""Batch scoring: a leads table (and its event tables) read in chunks, each chunk checked with
the validate stage's own rules, scored with :class:`~models.scorer.LeadScorer` on all cores, and
written incrementally as the API's answer per lead (``leadscore score`` runs it; see
:mod:`pipelines.score` for the file formats)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
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
from features.validation.coercion import coerce
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


Chunks = Iterator[tuple[pd.DataFrame, pa.Table]]


@dataclass
class LeadFile:
    """The leads table, read in chunks: each chunk as the frame to check and score and, beside
    it, the ``--keep`` columns exactly as read (Arrow, so a Parquet column keeps its type and
    a CSV cell its text: ``00123`` stays ``00123``). ``rows``: the row count when known.
    ``reread``: the same chunks again from the first row (a new read of the file)."""

    chunks: Chunks
    rows: int | None
    kept: pa.Schema
    path: Path
    reread: Callable[[], Chunks]

    def typed_ids(self) -> Iterator[pd.Series]:
        """The file's lead ids again from the first row, chunk by chunk, typed as
        :func:`prepare_leads` saw them (the contract's coercion of the same chunk: the same
        text for the same cell), for :class:`SeenIds` to confirm a repeated id."""
        for frame, _ in self.reread():
            typed, _ = coerce(contract.LEADS, frame, self.path)
            yield lead_ids(typed)


def lead_chunks(path: Path, chunk: int, keep: Sequence[str] = ()) -> LeadFile:
    """The leads table in chunks (strings stay strings), with its ``keep`` columns. CSV is
    read as the validate stage reads it (delimiter and encoding sniffed, empty strings null);
    an empty, header-only, binary or truncated file, or a ``keep`` column it lacks, is one
    :class:`UserError` line."""
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
    unknown = [name for name in keep if name not in columns]
    if unknown:
        shown = ", ".join(columns[:30])
        if len(columns) > 30:  # a wide export: enough to spot a misspelling, not a screenful
            shown += f", … ({len(columns):,} in all)"
        raise UserError(
            f"{path}: --keep column {unknown[0]!r} is not in the file (columns: {shown})"
        )
    if kind == "parquet":
        kept = pa.schema([handle.schema_arrow.field(name) for name in keep])
    else:
        kept = pa.schema([(name, pa.string()) for name in keep])  # CSV cells are text

    def rows() -> Chunks:
        if kind == "parquet":
            if handle.metadata.num_rows == 0:
                raise UserError(f"{path}: header only, no rows")
            try:
                for batch in handle.iter_batches(batch_size=chunk):
                    if batch.num_rows:
                        table = pa.Table.from_batches([batch])
                        yield batch.to_pandas(), table.select(list(keep)).replace_schema_metadata()
                        del batch, table  # not held while the next chunk is read and scored
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
                    # Taken before the checks type the frame (created_at, numeric features).
                    table = pa.Table.from_pandas(
                        frame[list(keep)], schema=kept, preserve_index=False
                    )
                    yield frame, table.replace_schema_metadata()
                    del table
                del frame  # not held while the next chunk is read and scored
        except (pd.errors.ParserError, UnicodeDecodeError, EOFError, OSError) as error:
            raise csv_error(path, error) from None
        if not seen_rows:
            raise UserError(f"{path}: header only, no rows")

    total = handle.metadata.num_rows if kind == "parquet" else None
    return LeadFile(rows(), total, kept, path, rows)


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


# ------------------------------------------------------------ duplicate ids
def lead_ids(typed: pd.DataFrame) -> pd.Series:
    """A checked chunk's lead ids as the text the duplicate check compares."""
    return typed["lead_id"].astype(str)


def id_hashes(ids: pd.Series) -> np.ndarray:
    """64-bit hashes of lead ids: pandas' SipHash-2-4 of each id's UTF-8 bytes under a fixed
    key, so an id has the same hash in every chunk and every run. Per value
    (``categorize=False``): 4x faster than factorizing the mostly unique ids first."""
    return pd.util.hash_array(np.asarray(ids, dtype=object), categorize=False)


def _members(sorted_hashes: np.ndarray, hashes: np.ndarray) -> np.ndarray:
    """Mask of ``hashes`` present in the sorted array ``sorted_hashes``."""
    if not len(sorted_hashes):
        return np.zeros(len(hashes), dtype=bool)
    at = np.minimum(np.searchsorted(sorted_hashes, hashes), len(sorted_hashes) - 1)
    return np.asarray(sorted_hashes[at] == hashes)


class SeenIds:
    """The lead ids of the chunks checked so far, for refusing an id repeated in a later
    chunk, in 8 bytes a lead: their 64-bit hashes (:func:`id_hashes`) in one sorted array. A
    Python set of the ids themselves cost about 100 bytes a lead (130 MB for a million) and
    its ``isin`` rebuilt an array of every earlier id per chunk.

    A hash found again is confirmed against the earlier ids themselves, read again from the
    file (``earlier``: the typed ids chunk by chunk from the first row, e.g.
    :meth:`LeadFile.typed_ids`), so two distinct ids that share a hash are never refused.
    That re-read happens only on the way to a duplicate-id error, or for a real collision
    (for a million ids, about one chance in 37 million: n² / 2⁶⁵)."""

    def __init__(
        self,
        earlier: Callable[[], Iterator[pd.Series]],
        hasher: Callable[[pd.Series], np.ndarray] | None = None,
    ) -> None:
        self._earlier = earlier
        self._hasher = hasher or id_hashes  # looked up here: tests give colliding hashes
        self._hashes = np.empty(0, dtype=np.uint64)
        self.count = 0
        """Ids added so far (the rows of the earlier chunks)."""

    @property
    def nbytes(self) -> int:
        """Memory held: 8 bytes per id added."""
        return int(self._hashes.nbytes)

    def repeated(self, ids: pd.Series) -> np.ndarray:
        """Mask of ``ids`` that are among the ids added before (exactly: by their text)."""
        hashes = self._hasher(ids)
        hit = _members(self._hashes, hashes)
        if not hit.any():
            return hit
        wanted = np.unique(hashes[hit])
        earlier: set[str] = set()
        rows = 0
        for chunk in self._earlier():
            chunk = chunk.iloc[: self.count - rows]  # only the rows added, not this chunk's
            rows += len(chunk)
            earlier.update(chunk[_members(wanted, self._hasher(chunk))])
            if rows >= self.count:
                break
        return hit & ids.isin(earlier).to_numpy(dtype=bool)

    def add(self, ids: pd.Series) -> None:
        fresh = np.sort(self._hasher(ids))
        # One merge per chunk: a copy of the array, not a sort of all of it.
        self._hashes = np.insert(self._hashes, np.searchsorted(self._hashes, fresh), fresh)
        self.count += len(ids)


def prepare_leads(
    frame: pd.DataFrame,
    path: Path,
    scorer: LeadScorer,
    default_as_of: pd.Timestamp,
    offset: int,
    seen: SeenIds | None = None,
) -> tuple[pd.DataFrame, pd.Series]:
    """Checked leads of one chunk and their as_of (per row, or the run's). ``seen``: the ids
    of the earlier chunks (updated here), so an id repeated across chunks is refused too."""
    frame = check_table(contract.LEADS, frame, path, first_row=offset + 1)
    check_time_range(frame["created_at"], "created_at", path, first_row=offset + 1)
    if seen is not None:
        ids = lead_ids(frame)
        again = seen.repeated(ids)
        if again.any():
            first = int(np.flatnonzero(again)[0])
            raise UserError(
                f"{path}: column 'lead_id': {int(again.sum()):,} ids of rows "
                f"{offset + 1:,}–{offset + len(frame):,} appeared in earlier rows "
                f"(e.g. {ids.iloc[first]!r} in row {offset + first + 1:,}): duplicate id"
            )
        seen.add(ids)
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
    explained: ReasonColumns | None = None
    if reasons > 0 and len(X):  # one pass of tree decisions for the axes and the reasons
        summary, explained = scorer.summarise_explained_columns(X, reasons, num_threads=0)
    else:
        summary = scorer.summarise(X, num_threads=0)
    frame = pd.DataFrame(columns)
    out = pd.concat([frame, summary.frame(), summary.timing_columns(frame["as_of"])], axis=1)
    return out, explained


# ------------------------------------------------------------------- horizon
def data_horizon(scorer: LeadScorer) -> pd.Timestamp | None:
    """The end of the model's training data (the feature engine's fit horizon), if known."""
    ms = getattr(scorer.engine, "horizon_ms_", None)
    return None if ms is None else pd.Timestamp(int(ms), unit="ms", tz="UTC")


def beyond_horizon(scorer: LeadScorer, as_of: pd.Series) -> tuple[np.ndarray, pd.Timestamp] | None:
    """Positions of the as_of times later than the model's data horizon by more than its
    quality-lead window, and the horizon; None when none are (or the horizon is unknown).
    Such scores count lead ages and days since the last touch up to a time the training data
    never reached, while campaign and channel rates stop at the horizon: usually a leads file
    scored at the default "now" long after its own data ends."""
    horizon = data_horizon(scorer)
    if horizon is None or not len(as_of):
        return None
    limit = horizon + pd.Timedelta(days=scorer.definition.window_days)
    late = (as_of > limit).to_numpy(dtype=bool)
    return (np.flatnonzero(late), horizon) if late.any() else None


def horizon_warning(
    scorer: LeadScorer, late_as_of: pd.Timestamp, horizon: pd.Timestamp, what: str
) -> str:
    """The one line that says how far ``what`` (the as_of it names) lies past the horizon and
    how to score as of the data's own time instead."""
    days = (late_as_of - horizon) / pd.Timedelta(days=1)
    stamp = horizon.strftime("%Y-%m-%dT%H:%M:%SZ")
    return (
        f"{what} is {days:,.0f} days after the model's data horizon {horizon.date()} "
        f"(more than its {scorer.definition.window_days}-day quality-lead window): lead ages "
        f"and days since the last touch are counted up to that time; to score the data as of "
        f"its own time pass --as-of {stamp} (or an as_of column per lead)"
    )


# ------------------------------------------------------------------- writing
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


def reason_texts(side: ReasonSide | None, count: int, rows: int) -> list[pa.Array]:
    """One side's reasons as ``count`` plain text columns: column k holds each row's k-th
    strongest reason's words, null when the row has fewer (one Arrow ``take`` per column)."""
    if side is None:
        return [pa.nulls(rows, pa.string()) for _ in range(count)]
    texts = pa.array(side.text, pa.string())
    starts = side.offsets[:-1].astype(np.int64)
    lengths = np.diff(side.offsets)
    return [texts.take(pa.array(starts + k, pa.int64(), mask=lengths <= k)) for k in range(count)]


def reason_column_names(count: int) -> list[str]:
    """``reason_1 … reason_N`` (positive, strongest first), then ``reason_negative_1 …``."""
    return [f"reason_{k}" for k in range(1, count + 1)] + [
        f"reason_negative_{k}" for k in range(1, count + 1)
    ]


class Writer:
    """The output, one chunk at a time. Columns, in both formats: ``lead_id``, the ``--keep``
    columns (``kept``), ``as_of``, ``p_<target>`` per target, ``score``, ``grade``,
    ``handoff``, ``fit_score``, ``engagement_score``, ``grid``, ``segment`` (the model used:
    a segment's or ``pooled``), ``p_converted_by_<d>d`` per
    timing horizon, ``expected_conversion_date``, ``expected_value``, then the reasons as plain text
    (``reason_1 … reason_N``, positive, and ``reason_negative_1 … N``; N = ``reasons``, none
    when 0), as a CRM import wants them.
    Parquet adds the structured lists ``reasons_positive`` / ``reasons_negative``
    (``{field, text, contribution}``, the API's reasons bit for bit)."""

    def __init__(
        self,
        path: Path,
        kind: str,
        targets: tuple[str, ...],
        kept: pa.Schema | None = None,
        reasons: int = 0,
        horizons_days: tuple[int, ...] = (),
    ) -> None:
        self.path = path
        self.kind = kind
        self.reasons = reasons
        self.kept = kept if kept is not None else pa.schema([])
        self.scores = pa.schema(
            [
                ("lead_id", pa.string()),
                ("as_of", pa.timestamp("us", tz="UTC")),
                *((f"p_{t}", pa.float64()) for t in targets),
                ("score", pa.int64()),
                ("grade", pa.string()),
                ("handoff", pa.bool_()),
                ("fit_score", pa.int64()),
                ("engagement_score", pa.int64()),
                ("grid", pa.string()),
                ("segment", pa.string()),
                *((f"p_converted_by_{d}d", pa.float64()) for d in horizons_days),
                ("expected_conversion_date", pa.string()),
                ("expected_value", pa.float64()),
            ]
        )
        lists = [
            pa.field("reasons_positive", REASON_TYPE),
            pa.field("reasons_negative", REASON_TYPE),
        ]
        texts = [pa.field(name, pa.string()) for name in reason_column_names(reasons)]
        tail = [*list(self.scores)[1:], *texts, *(lists if kind == "parquet" else [])]
        # The columns the run writes itself (a --keep column may not reuse a name).
        self.answer_columns = ["lead_id", *(field.name for field in tail)]
        self.schema = pa.schema([self.scores.field("lead_id"), *self.kept, *tail])
        self._parquet: pq.ParquetWriter | None = None
        self._first = True

    def write(
        self,
        frame: pd.DataFrame,
        reasons: ReasonColumns | None = None,
        kept: pa.Table | None = None,
    ) -> None:
        """One chunk's scores (``frame``: every column but the reasons), reasons and kept
        input columns (the chunk's rows in the same order)."""
        rows = len(frame)
        if len(self.kept) and kept is not None and kept.num_rows != rows:  # no columns: 0 rows
            raise ValueError(f"{kept.num_rows} kept rows for {rows} scored rows")
        positive, negative = _sides(reasons)
        names = reason_column_names(self.reasons)
        plain = reason_texts(positive, self.reasons, rows)
        plain += reason_texts(negative, self.reasons, rows)
        if self.kind == "parquet":
            table = pa.Table.from_pandas(frame, schema=self.scores, preserve_index=False)
            for position, field in enumerate(self.kept, start=1):
                table = table.add_column(position, field, _column(kept, field.name))
            for name, column in zip(names, plain, strict=True):
                table = table.append_column(pa.field(name, pa.string()), column)
            fields = () if reasons is None else reasons.fields
            for name, side in (("reasons_positive", positive), ("reasons_negative", negative)):
                column = _no_reasons(rows) if side is None else reason_arrow(side, fields)
                table = table.append_column(pa.field(name, REASON_TYPE), column)
            if self._parquet is None:
                self._parquet = pq.ParquetWriter(self.path, self.schema, compression="zstd")
            self._parquet.write_table(table)
            return
        text = frame.reset_index(drop=True)
        text["as_of"] = pd.to_datetime(text["as_of"], utc=True).map(lambda t: t.isoformat())
        for position, field in enumerate(self.kept, start=1):
            # Arrow-backed, so a nullable integer is written as 3, not 3.0, and text as read.
            values = _column(kept, field.name).to_pandas(types_mapper=pd.ArrowDtype)
            text.insert(position, field.name, values)
        for name, column in zip(names, plain, strict=True):
            text[name] = column.to_pandas(types_mapper=pd.ArrowDtype)
        text.to_csv(self.path, mode="w" if self._first else "a", header=self._first, index=False)
        self._first = False

    def close(self) -> None:
        if self.kind == "parquet":
            if self._parquet is None:  # no rows: still a valid, empty file
                self._parquet = pq.ParquetWriter(self.path, self.schema, compression="zstd")
            self._parquet.close()
        elif self._first:
            pd.DataFrame(columns=self.schema.names).to_csv(self.path, index=False)


def _column(kept: pa.Table | None, name: str) -> pa.ChunkedArray:
    if kept is None:
        raise ValueError(f"no kept columns given for {name!r}")
    return kept.column(name)


def _sides(reasons: ReasonColumns | None) -> tuple[ReasonSide | None, ReasonSide | None]:
    return (None, None) if reasons is None else (reasons.positive, reasons.negative)
