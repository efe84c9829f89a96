"""What the store takes and gives back: one typed record per score and per sales verdict."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from models.store.schema import (
    ACTOR_MAX_CHARS,
    GRADES,
    NOTE_MAX_CHARS,
    REASON_MAX_CHARS,
    SOURCES,
    VERDICTS,
)

Source = Literal["api", "batch", "queue", "rescore"]
Grade = Literal["A", "B", "C", "D"]
Verdict = Literal["contacted", "accepted", "rejected"]
Direction = Literal["improving", "steady", "declining", "not enough history"]

# The Literals above spell the schema's CHECK constraints for the type checker;
# tests/models/store/test_schema.py checks that the two agree.


def _aware(name: str, value: dt.datetime) -> None:
    if not isinstance(value, dt.datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class ScoreRecord:
    """One score as given to a caller, to be recorded.

    ``probabilities`` maps every target to its calibrated probability; ``probability`` is the
    primary target's (the quality-lead target), the one trends are computed on. Reasons are
    stored as their texts, ``{"positive": [...], "negative": [...]}``, each side strongest
    first, as the answer listed them (the contributions are not kept: they are the model's
    internals of the day, the words are what the person was shown)."""

    lead_id: str
    as_of: dt.datetime
    scored_at: dt.datetime
    model_name: str
    model_version: str
    probabilities: Mapping[str, float]
    probability: float
    score: int
    grade: Grade
    handoff: bool
    source: Source
    positive_reasons: tuple[str, ...] = ()
    negative_reasons: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # checked here, in the caller's thread, so that a bad record is the caller's error
        # and never fails a whole batch in the recorder's thread
        _aware("as_of", self.as_of)
        _aware("scored_at", self.scored_at)
        if not self.lead_id:
            raise ValueError("lead_id must not be empty")
        if not 0 <= self.score <= 100:
            raise ValueError(f"score must be within 0–100, got {self.score}")
        if self.grade not in GRADES:
            raise ValueError(f"grade must be one of {GRADES}, got {self.grade!r}")
        if self.source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got {self.source!r}")
        if not 0.0 <= self.probability <= 1.0:  # also refuses NaN
            raise ValueError(f"probability must be within 0–1, got {self.probability}")

    def row(self) -> dict[str, object]:
        """The ``scores`` row (without its id)."""
        return {
            "lead_id": self.lead_id,
            "as_of": self.as_of,
            "scored_at": self.scored_at,
            "model_name": self.model_name,
            "model_version": self.model_version,
            "probabilities": {str(k): float(v) for k, v in self.probabilities.items()},
            "probability": float(self.probability),
            "score": int(self.score),
            "grade": self.grade,
            "handoff": bool(self.handoff),
            "reasons": {
                "positive": list(self.positive_reasons),
                "negative": list(self.negative_reasons),
            },
            "source": self.source,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredScore(ScoreRecord):
    """A recorded score, with the id the store gave it (ids grow with insertion order)."""

    id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class FeedbackRecord:
    """Sales' verdict on a lead: ``occurred_at`` is when it was given (which may be earlier
    than when it reaches the store, e.g. from a CRM sync), ``actor`` who gave it."""

    lead_id: str
    verdict: Verdict
    occurred_at: dt.datetime
    reason: str | None = None
    note: str | None = None
    actor: str | None = None

    def __post_init__(self) -> None:
        _aware("occurred_at", self.occurred_at)
        if not self.lead_id:
            raise ValueError("lead_id must not be empty")
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")
        for name, value, bound in (
            ("note", self.note, NOTE_MAX_CHARS),
            ("actor", self.actor, ACTOR_MAX_CHARS),
            ("reason", self.reason, REASON_MAX_CHARS),
        ):
            if value is not None and len(value) > bound:
                raise ValueError(f"{name} is {len(value)} characters, at most {bound} are kept")


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredFeedback(FeedbackRecord):
    """A recorded verdict: its id and when the store received it."""

    id: int
    recorded_at: dt.datetime


@dataclass(frozen=True, slots=True)
class LeadTrend:
    """A lead's score trend (see :func:`models.store.trend.direction_of` for the rule):
    ``change`` is latest minus oldest primary probability within the window (None with fewer
    than two scores there), ``scores`` how many scores the window holds."""

    direction: Direction
    change: float | None
    scores: int
