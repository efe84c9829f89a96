"""``leadscore score``: batch scoring of a leads table, with the API's answer per lead.

Input (CSV or Parquet, by extension):

- ``--input``: the leads table, one row per lead: the canonical lead columns of
  :data:`features.contract.LEADS` (``lead_id`` and ``created_at`` required) and, for a model
  trained on a flat export, its feature columns (``engine.lead_categoricals_`` /
  ``engine.numerics_``); other columns are ignored. An optional ``as_of`` column scores each
  lead at its own time; otherwise ``--as-of`` (default: now, one instant for the whole run).
  An as_of more than the quality-lead window after the model's data horizon (the end of its
  training data) is logged once as a warning: scored long after its own data end, every lead
  looks stale (usually the default "now" on an old export; pass ``--as-of``).
- ``--touches`` / ``--sales-events`` (optional): the canonical event tables of those leads
  (``lead_id``, ``occurred_at``, ``touch_type`` / ``stage``, …). Events at or after a lead's
  as_of are ignored, like everywhere else.

Output (CSV or Parquet, by extension), one row per input lead, in input order: ``lead_id``,
the ``--keep`` input columns unchanged (CSV text as read, Parquet columns with their type),
``as_of``, ``p_<target>`` per target, ``score``, ``grade``, ``handoff``, ``fit_score``,
``engagement_score``, ``grid`` (:mod:`models.axes`), ``p_converted_by_<d>d`` per timing
horizon, ``expected_conversion_date`` and ``expected_value`` (:mod:`models.timing`; null for a
model without timing), then the reasons as plain text, ``reason_1 … reason_N`` (positive,
strongest first) and ``reason_negative_1 … N``
(N = ``--reasons``; empty when a lead has fewer), the columns a CRM import maps to fields.
Parquet also has ``reasons_positive`` / ``reasons_negative``: lists of
``{field, text, contribution}``. The values are those of ``POST /v1/score`` for the same lead
and as_of (the engine's batch path computes the same features as its one-lead path).
``--reasons 0`` leaves them out: SHAP costs about 0.6 ms per lead and core, most of the time of
a large run.

The leads are read and scored ``--chunk`` rows at a time (the event tables are filtered to each
chunk's leads while they are read), so memory is bounded by the chunk, not the file: a million
leads fit. What grows with the file is 8 bytes a lead, the hashes of the ids seen so far (an id
repeated in a later chunk is refused: :class:`models.batch.SeenIds`). The output is written to
a temporary file and renamed at the end.
"""

from __future__ import annotations

import datetime as dt
import gc
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from features import contract
from features.errors import UserError
from features.storage import atomic_file
from models.batch import (
    EARLIEST,
    END_OF_TIME,
    EventSource,
    LeadFile,
    SeenIds,
    Writer,
    beyond_horizon,
    file_format,
    horizon_warning,
    lead_chunks,
    prepare_leads,
    score_chunk,
)
from models.packaging.loading import ModelLoadError, load
from models.rescoring import output_records, record_or_warn
from models.scorer import LeadScorer

logger = logging.getLogger(__name__)

COLLECT_EVERY = 50_000
"""Leads scored between two full collections of reference cycles. Each chunk's checks (Great
Expectations' context, batch and validator) leave cycles that hold the chunk's typed leads and
events; CPython collects its oldest generation only once it has grown by a quarter (some 400k
objects here), so they piled up: peak memory grew about 1 KB a lead (2.1 GB for a million
leads at ``--chunk 100000``; 1.38 GB collected). A collection takes 0.1–0.5 s, mostly freeing
what it finds: after every chunk of the default size, after every few small ones."""


# ----------------------------------------------------------------------- run
RECORD_SLICE = 5000
"""Scores per write transaction when a finished output is recorded."""


def parse_as_of(text: str | None) -> pd.Timestamp:
    if text is None:
        return pd.Timestamp(dt.datetime.now(dt.UTC))
    try:
        when = contract.utc(text)
    except (ValueError, TypeError, OverflowError):
        raise UserError(f"--as-of {text!r}: not an ISO timestamp") from None
    if not EARLIEST <= when < END_OF_TIME:
        raise UserError(
            f"--as-of {text!r}: timestamp out of range "
            f"(from {EARLIEST.date()} to before {END_OF_TIME.date()})"
        )
    return when


def parse_keep(values: Sequence[str] | None) -> tuple[str, ...]:
    """``--keep name,email --keep owner`` → ``("name", "email", "owner")``: comma-separated,
    repeatable, blanks dropped, each name once, in the order given."""
    names = (name.strip() for value in values or () for name in value.split(","))
    return tuple(dict.fromkeys(name for name in names if name))


def run(
    model: str,
    input: Path,
    output: Path,
    touches: Path | None = None,
    sales_events: Path | None = None,
    as_of: str | None = None,
    reasons: int = 3,
    chunk: int = 100_000,
    tracking_uri: str | None = None,
    keep: Sequence[str] = (),
) -> int:
    """Score ``input`` into ``output``; returns the number of leads scored. ``keep``: input
    columns carried through next to ``lead_id``."""
    out_kind = file_format(output, "--output")
    when = parse_as_of(as_of)
    leads_file = lead_chunks(input, chunk, keep)
    sources = {
        name: EventSource(path, contract.TABLES[name])
        for name, path in (("touches", touches), ("sales_events", sales_events))
        if path is not None
    }
    try:
        scorer, info = load(model, tracking_uri)
    except ModelLoadError as error:
        raise UserError(str(error)) from None
    timing = scorer.timing_
    horizons = () if timing is None else timing.horizons_days
    writer = Writer(output, out_kind, scorer.targets, leads_file.kept, reasons, horizons)
    answers = writer.answer_columns
    taken = [name for name in leads_file.kept.names if name in answers]
    if taken:
        raise UserError(
            f"{input}: --keep column {taken[0]!r} has the name of an output column "
            f"({', '.join(answers)}); rename it in the input or leave it out"
        )
    logger.info("scoring %s with %s version %s (as of %s)", input, info.name, info.version, when)
    chunks = Chunks(scorer, leads_file, sources, writer, when, as_of, reasons)
    collected = 0
    # A read-only directory or a full disk is one line naming the output
    # (features.storage's atomic writer translates it after removing its temporary file).
    with (
        atomic_file(output) as staging,
        tqdm(
            total=leads_file.rows, desc="score", unit="lead", unit_scale=True, disable=None
        ) as bar,
    ):
        writer.path = staging
        try:
            for frame, kept in leads_file.chunks:
                bar.update(chunks.score(frame, kept))
                del frame, kept  # not alive while the next chunk is read
                if chunks.scored - collected >= COLLECT_EVERY:
                    gc.collect()
                    collected = chunks.scored
        finally:
            writer.close()
    scored = chunks.scored
    logger.info("scored %d leads → %s", scored, output)
    record_output(output, out_kind, scorer, info.ref, reasons)
    return scored


def record_output(
    output: Path, kind: str, scorer: LeadScorer, model: dict[str, str], reasons: int
) -> int:
    """The finished output's scores into the score store (source ``batch``), read back from the
    file in slices: only a complete output is recorded, and the output stands whatever becomes
    of them."""
    scored_at = dt.datetime.now(dt.UTC)
    records = (
        record
        for rows in _output_slices(output, kind)
        for record in output_records(
            rows, scorer.targets, scorer.primary, model, "batch", scored_at, reasons
        )
    )
    return record_or_warn(records, Path.cwd(), None, "score")


def _output_slices(output: Path, kind: str, rows: int = RECORD_SLICE) -> Iterator[pd.DataFrame]:
    if kind == "parquet":
        for batch in pq.ParquetFile(output).iter_batches(batch_size=rows):
            yield batch.to_pandas()
        return
    yield from pd.read_csv(output, chunksize=rows, dtype={"lead_id": str}, keep_default_na=False)


class Chunks:
    """One run's chunks, scored one at a time: each chunk's frames live only in
    :meth:`score`, so none outlives its chunk (the previous chunk's events are not held while
    the next is read and scored)."""

    def __init__(
        self,
        scorer: LeadScorer,
        leads_file: LeadFile,
        sources: dict[str, EventSource],
        writer: Writer,
        when: pd.Timestamp,
        as_of: str | None,
        reasons: int,
    ) -> None:
        self.scorer = scorer
        self.input = leads_file.path
        self.sources = sources
        self.writer = writer
        self.when = when
        self.as_of = as_of
        self.reasons = reasons
        self.seen = SeenIds(leads_file.typed_ids)
        self.warned = False
        self.scored = 0

    def score(self, frame: pd.DataFrame, kept: pa.Table) -> int:
        """Check, score and write one chunk; returns its number of leads."""
        scorer, input = self.scorer, self.input
        leads, stamps = prepare_leads(frame, input, scorer, self.when, self.scored, self.seen)
        if not self.warned:
            self.warned = _warn_past_horizon(scorer, stamps, frame, input, self.as_of, self.scored)
        events = {name: source.for_leads(leads["lead_id"]) for name, source in self.sources.items()}
        result, explained = score_chunk(
            scorer, leads, stamps, events.get("touches"), events.get("sales_events"), self.reasons
        )
        self.writer.write(result, explained, kept)
        self.scored += len(result)
        return len(result)


def _warn_past_horizon(
    scorer: LeadScorer,
    stamps: pd.Series,
    frame: pd.DataFrame,
    path: Path,
    as_of: str | None,
    offset: int,
) -> bool:
    """Log the run's one warning if this chunk has an as_of far past the model's data
    horizon; True once warned (later chunks are not checked again)."""
    late = beyond_horizon(scorer, stamps)
    if late is None:
        return False
    positions, horizon = late
    # Rows with their own as_of name the column; the others took --as-of or now.
    own = positions[frame["as_of"].notna().to_numpy()[positions]] if "as_of" in frame else []
    chosen = own if len(own) else positions
    latest = stamps.iloc[chosen].max()
    if len(own):
        rows = ", ".join(f"{offset + int(i) + 1:,}" for i in own[:5])
        what = f"{path}: column 'as_of' (e.g. rows {rows}) reaches {latest.date()}, which"
    elif as_of is None:
        what = f"as_of {latest.date()} (now, as no --as-of was given)"
    else:
        what = f"--as-of {as_of!r}"
    logger.warning(horizon_warning(scorer, latest, horizon, what))
    return True
