"""A new score read against the stored history: each lead's previous score and the trend with
the new score as the newest point (the API's answers, ``leadscore rescore``). Two queries for
any number of leads."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

from features.params import TrendParams
from models.store.records import Direction, StoredScore
from models.store.store import HistoryEnds, Store
from models.store.trend import direction_of


@dataclass(frozen=True, slots=True)
class Standing:
    """A lead's previous stored score (None: never scored) and its trend with the new one."""

    previous: StoredScore | None
    trend: Direction


def standings(
    store: Store,
    probabilities: Mapping[str, float],
    now: dt.datetime,
    params: TrendParams | None = None,
) -> dict[str, Standing]:
    """``probabilities``: lead id → the new primary probability. The trend rule of
    :mod:`models.store.trend` over the stored scores of the window and the new one: the change
    from the oldest of them in the window to the new score."""
    params = params or TrendParams()
    return standings_from(
        store.history_ends(list(probabilities), now, params.window_days), probabilities, params
    )


def standings_from(
    ends: Mapping[str, HistoryEnds], probabilities: Mapping[str, float], params: TrendParams
) -> dict[str, Standing]:
    """The trend rule on history already read (:meth:`Store.history_ends`) and the new scores."""
    out: dict[str, Standing] = {}
    for lead, p in probabilities.items():
        end = ends.get(lead, HistoryEnds(None, 0, None))
        if end.previous is None or end.window_oldest is None or end.window_scores == 0:
            out[lead] = Standing(end.previous, "not enough history")
            continue
        out[lead] = Standing(end.previous, direction_of(p - end.window_oldest, params.threshold))
    return out
