"""The score trend: the store's SQL against the rule computed directly on random histories."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.params import StoreParams, TrendParams
from models.store import ScoreStore
from models.store.store import FEW
from models.store.trend import direction_of, lead_trend
from tests.models.store.samples import T0, score

DAY = dt.timedelta(days=1)
_leads = itertools.count()


def test_the_rule_reads_as_documented() -> None:
    assert direction_of(0.05, 0.05) == "improving"
    assert direction_of(0.15 - 0.10, 0.05) == "improving"  # 0.04999… in binary
    assert direction_of(-0.05, 0.05) == "declining"
    assert direction_of(0.0499, 0.05) == "steady"
    assert direction_of(-0.0499, 0.05) == "steady"
    assert lead_trend(0.1, 0.9, 1, 0.05).direction == "not enough history"
    assert lead_trend(0.1, 0.2, 2, 0.05).change == pytest.approx(0.1)


def test_trend_of_a_few_leads(store: ScoreStore) -> None:
    now = T0 + 40 * DAY
    store.record(
        [
            score("up", at=now - 20 * DAY, probability=0.10),
            score("up", at=now - 10 * DAY, probability=0.02),  # the middle does not matter
            score("up", at=now - DAY, probability=0.15),
            score("down", at=now - 29 * DAY, probability=0.50),
            score("down", at=now, probability=0.30),  # the window's end is included
            score("flat", at=now - 5 * DAY, probability=0.30),
            score("flat", at=now - 4 * DAY, probability=0.33),
            score("alone", at=now - 2 * DAY, probability=0.30),
            score("alone", at=now - 31 * DAY, probability=0.90),  # before the window
            score("future", at=now - DAY, probability=0.1),
            score("future", at=now + DAY, probability=0.9),  # after now: not seen
        ]
    )
    trends = store.trend(["up", "down", "flat", "alone", "future", "never"], now)
    assert {lead: t.direction for lead, t in trends.items()} == {
        "up": "improving",
        "down": "declining",
        "flat": "steady",
        "alone": "not enough history",
        "future": "not enough history",
        "never": "not enough history",
    }
    assert trends["down"].change == pytest.approx(-0.2)
    assert trends["up"].scores == 3
    assert trends["never"].scores == 0
    # params default to params.yaml's store.trend (30 days, 0.05); explicit values override
    wider = store.trend(["alone"], now, window_days=31)
    assert wider["alone"].direction == "declining"
    assert store.trend(["flat"], now, threshold=0.02)["flat"].direction == "improving"


def test_the_windows_start_is_included(store: ScoreStore) -> None:
    now = T0 + 40 * DAY
    store.record(
        [score("edge", at=now - 30 * DAY, probability=0.2), score("edge", at=now, probability=0.3)]
    )
    assert store.trend(["edge"], now)["edge"].direction == "improving"
    later = now + dt.timedelta(microseconds=1)
    assert store.trend(["edge"], later)["edge"].direction == "not enough history"


def _direct(
    history: list[tuple[dt.datetime, float]], now: dt.datetime, days: int, threshold: float
) -> tuple[str, float | None, int]:
    """The rule, written out: the scores in [now - days, now], in (time, insertion) order."""
    inside = sorted(
        (
            (at, index, p)
            for index, (at, p) in enumerate(history)
            if now - dt.timedelta(days=days) <= at <= now
        ),
    )
    if len(inside) < 2:
        return "not enough history", None, len(inside)
    change = inside[-1][2] - inside[0][2]
    if change >= threshold - 1e-9:
        return "improving", change, len(inside)
    if change <= -threshold + 1e-9:
        return "declining", change, len(inside)
    return "steady", change, len(inside)


DAYS = 10
NOW = T0 + 100 * DAY
# times on a coarse grid (so ties and both window ends are frequent), a few beyond either end
times = st.integers(min_value=-(DAYS + 2) * 4, max_value=8).map(
    lambda quarter_days: NOW + quarter_days * dt.timedelta(hours=6)
)
probabilities = st.sampled_from([0.0, 0.1, 0.15, 0.2, 0.25, 0.5, 1.0]) | st.floats(0, 1)
histories = st.lists(st.tuples(times, probabilities), max_size=8)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    leads=st.lists(histories, min_size=1, max_size=4),
    threshold=st.sampled_from([0.05, 0.1, 0.5]) | st.floats(0.001, 0.999),
)
def test_the_store_follows_the_rule_on_random_histories(
    store: ScoreStore, leads: list[list[tuple[dt.datetime, float]]], threshold: float
) -> None:
    names = [f"h{next(_leads)}" for _ in leads]
    # interleave the leads' inserts, so that insertion order within a lead is all that is kept
    rows = [
        (name, at, p)
        for position in range(max(map(len, leads)))
        for name, history in zip(names, leads, strict=True)
        if position < len(history)
        for at, p in [history[position]]
    ]
    store.record([score(name, at=at, probability=p) for name, at, p in rows])
    got = store.trend(names, NOW, window_days=DAYS, threshold=threshold)
    for name, history in zip(names, leads, strict=True):
        direction, change, count = _direct(history, NOW, DAYS, threshold)
        assert (got[name].direction, got[name].scores) == (direction, count), (name, history)
        assert got[name].change == change


def test_the_defaults_are_the_stores_params(store_url: str) -> None:
    params = StoreParams(trend=TrendParams(window_days=2, threshold=0.5))
    with ScoreStore(store_url, params) as store:
        now = T0 + 10 * DAY
        store.record(
            [
                score("p", at=now - 3 * DAY, probability=0.0),  # outside a 2-day window
                score("p", at=now - DAY, probability=0.2),
                score("p", at=now, probability=0.6),
            ]
        )
        trend = store.trend(["p"], now)["p"]
        assert (trend.direction, trend.scores) == ("steady", 2)
        assert store.trend(["p"], now, window_days=5)["p"].direction == "improving"


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    histories=st.lists(
        st.lists(st.tuples(st.integers(0, 60), st.floats(0.0, 1.0, allow_nan=False)), max_size=6),
        min_size=FEW + 1,
        max_size=FEW + 8,
    )
)
def test_few_leads_and_many_leads_read_the_same_history(
    store: ScoreStore, histories: list[list[tuple[int, float]]]
) -> None:
    """The per-lead index seeks (the API's few leads) and the windowed queries (many leads)
    give the same latest score and trend, lead by lead."""
    offset = next(_RUNS) * 1000  # one store for every example: leads of their own
    ids = [f"M{offset + i}" for i in range(len(histories))]
    rows = [
        score(lead, at=T0 - dt.timedelta(days=days, seconds=k), probability=p)
        for lead, history in zip(ids, histories, strict=True)
        for k, (days, p) in enumerate(history)
    ]
    if rows:
        store.record(rows)
    many_latest = store.latest(ids, before=T0 + dt.timedelta(seconds=1))
    many_trend = store.trend(ids, T0, 30, 0.05)
    assert len(ids) > FEW  # the windowed path
    many_ends = store.history_ends(ids, T0 + dt.timedelta(seconds=1), 30)
    for lead in ids:
        few_latest = store.latest([lead], before=T0 + dt.timedelta(seconds=1))
        assert few_latest.get(lead) == many_latest.get(lead)
        assert store.trend([lead], T0, 30, 0.05)[lead] == many_trend[lead]
        few_ends = store.history_ends([lead], T0 + dt.timedelta(seconds=1), 30)[lead]
        assert few_ends.previous == many_ends[lead].previous
        assert few_ends.window_scores == many_ends[lead].window_scores
        if few_ends.window_oldest is None:
            assert many_ends[lead].window_oldest is None
        else:
            assert few_ends.window_oldest == pytest.approx(many_ends[lead].window_oldest, abs=1e-12)


_RUNS = itertools.count()
