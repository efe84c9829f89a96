"""A new score read against the stored history: each lead's previous score and the trend with
the new score as the newest point (the API's answers, ``leadscore rescore``). Two queries for
any number of leads."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from features.params import TrendParams
from models.store.records import Direction, StoredScore
from models.store.store import Store
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
    ids: Sequence[str] = list(probabilities)
    latest = store.latest(ids, before=now)
    stored = store.trend(ids, now, params.window_days, params.threshold)
    out: dict[str, Standing] = {}
    for lead in ids:
        previous, window = latest.get(lead), stored.get(lead)
        if previous is None or window is None or window.scores == 0:
            out[lead] = Standing(previous, "not enough history")
            continue
        oldest = previous.probability - (window.change or 0.0)  # one score: itself
        out[lead] = Standing(previous, direction_of(probabilities[lead] - oldest, params.threshold))
    return out
