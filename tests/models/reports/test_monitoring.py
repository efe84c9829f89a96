"""Monitoring's computations: PSI and KS against a binned reference, the Wilson interval, the
backtest of matured scores, the expected performance and the retrain rule."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import ks_2samp

from features.engine.catalog import OTHER
from features.params import MonitorParams
from models.reports import monitoring as m

SETTINGS = MonitorParams()
UTC = "UTC"


def _shares(values: list[float]) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    return array / array.sum()


# --------------------------------------------------------------------------------- PSI
@given(st.lists(st.floats(0.01, 10.0), min_size=2, max_size=20))
def test_psi_of_a_distribution_against_itself_is_zero(weights: list[float]) -> None:
    shares = _shares(weights)
    assert m.psi(shares, shares) == pytest.approx(0.0, abs=1e-12)


@given(
    st.lists(st.floats(0.01, 10.0), min_size=2, max_size=20),
    st.lists(st.floats(0.0, 10.0), min_size=2, max_size=20),
)
def test_psi_is_never_negative(a: list[float], b: list[float]) -> None:
    n = min(len(a), len(b))
    if sum(b[:n]) == 0:
        return
    assert m.psi(_shares(a[:n]), _shares(b[:n])) >= -1e-12


def test_psi_of_a_sample_against_its_own_reference_is_zero() -> None:
    values = np.random.default_rng(0).normal(size=5000)
    reference = m.numeric_reference(values, 10)
    assert len(reference["edges"]) == 9
    assert sum(reference["shares"]) + reference["missing"] == pytest.approx(1.0)
    drift = m.numeric_drift(reference, values, SETTINGS)
    assert drift["psi"] == pytest.approx(0.0, abs=1e-9)
    assert drift["ks"] == pytest.approx(0.0, abs=1e-9)
    assert drift["band"] == "stable"


def test_psi_grows_with_the_shift() -> None:
    rng = np.random.default_rng(1)
    reference = m.numeric_reference(rng.normal(size=20_000), 10)
    fresh = m.numeric_drift(reference, rng.normal(size=20_000), SETTINGS)
    assert fresh["psi"] < 0.01
    assert fresh["band"] == "stable"
    figures = [
        m.numeric_drift(reference, rng.normal(shift, 1.0, 20_000), SETTINGS)
        for shift in (0.1, 0.25, 0.5, 1.0)
    ]
    psis = [f["psi"] for f in figures]
    assert psis == sorted(psis)
    assert figures[0]["band"] == "stable"
    assert figures[-1]["psi"] > 0.25
    assert figures[-1]["band"] == "major"
    ks = [f["ks"] for f in figures]
    assert ks == sorted(ks)
    assert figures[-1]["ks_pvalue"] < 1e-6


@settings(max_examples=30, deadline=None)
@given(st.floats(-1.0, 1.0), st.integers(0, 2**31 - 1))
def test_binned_ks_is_a_lower_bound_of_the_raw_statistic(shift: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    train, recent = rng.normal(size=2000), rng.normal(shift, 1.0, 500)
    drift = m.numeric_drift(m.numeric_reference(train, 10), recent, SETTINGS)
    assert drift["ks"] <= ks_2samp(train, recent).statistic + 1e-9


def test_missing_values_are_a_bin_of_their_own() -> None:
    values = np.r_[np.arange(80.0), np.full(20, np.nan)]
    reference = m.numeric_reference(values, 4)
    assert reference["missing"] == pytest.approx(0.2)
    same = m.numeric_drift(reference, values, SETTINGS)
    assert same["psi"] == pytest.approx(0.0, abs=1e-12)
    none_missing = m.numeric_drift(reference, np.arange(80.0), SETTINGS)
    assert none_missing["psi"] > 0.25  # a fifth of the rows lost their "unknown" value
    assert none_missing["ks"] == pytest.approx(0.0, abs=1e-9)  # KS leaves missing out


def test_ties_merge_bins_and_float_noise_stays_in_its_bin() -> None:
    """A count that is mostly 0 gets fewer bins; a ratio of exactly 1 computed as 1 ± 1e-16
    is still 1 (else a point mass would split across an edge placed on it)."""
    counts = np.r_[np.zeros(900), np.arange(1.0, 101.0)]
    reference = m.numeric_reference(counts, 10)
    assert len(reference["edges"]) < 9
    assert reference["shares"][0] == pytest.approx(0.9)
    lifts = np.r_[np.ones(700), np.linspace(0.5, 2.0, 300)]
    noisy = lifts.copy()
    noisy[:700] = np.where(np.arange(700) % 2, 1.0 + 2e-16, 1.0 - 1e-16)
    drift = m.numeric_drift(m.numeric_reference(lifts, 10), noisy, SETTINGS)
    assert drift["psi"] == pytest.approx(0.0, abs=1e-9)


def test_categorical_drift_and_unseen_categories() -> None:
    vocabulary = ("email", "webinar", "event")
    train = np.r_[np.zeros(500), np.ones(300), np.full(200, np.nan)]  # no event, no other
    reference = m.categorical_reference(train, vocabulary)
    assert reference["shares"] == {"email": 0.5, "webinar": 0.3, m.MISSING: 0.2}
    assert m.categorical_drift(reference, train, vocabulary, SETTINGS)["psi"] == 0.0
    recent = np.r_[np.zeros(100), np.ones(300), np.full(50, 2.0), np.full(50, 3.0)]
    drift = m.categorical_drift(reference, recent, vocabulary, SETTINGS)
    assert drift["unseen"] == 100
    assert drift["unseen_categories"] == sorted(["event", OTHER])
    assert drift["band"] == "major"


def test_category_names_follow_the_engine_codes() -> None:
    names = m.category_names(np.array([0.0, 1.0, 2.0, np.nan]), ("a", "b"))
    assert names.tolist() == ["a", "b", OTHER, m.MISSING]
    assert m.category_names(np.array([3.0]), None).tolist() == ["3"]


def test_bands_follow_the_params() -> None:
    assert m.band_of(0.05, SETTINGS) == "stable"
    assert m.band_of(0.10, SETTINGS) == "moderate"
    assert m.band_of(0.25, SETTINGS) == "moderate"
    assert m.band_of(0.2501, SETTINGS) == "major"
    assert m.band_of(None, SETTINGS) == "no data"
    assert m.band_of(0.2, MonitorParams(psi_moderate=0.3, psi_major=0.5)) == "stable"


def test_the_reference_is_compact_and_json_safe() -> None:
    rng = np.random.default_rng(2)
    X = np.column_stack([rng.normal(size=1000), rng.integers(0, 3, 1000).astype(float)])
    X[::10, 0] = np.nan
    p = rng.uniform(size=1000)
    reference = m.build_reference(
        X, ["x", "channel"], ["channel"], p, 10, {"channel": ("a", "b", "c")}, test_roc_auc=0.8
    )
    text = json.dumps(reference, allow_nan=False)
    assert len(text) < 4000
    assert reference["features"]["x"]["missing"] == pytest.approx(0.1)
    assert set(reference["features"]["channel"]["shares"]) == {"a", "b", "c"}
    assert reference["mean_probability"] == pytest.approx(p.mean())
    assert reference["test_roc_auc"] == 0.8
    drift = m.drift_report(
        reference, X, ["x", "channel"], ["channel"], p, SETTINGS, {"channel": ("a", "b", "c")}
    )
    assert drift["major"] == []
    assert drift["score"]["psi"] == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="columns"):
        m.build_reference(X, ["x"], [], p, 10)


# ----------------------------------------------------------------------------- Wilson
def test_wilson_interval_known_values() -> None:
    low, high = m.wilson_interval(0, 10) or (None, None)
    assert low == 0.0
    assert high == pytest.approx(0.2775, abs=1e-4)
    low, high = m.wilson_interval(5, 10) or (None, None)
    assert (low, high) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert m.wilson_interval(0, 0) is None


@given(st.integers(1, 10_000), st.data())
def test_wilson_interval_contains_the_proportion(n: int, data: st.DataObject) -> None:
    k = data.draw(st.integers(0, n))
    interval = m.wilson_interval(k, n)
    assert interval is not None
    low, high = interval
    assert 0.0 <= low <= k / n <= high <= 1.0
    wider = m.wilson_interval(k, n, z=3.0)
    assert wider is not None
    assert wider[0] <= low
    assert wider[1] >= high


def test_wilson_interval_narrows_with_more_rows() -> None:
    widths = []
    for n in (10, 100, 1000):
        low, high = m.wilson_interval(n // 5, n) or (0.0, 1.0)
        widths.append(high - low)
    assert widths == sorted(widths, reverse=True)


# ---------------------------------------------------------------------------- backtest
def _matured() -> pd.DataFrame:
    """Known answers: A 10 scores (8 converted), B 10 (5), C 10 (2), D 10 (0); March and
    April; channels email (A, B) and webinar (C, D)."""
    grades = np.repeat(list("ABCD"), 10)
    probability = np.repeat([0.7, 0.4, 0.15, 0.05], 10)
    observed = np.concatenate([np.r_[np.ones(k), np.zeros(10 - k)] for k in (8, 5, 2, 0)]).astype(
        float
    )
    scored_at = pd.to_datetime(np.tile(["2025-03-05", "2025-04-20"], 20).tolist(), utc=True)
    return pd.DataFrame(
        {
            "grade": grades,
            "probability": probability,
            "scored_at": scored_at,
            "channel": np.repeat(["email", "webinar"], 20),
            "observed": observed,
        }
    )


def test_backtest_by_grade_month_and_channel() -> None:
    result = m.backtest(_matured(), ece_bins=10, min_group_auc=5)
    by_grade = {row["grade"]: row for row in result["by_grade"]}
    assert [by_grade[g]["observed"] for g in "ABCD"] == [0.8, 0.5, 0.2, 0.0]
    assert [by_grade[g]["predicted"] for g in "ABCD"] == [0.7, 0.4, 0.15, 0.05]
    assert [by_grade[g]["scored"] for g in "ABCD"] == [10] * 4
    low, high = m.wilson_interval(8, 10) or (0, 0)
    assert by_grade["A"]["observed_low"] == pytest.approx(low, abs=1e-6)
    assert by_grade["A"]["observed_high"] == pytest.approx(high, abs=1e-6)
    assert result["matured"] == 40
    assert result["converted"] == 15
    # pairs (converted, not converted) ordered right, ties within a grade count half:
    # A 8 × (23 + 2/2), B 5 × (18 + 5/2), C 2 × (10 + 8/2) of 15 × 25 pairs
    assert result["roc_auc"] == pytest.approx((8 * 24 + 5 * 20.5 + 2 * 14) / 375)
    # ECE: |0.7-0.8|, |0.4-0.5|, |0.15-0.2|, |0.05-0| each on a quarter of the rows
    assert result["ece"] == pytest.approx((0.1 + 0.1 + 0.05 + 0.05) / 4)
    months = [row["month"] for row in result["by_month"]]
    assert months == ["2025-03", "2025-04"]
    assert sum(row["scored"] for row in result["by_month"]) == 40
    assert [g["grade"] for g in result["by_month"][0]["by_grade"]] == list("ABCD")
    channels = {row["channel"]: row for row in result["by_channel"]}
    assert channels["email"]["observed"] == pytest.approx(13 / 20)
    assert channels["webinar"]["observed"] == pytest.approx(2 / 20)
    assert channels["email"]["roc_auc"] is not None
    json.dumps(result, allow_nan=False)


def test_backtest_of_nothing_is_json_safe() -> None:
    empty = _matured().iloc[:0]
    result = m.backtest(empty)
    assert result["matured"] == 0
    assert result["roc_auc"] is None
    assert result["ece"] is None
    assert [row["scored"] for row in result["by_grade"]] == [0, 0, 0, 0]
    assert all(row["observed"] is None for row in result["by_grade"])
    json.dumps(result, allow_nan=False)


def _ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz=UTC)


def test_observed_outcomes_use_the_training_label_rule() -> None:
    leads = pd.DataFrame(
        {
            "lead_id": ["won", "late", "lost", "young", "closed", "twice"],
            "created_at": [_ts("2025-01-01")] * 6,
        }
    )
    events = pd.DataFrame(
        {
            "lead_id": ["won", "late", "lost", "closed", "closed", "twice"],
            "occurred_at": [
                _ts("2025-02-01"),  # within 90 days of the score
                _ts("2025-06-01"),  # after the window
                _ts("2025-02-01"),
                _ts("2025-01-05"),
                _ts("2025-01-20"),
                _ts("2025-03-15"),
            ],
            "stage": ["won", "won", "lost", "rejected", "won", "won"],
        }
    )
    scores = pd.DataFrame(
        {
            "lead_id": ["won", "late", "lost", "young", "closed", "twice", "twice", "stranger"],
            "as_of": [
                _ts("2025-01-10"),
                _ts("2025-01-10"),
                _ts("2025-01-10"),
                _ts("2025-06-01"),  # matures after the horizon
                _ts("2025-01-10"),  # rejected before: closed, no snapshot
                _ts("2025-01-02"),  # won on 03-15: 72 days later
                _ts("2025-03-16"),  # after the win: closed
                _ts("2025-01-10"),  # not in the data
            ],
        }
    )
    outcome = m.observed_outcomes(scores, leads, events, _ts("2025-07-01"), 90, ("won",))
    expected = [1.0, 0.0, 0.0, np.nan, np.nan, 1.0, np.nan, np.nan]
    np.testing.assert_array_equal(outcome, expected)
    assert np.isnan(m.observed_outcomes(scores, leads, None, _ts("2025-07-01"), 90, ("won",))).all()


# ----------------------------------------------------------- expected and the retrain rule
def test_expected_performance_is_labelled_an_estimate() -> None:
    result = m.expected_performance(np.array([0.1, 0.3]), {"mean_probability": 0.1})
    assert result["label"].startswith("estimate")
    assert result["expected_conversion"] == pytest.approx(0.2)
    assert result["change"] == pytest.approx(0.1)
    assert result["relative_change"] == pytest.approx(1.0)
    empty = m.expected_performance(np.zeros(0), None)
    assert empty["expected_conversion"] is None
    assert empty["change"] is None


def test_retrain_rule() -> None:
    quiet = m.retrain_recommendation(0.05, 0.80, 1000, 0.82, SETTINGS)
    assert quiet[:2] == (False, [])
    assert quiet[2]["auc_drop"]["applied"]
    assert not quiet[2]["auc_drop"]["triggered"]
    shifted, reasons, _ = m.retrain_recommendation(0.3, 0.80, 1000, 0.82, SETTINGS)
    assert shifted
    assert "PSI is 0.300" in reasons[0]
    dropped, reasons, _ = m.retrain_recommendation(0.05, 0.70, 1000, 0.82, SETTINGS)
    assert dropped
    assert "0.700" in reasons[0]
    assert "0.820" in reasons[0]
    # too few matured scores, or no test AUC in the model: the AUC rule is skipped, and says so
    few = m.retrain_recommendation(0.05, 0.50, SETTINGS.min_matured - 1, 0.82, SETTINGS)
    assert few[0] is False
    assert "min_matured" in few[2]["auc_drop"]["note"]
    old = m.retrain_recommendation(0.05, 0.50, 1000, None, SETTINGS)
    assert old[0] is False
    assert "no test ROC AUC" in old[2]["auc_drop"]["note"]
    nothing = m.retrain_recommendation(None, None, 0, None, SETTINGS)
    assert nothing[0] is False
    assert nothing[2]["score_psi"]["applied"] is False


def test_json_safe_has_no_nan() -> None:
    value = {"a": np.float64("nan"), "b": [np.int64(3), math.inf], "c": _ts("2025-01-01")}
    assert m.json_safe(value) == {"a": None, "b": [3, None], "c": "2025-01-01T00:00:00+00:00"}
