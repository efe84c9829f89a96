"""Scores of many leads at once into the score store (the queue stage, ``leadscore rescore``),
and the CRM-ready export of a rescoring: one row per lead with what sales sees in the CRM.

The export's columns (``CRM_COLUMNS``) are plain text and numbers, one header row, UTF-8, comma
separated: what Salesforce's Data Import Wizard / Data Loader and HubSpot's import take, each
column mapped once to a custom field (the README lists the suggested field names)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping

import numpy as np
import pandas as pd

from features import contract
from models.store import ScoreRecord, Source, Store
from models.store.history import Standing

CHUNK = 5000
"""Scores per write transaction."""
CRM_COLUMNS = (
    "lead_id",
    "score",
    "grade",
    "handoff",
    "trend",
    "reasons",
    "model_version",
    "scored_at",
)
REASONS_SHOWN = 3


def _texts(value: object) -> tuple[str, ...]:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ()
    return tuple(str(v) for v in list(value))  # type: ignore[call-overload]


def queue_records(
    queue: pd.DataFrame, primary: str, source: Source, scored_at: dt.datetime
) -> Iterator[ScoreRecord]:
    """The rows of a queue table (:func:`models.queue.sales_queue`) as score records."""
    targets = [c[2:] for c in queue.columns if str(c).startswith("p_")]
    for row in queue.to_dict("records"):
        probabilities = {t: float(row[f"p_{t}"]) for t in targets}
        yield ScoreRecord(
            lead_id=str(row["lead_id"]),
            as_of=pd.Timestamp(row["as_of"]).to_pydatetime(),
            scored_at=scored_at,
            model_name=str(row["model_name"]),
            model_version=str(row["model_version"]),
            probabilities=probabilities,
            probability=probabilities[primary],
            score=int(row["score"]),
            grade=row["grade"],
            handoff=bool(row["handoff"]),
            source=source,
            positive_reasons=_texts(row.get("reasons_positive")),
            negative_reasons=_texts(row.get("reasons_negative")),
        )


def record_queue(
    store: Store, queue: pd.DataFrame, primary: str, source: Source, scored_at: dt.datetime
) -> int:
    """Write every row of ``queue`` into ``store`` (transactions of :data:`CHUNK`)."""
    written = 0
    batch: list[ScoreRecord] = []
    for record in queue_records(queue, primary, source, scored_at):
        batch.append(record)
        if len(batch) == CHUNK:
            written += store.record(batch)
            batch = []
    if batch:
        written += store.record(batch)
    return written


def changed(queue: pd.DataFrame, found: Mapping[str, Standing]) -> np.ndarray:
    """Leads whose score or grade differs from their previous stored one (or never scored)."""
    out = np.ones(len(queue), dtype=bool)
    for i, (lead, score, grade) in enumerate(
        zip(queue["lead_id"].astype(str), queue["score"], queue["grade"], strict=True)
    ):
        previous = found[lead].previous if lead in found else None
        if previous is not None and previous.score == int(score) and previous.grade == grade:
            out[i] = False
    return out


def crm_export(
    queue: pd.DataFrame, found: Mapping[str, Standing], scored_at: dt.datetime
) -> pd.DataFrame:
    """One CRM row per lead of ``queue``: score, grade, handoff, trend, the top reasons as one
    text, the model version and when it was scored."""
    ids = queue["lead_id"].astype(str)
    reasons = [
        "; ".join(_texts(value)[:REASONS_SHOWN]) for value in queue.get("reasons_positive", [])
    ]
    return pd.DataFrame(
        {
            "lead_id": ids.to_numpy(),
            "score": queue["score"].astype(int).to_numpy(),
            "grade": queue["grade"].astype(str).to_numpy(),
            "handoff": queue["handoff"].astype(bool).to_numpy(),
            "trend": [found[i].trend if i in found else "not enough history" for i in ids],
            "reasons": reasons if reasons else [""] * len(queue),
            "model_version": queue["model_version"].astype(str).to_numpy(),
            "scored_at": scored_at.isoformat(),
        },
        columns=list(CRM_COLUMNS),
    )


def output_records(
    rows: pd.DataFrame,
    targets: tuple[str, ...],
    primary: str,
    model: Mapping[str, str],
    source: Source,
    scored_at: dt.datetime,
    reasons: int,
) -> Iterator[ScoreRecord]:
    """The rows of a ``leadscore score`` output (``lead_id``, ``as_of``, ``p_<target>``,
    ``score``, ``grade``, ``handoff``, ``reason_1…``, ``reason_negative_1…``) as records."""
    positive = [f"reason_{k}" for k in range(1, reasons + 1)]
    negative = [f"reason_negative_{k}" for k in range(1, reasons + 1)]
    for row in rows.to_dict("records"):
        probabilities = {t: float(row[f"p_{t}"]) for t in targets}
        yield ScoreRecord(
            lead_id=str(row["lead_id"]),
            as_of=contract.utc(row["as_of"]).to_pydatetime(),
            scored_at=scored_at,
            model_name=str(model["name"]),
            model_version=str(model["version"]),
            probabilities=probabilities,
            probability=probabilities[primary],
            score=int(row["score"]),
            grade=row["grade"],
            handoff=str(row["handoff"]).lower() in ("true", "1"),
            source=source,
            positive_reasons=tuple(str(row[c]) for c in positive if c in row and _text(row[c])),
            negative_reasons=tuple(str(row[c]) for c in negative if c in row and _text(row[c])),
        )


def _text(value: object) -> bool:
    return isinstance(value, str) and bool(value)
