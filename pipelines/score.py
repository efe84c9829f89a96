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
``as_of``, ``p_<target>`` per target, ``score``, ``grade``, ``handoff``, then the reasons as
plain text, ``reason_1 … reason_N`` (positive, strongest first) and ``reason_negative_1 … N``
(N = ``--reasons``; empty when a lead has fewer), the columns a CRM import maps to fields.
Parquet also has ``reasons_positive`` / ``reasons_negative``: lists of
``{field, text, contribution}``. The values are those of ``POST /v1/score`` for the same lead
and as_of (the engine's batch path computes the same features as its one-lead path).
``--reasons 0`` leaves them out: SHAP costs about 0.6 ms per lead and core, most of the time of
a large run.

The leads are read and scored ``--chunk`` rows at a time (the event tables are filtered to each
chunk's leads while they are read), so memory is bounded by the chunk, not the file: a million
leads fit. The output is written to a temporary file and renamed at the end.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
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
    beyond_horizon,
    file_format,
    horizon_warning,
    lead_chunks,
    prepare_leads,
    score_chunk,
)
from models.packaging.loading import ModelLoadError, load
from models.scorer import LeadScorer

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
    writer = Writer(output, out_kind, scorer.targets, leads_file.kept, reasons)
    answers = writer.answer_columns
    taken = [name for name in leads_file.kept.names if name in answers]
    if taken:
        raise UserError(
            f"{input}: --keep column {taken[0]!r} has the name of an output column "
            f"({', '.join(answers)}); rename it in the input or leave it out"
        )
    logger.info("scoring %s with %s version %s (as of %s)", input, info.name, info.version, when)
    warned = False
    scored = 0
    seen: set[str] = set()
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
                leads, stamps = prepare_leads(frame, input, scorer, when, scored, seen)
                if not warned:
                    warned = _warn_past_horizon(scorer, stamps, frame, input, as_of, scored)
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
                writer.write(result, explained, kept)
                scored += len(result)
                bar.update(len(result))
        finally:
            writer.close()
    logger.info("scored %d leads → %s", scored, output)
    return scored


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
