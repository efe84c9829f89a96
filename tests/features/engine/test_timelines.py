"""The history kernels against brute force, and one time conversion for columns and values."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from features.engine.catalog import NEVER_DAYS
from features.engine.timelines import (
    DAY_MS,
    StackedTimelines,
    Timeline,
    days_since,
    decayed_window_counts,
    halvings,
    timestamp_ms,
    timestamps_ms,
    window_counts,
    window_hits,
)

ORIGIN = 1_600_000_000_000


@pytest.fixture
def events() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(4)
    n = 400
    return {
        "lead": rng.integers(-1, 12, n),  # -1: an event of an unknown lead
        "kind": rng.integers(0, 4, n),
        "ms": ORIGIN + rng.integers(0, 60, n) * DAY_MS // 2,  # ties on half days
        "value": rng.random(n),
    }


@pytest.fixture
def queries() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    n = 150
    return rng.integers(0, 12, n), ORIGIN + rng.integers(0, 62, n) * DAY_MS // 2


def test_window_counts_match_brute_force(
    events: dict[str, np.ndarray], queries: tuple[np.ndarray, np.ndarray]
) -> None:
    query_lead, as_of = queries
    bounds = [3 * DAY_MS, 10 * DAY_MS]
    counts, last_ms = window_counts(
        ORIGIN, events["lead"], events["kind"], events["ms"], 4, query_lead, as_of, bounds
    )
    assert counts.shape == (len(query_lead), 4, len(bounds) + 1)
    for q, (lead, when) in enumerate(zip(query_lead, as_of, strict=True)):
        for kind in range(4):
            mine = (events["lead"] == lead) & (events["kind"] == kind) & (events["ms"] < when)
            expected = [((events["ms"] >= when - b) & mine).sum() for b in bounds]
            assert list(counts[q, kind]) == [*expected, mine.sum()]
            last = events["ms"][mine].max() if mine.any() else np.nan
            assert np.array_equal(last_ms[q, kind], last, equal_nan=True)


def test_window_hits_and_timeline_counts_match_brute_force(
    events: dict[str, np.ndarray], queries: tuple[np.ndarray, np.ndarray]
) -> None:
    query_lead, as_of = queries
    known = events["lead"] >= 0
    lead, ms, value = events["lead"][known], events["ms"][known], events["value"][known]
    hits = window_hits(ORIGIN, lead, ms, query_lead, as_of, 5 * DAY_MS)
    timeline = Timeline(ORIGIN, lead, ms, value)
    counts, sums = timeline.count_and_sum_before(query_lead, as_of)
    for q, (code, when) in enumerate(zip(query_lead, as_of, strict=True)):
        after = (lead == code) & (ms > when) & (ms <= when + 5 * DAY_MS)
        assert hits[q] == after.any()
        before = (lead == code) & (ms < when)
        assert counts[q] == before.sum()
        assert sums[q] == pytest.approx(value[before].sum())
    assert np.array_equal(timeline.count_before(query_lead, as_of), counts)


def test_stacked_timelines_answer_like_separate_ones(
    events: dict[str, np.ndarray], queries: tuple[np.ndarray, np.ndarray]
) -> None:
    query_lead, as_of = queries
    known = events["lead"] >= 0
    lead, kind, ms = events["lead"][known], events["kind"][known], events["ms"][known]
    value = events["value"][known]
    stacked = StackedTimelines(
        ORIGIN, [("by_lead", 12, lead, ms, value), ("by_kind", 4, kind, ms, None)]
    )
    kind_codes = query_lead % 4
    (lead_n, lead_sum), (kind_n, _) = stacked.query(
        [("by_lead", query_lead), ("by_kind", kind_codes)], as_of
    )
    separate_n, separate_sum = Timeline(ORIGIN, lead, ms, value).count_and_sum_before(
        query_lead, as_of
    )
    assert np.array_equal(lead_n, separate_n)
    assert np.allclose(lead_sum, separate_sum)
    assert np.array_equal(kind_n, Timeline(ORIGIN, kind, ms).count_before(kind_codes, as_of))


def test_timeline_refuses_codes_beyond_its_key_space() -> None:
    with pytest.raises(ValueError, match="too many codes"):
        Timeline(0, np.array([2**22]), np.array([0]))


def test_one_timestamp_converts_like_a_column() -> None:
    values = [
        pd.Timestamp("2024-03-01 12:00:00.0009999", tz="UTC"),
        pd.Timestamp("2024-03-01 12:00:00.0019", tz="Europe/Paris"),
        pd.Timestamp("1969-12-31 23:59:59.9995", tz="UTC"),  # floored, before the epoch
    ]
    column = timestamps_ms(pd.Series(values))
    assert [timestamp_ms(v) for v in values] == list(column)
    naive = dt.datetime(2024, 3, 1, 12, 0, 0, 999)
    assert timestamp_ms(naive) == timestamp_ms(naive.replace(tzinfo=dt.UTC))
    assert timestamp_ms("2024-03-01T12:00:00.001Z") == timestamp_ms(values[0]) + 1


def test_days_since_never_is_finite() -> None:
    out = days_since(np.array([10 * DAY_MS, 10 * DAY_MS]), np.array([4 * DAY_MS, np.nan]))
    assert list(out) == [6.0, NEVER_DAYS]


def test_halvings_match_exp2_and_are_exact_at_whole_numbers() -> None:
    rng = np.random.default_rng(6)
    x = np.concatenate([rng.random(200_000) * 60, rng.random(20_000) * 1200, np.arange(0, 80.0)])
    mine, reference = halvings(x), np.exp2(-x)
    normal = reference > np.finfo(float).tiny
    assert (np.abs(mine - reference)[normal] <= np.spacing(reference[normal])).all()
    assert (mine[~normal] <= 2 * np.finfo(float).tiny).all()
    assert list(halvings(np.array([0.0, 1.0, 2.0, 10.0]))) == [1.0, 0.5, 0.25, 2.0**-10]
    assert halvings(np.array([1e6]))[0] == 0.0
    # elementwise: a value computed alone is the value computed among many
    assert all(halvings(x[i : i + 1])[0] == mine[i] for i in range(0, len(x), 997))


def test_decayed_counts_match_brute_force_in_any_order(
    events: dict[str, np.ndarray], queries: tuple[np.ndarray, np.ndarray]
) -> None:
    query_lead, as_of = queries
    bounds, half_lives = [3 * DAY_MS], [DAY_MS, 7 * DAY_MS]
    args = (ORIGIN, events["lead"], events["kind"], events["ms"], 4, query_lead, as_of, bounds)
    counts, last_ms, decayed = decayed_window_counts(*args, half_lives)
    assert decayed.shape == (len(query_lead), 4, 2)
    plain_counts, plain_last = window_counts(*args)
    assert np.array_equal(counts, plain_counts)
    assert np.array_equal(last_ms, plain_last, equal_nan=True)
    for q, (lead, when) in enumerate(zip(query_lead, as_of, strict=True)):
        for kind in range(4):
            mine = (events["lead"] == lead) & (events["kind"] == kind) & (events["ms"] < when)
            for h, half_life in enumerate(half_lives):
                expected = (0.5 ** ((when - events["ms"][mine]) / half_life)).sum()
                assert decayed[q, kind, h] == pytest.approx(expected, abs=1e-11)
    shuffled = np.random.default_rng(7).permutation(len(events["lead"]))
    again = decayed_window_counts(
        ORIGIN,
        *(events[name][shuffled] for name in ("lead", "kind", "ms")),
        4,
        query_lead,
        as_of,
        bounds,
        half_lives,
    )[2]
    assert np.array_equal(again, decayed)


def test_no_half_lives_no_decayed_counts(
    events: dict[str, np.ndarray], queries: tuple[np.ndarray, np.ndarray]
) -> None:
    query_lead, as_of = queries
    args = (ORIGIN, events["lead"], events["kind"], events["ms"], 4, query_lead, as_of, [DAY_MS])
    assert decayed_window_counts(*args, [])[2].shape[-1] == 0
    empty = np.zeros(0, np.int64)
    _, _, none = decayed_window_counts(
        ORIGIN, empty, empty, empty, 4, query_lead, as_of, [DAY_MS], [DAY_MS]
    )
    assert none.shape == (len(query_lead), 4, 1)
    assert not none.any()
