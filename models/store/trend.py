"""The score-trend rule, on its own so that it reads in one place and tests can check the
store's SQL against it.

A lead's trend at ``now`` looks at its stored scores with ``now - window_days <= scored_at <=
now`` (both ends included). With fewer than two there, it is "not enough history". Otherwise
``change`` is the primary probability of the latest of them minus that of the oldest (by
``scored_at``, then by insertion order for equal times): ``change >= threshold`` is
"improving", ``change <= -threshold`` "declining", anything between "steady". The comparison
allows 1e-9 of float rounding, so that 0.10 → 0.15 counts as the 0.05 change it reads as
(0.15 - 0.10 is 0.04999… in binary). Scores in between do not matter: a lead that rose and
fell back is steady.
"""

from __future__ import annotations

import datetime as dt

from models.store.records import Direction, LeadTrend

TOLERANCE = 1e-9


def direction_of(change: float, threshold: float) -> Direction:
    if change >= threshold - TOLERANCE:
        return "improving"
    if change <= -threshold + TOLERANCE:
        return "declining"
    return "steady"


def lead_trend(
    oldest: float | None, latest: float | None, scores: int, threshold: float
) -> LeadTrend:
    """The trend of one lead from the oldest and latest probability in its window."""
    if scores < 2 or oldest is None or latest is None:
        return LeadTrend("not enough history", None, scores)
    change = latest - oldest
    return LeadTrend(direction_of(change, threshold), change, scores)


def window_start(now: dt.datetime, window_days: int) -> dt.datetime:
    return now - dt.timedelta(days=window_days)
