"""Sample records for the store's tests."""

from __future__ import annotations

import datetime as dt

from models.store import ScoreRecord

T0 = dt.datetime(2026, 3, 1, 9, 30, tzinfo=dt.UTC)


def score(
    lead_id: str = "L1",
    *,
    at: dt.datetime = T0,
    probability: float = 0.3,
    score_value: int | None = None,
    source: str = "api",
    as_of: dt.datetime | None = None,
) -> ScoreRecord:
    """A plausible score record (the primary target is ``converted``)."""
    value = round(100 * probability) if score_value is None else score_value
    return ScoreRecord(
        lead_id=lead_id,
        as_of=as_of or at,
        scored_at=at,
        model_name="lead-scoring",
        model_version="3",
        probabilities={"converted": probability, "accepted": min(1.0, probability * 2)},
        probability=probability,
        score=value,
        grade="A" if probability >= 0.4 else "B" if probability >= 0.2 else "D",
        handoff=probability >= 0.2,
        source=source,  # type: ignore[arg-type]
        positive_reasons=("attended a webinar 3 days ago", "seniority: vp"),
        negative_reasons=("no demo requests",),
    )
