"""Conversion timing: durations from the sales events (censored at the horizon), the
discrete-time rows (no label for an interval not observed to its end), a curve that never
decreases, and the survival metrics checked against scikit-survival's."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from features.params import Params
from models.reports.timing import concordance, integrated_brier, kaplan_meier
from models.timing import AmountModel, ConversionTiming, durations, person_periods
from models.training import lightgbm_params

HORIZONS = (7, 14, 30, 60, 90)
UTC = "UTC"


def test_durations_take_the_first_event_after_as_of_and_censor_at_the_horizon() -> None:
    snapshots = pd.DataFrame(
        {
            "lead_id": ["a", "a", "b", "c"],
            "as_of": pd.to_datetime(
                ["2025-01-01", "2025-01-10", "2025-01-01", "2025-01-05"], utc=True
            ),
        }
    )
    events = pd.DataFrame(
        {
            "lead_id": ["a", "a", "b", "c"],
            "occurred_at": pd.to_datetime(
                ["2025-01-10", "2025-01-20", "2025-03-01", "2025-01-06"], utc=True
            ),
            "stage": ["won", "won", "won", "lost"],
            "amount": [100.0, 200.0, 300.0, np.nan],
        }
    )
    horizon = pd.Timestamp("2025-02-01", tz=UTC)
    days, event, amount = durations(snapshots, events, ["won"], horizon)
    # a: 9 days to its first win; its second snapshot, at the win's very time, sees the next
    assert days.tolist() == [9.0, 10.0, 31.0, 27.0]
    # b won after the horizon: censored there; c was lost, never won
    assert event.tolist() == [True, True, False, False]
    assert amount[:2].tolist() == [100.0, 200.0]
    assert np.isnan(amount[2:]).all()


@settings(max_examples=200, deadline=None)
@given(
    days=arrays(np.float64, st.integers(0, 60), elements=st.floats(0.0, 200.0)),
    seed=st.integers(0, 10_000),
)
def test_person_periods_label_only_what_was_observed(days: np.ndarray, seed: int) -> None:
    event = np.random.default_rng(seed).random(len(days)) < 0.4
    rows, interval, label = person_periods(days, event, HORIZONS)
    bounds = np.array([0, *HORIZONS], dtype=np.float64)
    lower, upper = bounds[interval], bounds[interval + 1]
    # at risk: neither converted nor censored before the interval starts
    assert (days[rows] > lower).all()
    # a 1 is a conversion inside its interval; a 0 was observed past the interval's end
    assert (event[rows][label == 1] & (days[rows][label == 1] <= upper[label == 1])).all()
    assert (days[rows][label == 0] > upper[label == 0]).all()
    # each conversion within the longest horizon counts once; censored ones never as a 1
    converted = event & (days > 0) & (days <= HORIZONS[-1])
    assert sorted(rows[label == 1].tolist()) == np.flatnonzero(converted).tolist()


def _timing_data(
    n: int, seed: int, speed: float = 1.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two features speed conversion up; observation ends at a random censoring time."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    rate = speed * np.exp(-4.0 + 1.2 * X[:, 0] + 0.6 * X[:, 1])
    time = rng.exponential(1 / rate)
    censor = rng.uniform(5, 150, n)
    return X, np.minimum(time, censor), time <= censor


@pytest.fixture(scope="module")
def fitted() -> ConversionTiming:
    X, days, event = _timing_data(4_000, 1)
    Xv, days_v, event_v = _timing_data(1_000, 2)
    train = Params().train.model_copy(update={"num_threads": 1, "min_data_in_leaf": 20})
    booster = lightgbm_params(train, [0, 0, 0])
    timing = ConversionTiming(HORIZONS, booster, 300, 20)
    return timing.fit(X, days, event, Xv, days_v, event_v, ["x0", "x1", "x2"], [])


@pytest.fixture(scope="module")
def recalibrated(fitted: ConversionTiming) -> ConversionTiming:
    """The same model recalibrated on a later period in which leads convert twice as fast."""
    timing = copy.deepcopy(fitted)
    return timing.calibrate(*_timing_data(4_000, 3, speed=2.0))


def test_recalibration_brings_each_horizon_to_the_observed_share(
    fitted: ConversionTiming, recalibrated: ConversionTiming
) -> None:
    X, days, event = _timing_data(6_000, 4, speed=2.0)
    before, after = fitted.by_horizon(X), recalibrated.by_horizon(X)
    assert all(c is not None for c in recalibrated.calibrators_)
    for k, horizon in enumerate(HORIZONS):
        converted = event & (days <= horizon)
        observed = converted | (days > horizon)
        share = converted[observed].mean()
        # the faster period: the model trained before under-forecasts, recalibrated it does not
        assert before[observed, k].mean() < share - 0.02
        assert abs(after[observed, k].mean() - share) < 0.02, (horizon, share)


def test_a_horizon_with_too_few_labels_keeps_its_value(fitted: ConversionTiming) -> None:
    X, days, event = _timing_data(60, 5)
    few = copy.deepcopy(fitted).calibrate(X, days, event, min_each=20)
    assert few.calibrators_[0] is None  # a handful of the 60 convert within 7 days
    none = copy.deepcopy(fitted).calibrate(X, days, event, min_each=10_000)
    assert all(c is None for c in none.calibrators_)
    assert np.array_equal(none.by_horizon(X), fitted.by_horizon(X))


@settings(max_examples=50, deadline=None)
@given(
    rows=arrays(np.float64, (5, 3), elements=st.floats(-1e6, 1e6) | st.just(np.nan)),
    calibrated=st.booleans(),
)
def test_the_curve_never_decreases_and_stays_a_probability(
    fitted: ConversionTiming, recalibrated: ConversionTiming, rows: np.ndarray, calibrated: bool
) -> None:
    by = (recalibrated if calibrated else fitted).by_horizon(rows)
    assert by.shape == (5, len(HORIZONS))
    assert ((by >= 0) & (by <= 1)).all()
    assert (np.diff(by, axis=1) >= 0).all()
    days = fitted.median_days(by)
    reached = by[:, -1] >= 0.5
    assert np.isnan(days[~reached]).all()
    assert ((days[reached] > 0) & (days[reached] <= HORIZONS[-1])).all()


def test_the_model_orders_conversions_far_better_than_one_curve(
    fitted: ConversionTiming,
) -> None:
    X, days, event = _timing_data(2_000, 3)
    risk = fitted.by_horizon(X)[:, -1]
    c = concordance(days, event, risk)
    assert c is not None
    assert c > 0.7
    assert concordance(days, event, np.zeros(len(days))) == 0.5


def test_a_lead_alone_gets_its_batch_curve(fitted: ConversionTiming) -> None:
    X = _timing_data(50, 4)[0]
    batch = fitted.by_horizon(X, num_threads=2)
    alone = np.vstack([fitted.by_horizon(X[i : i + 1], num_threads=1) for i in range(50)])
    assert np.array_equal(alone, batch)


def test_within_reads_the_curve_between_horizons(fitted: ConversionTiming) -> None:
    by = np.array([[0.1, 0.2, 0.4, 0.6, 0.7]])
    got = fitted.within(by, np.array([0.0]), np.array([10.5]))
    assert got[0] == pytest.approx(0.1 + 0.1 * 3.5 / 7)
    beyond = fitted.within(by, np.array([90.0]), np.array([400.0]))
    assert beyond[0] == 0.0  # nothing is predicted after the longest horizon


def test_the_amount_falls_back_to_the_mean_with_few_deals() -> None:
    X = np.random.default_rng(0).normal(size=(10, 2))
    amounts = np.array([100.0, 200.0, np.nan, 300.0, *[np.nan] * 6])
    model = AmountModel({"num_threads": 1}, min_deals=5).fit(X, amounts, ["a", "b"], [])
    assert model.booster_ is None
    assert model.deals_ == 3
    assert model.predict(X[:2]).tolist() == [200.0, 200.0]


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(5, 300))
def test_concordance_equals_scikit_survivals(seed: int, n: int) -> None:
    from sksurv.exceptions import NoComparablePairException
    from sksurv.metrics import concordance_index_censored

    rng = np.random.default_rng(seed)
    days = rng.integers(1, 40, n).astype(np.float64)  # ties in time
    event = rng.random(n) < 0.5
    risk = np.round(rng.normal(size=n), 1)  # ties in risk
    ours = concordance(days, event, risk)
    if not event.any():
        assert ours is None
        return
    try:
        theirs = concordance_index_censored(event, days, risk)[0]
    except NoComparablePairException:
        assert ours is None
        return
    assert ours == pytest.approx(theirs, abs=1e-12)


def test_kaplan_meier_equals_scikit_survivals() -> None:
    from sksurv.nonparametric import kaplan_meier_estimator

    X, days, event = _timing_data(500, 5)
    del X
    days = np.round(days)
    times, survival = kaplan_meier(days, event)
    their_times, their_survival = kaplan_meier_estimator(event, days)
    at = their_times[np.isin(their_times, times)]
    np.testing.assert_allclose(survival, their_survival[np.isin(their_times, at)], atol=1e-12)


def test_integrated_brier_equals_scikit_survivals(fitted: ConversionTiming) -> None:
    from sksurv.metrics import integrated_brier_score
    from sksurv.util import Surv

    _, days_train, event_train = _timing_data(3_000, 6)
    X, days, event = _timing_data(800, 7)
    horizons = [7.0, 14.0, 30.0, 60.0, 90.0]
    by = fitted.by_horizon(X)
    ours = integrated_brier((days_train, event_train), (days, event), by, horizons)
    theirs = integrated_brier_score(
        Surv.from_arrays(event_train, days_train), Surv.from_arrays(event, days), 1 - by, horizons
    )
    assert ours == pytest.approx(theirs, rel=1e-6)
