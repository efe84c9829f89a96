"""Sales' verdicts and the stored history of a lead, read from and written to the score store
(:mod:`models.store`) for the dashboard and ``/v1/leads/…``. Every reader degrades to nothing
when the store is off or down: the queue and the lead page still show what the pipeline made."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import pandas as pd

from features.params import FeedbackParams
from models.store import Store, StoredScore
from serving.artifacts import json_safe

logger = logging.getLogger(__name__)

SCORES_ON_PAGE = 50


def feedback_choices(params: FeedbackParams) -> dict[str, list[str]]:
    return {"rejected": list(params.reject_reasons), "accepted": list(params.accept_reasons)}


def _feedback_frame(store: Store) -> pd.DataFrame | None:
    if not store.enabled:
        return None
    try:
        return store.feedback()
    except Exception as error:  # a store that is down shows no verdicts, the queue still shows
        logger.warning("score store: feedback not readable (%s)", type(error).__name__)
        return None


def latest_verdicts(store: Store) -> dict[str, dict[str, Any]]:
    """Each lead's latest verdict (by when it was given, then by arrival)."""
    frame = _feedback_frame(store)
    if frame is None or not len(frame):
        return {}
    latest = frame.sort_values(["occurred_at", "id"], kind="stable").groupby("lead_id").tail(1)
    return {
        str(row["lead_id"]): {
            "verdict": row["verdict"],
            "reason": row["reason"] if pd.notna(row["reason"]) else None,
            "occurred_at": json_safe(pd.Timestamp(row["occurred_at"])),
        }
        for row in latest.to_dict("records")
    }


def lead_feedback(store: Store, lead_id: str) -> list[dict[str, Any]]:
    frame = _feedback_frame(store)
    if frame is None or not len(frame):
        return []
    mine = frame[frame["lead_id"].astype(str) == lead_id]
    return [{str(k): json_safe(v) for k, v in row.items()} for row in mine.to_dict("records")]


def score_entry(item: StoredScore) -> dict[str, Any]:
    return {
        "scored_at": item.scored_at.isoformat(),
        "as_of": item.as_of.isoformat(),
        "score": item.score,
        "grade": item.grade,
        "probability": item.probability,
        "probabilities": dict(item.probabilities),
        "handoff": item.handoff,
        "model": {"name": item.model_name, "version": item.model_version},
        "model_version": item.model_version,
        "source": item.source,
        "reasons_positive": list(item.positive_reasons),
        "reasons_negative": list(item.negative_reasons),
    }


def lead_scores(store: Store, lead_id: str, limit: int = SCORES_ON_PAGE) -> list[dict[str, Any]]:
    if not store.enabled:
        return []
    try:
        return [score_entry(item) for item in store.history(lead_id, limit=limit)]
    except Exception as error:
        logger.warning("score store: history not readable (%s)", type(error).__name__)
        return []


def with_trends(rows: list[dict[str, Any]], store: Store) -> list[dict[str, Any]]:
    """Each queue row with its ``trend`` from the stored history (null when there is none to
    read): one query for the page."""
    for row in rows:
        row["trend"] = None
    if not store.enabled or not rows:
        return rows
    try:
        trends = store.trend([str(r["lead_id"]) for r in rows], dt.datetime.now(dt.UTC))
    except Exception as error:
        logger.warning("score store: trends not readable (%s)", type(error).__name__)
        return rows
    for row in rows:
        found = trends.get(str(row["lead_id"]))
        row["trend"] = found.direction if found is not None else None
    return rows
