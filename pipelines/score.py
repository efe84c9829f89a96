"""``leadscore score``: batch scoring of a leads table, with the API's answer per lead.

Input (CSV or Parquet, by extension):

- ``--input``: the leads table, one row per lead: the canonical lead columns of
  :data:`features.contract.LEADS` (``lead_id`` and ``created_at`` required) and, for a model
  trained on a flat export, its feature columns (``engine.lead_categoricals_`` /
  ``engine.numerics_``); other columns are ignored. An optional ``as_of`` column scores each
  lead at its own time; otherwise ``--as-of`` (default: now, one instant for the whole run).
- ``--touches`` / ``--sales-events`` (optional): the canonical event tables of those leads
  (``lead_id``, ``occurred_at``, ``touch_type`` / ``stage``, …). Events at or after a lead's
  as_of are ignored, like everywhere else.

Output (CSV or Parquet, by extension), one row per input lead, in input order: ``lead_id``,
``as_of``, ``p_<target>`` per target, ``score``, ``grade``, ``handoff``, ``reasons_positive``,
``reasons_negative``; the same values as ``POST /v1/score`` for the same lead and as_of (the
engine's batch path computes the same features as its one-lead path). Reasons are lists of
``{field, text, contribution}`` in Parquet, JSON text in CSV. ``--reasons 0`` leaves them
empty: SHAP costs about 0.6 ms per lead and core, most of the time of a large run.

The leads are read and scored ``--chunk`` rows at a time (the event tables are filtered to each
chunk's leads while they are read), so memory is bounded by the chunk, not the file: a million
leads fit. The output is written to a temporary file and renamed at the end.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from features import contract
from features.errors import UserError
from features.storage import atomic_file
from models.batch import (
    EARLIEST,
    END_OF_TIME,
    EventSource,
    Writer,
    file_format,
    lead_chunks,
    prepare_leads,
    score_chunk,
)
from models.packaging.loading import ModelLoadError, load

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------- run
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
) -> int:
    """Score ``input`` into ``output``; returns the number of leads scored."""
    out_kind = file_format(output, "--output")
    when = parse_as_of(as_of)
    chunks, total = lead_chunks(input, chunk)
    sources = {
        name: EventSource(path, contract.TABLES[name])
        for name, path in (("touches", touches), ("sales_events", sales_events))
        if path is not None
    }
    try:
        scorer, info = load(model, tracking_uri)
    except ModelLoadError as error:
        raise UserError(str(error)) from None
    logger.info("scoring %s with %s version %s (as of %s)", input, info.name, info.version, when)
    writer = Writer(output, out_kind, scorer.targets)
    scored = 0
    seen: set[str] = set()
    # A read-only directory or a full disk is one line naming the output
    # (features.storage's atomic writer translates it after removing its temporary file).
    with (
        atomic_file(output) as staging,
        tqdm(total=total, desc="score", unit="lead", unit_scale=True, disable=None) as bar,
    ):
        writer.path = staging
        try:
            for frame in chunks:
                leads, stamps = prepare_leads(frame, input, scorer, when, scored, seen)
                events = {
                    name: source.for_leads(leads["lead_id"]) for name, source in sources.items()
                }
                result, explained = score_chunk(
                    scorer,
                    leads,
                    stamps,
                    events.get("touches"),
                    events.get("sales_events"),
                    reasons,
                )
                writer.write(result, explained)
                scored += len(result)
                bar.update(len(result))
        finally:
            writer.close()
    logger.info("scored %d leads → %s", scored, output)
    return scored
