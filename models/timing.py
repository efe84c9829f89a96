"""When a lead will convert, and for how much.

**Durations** (:func:`durations`): per snapshot, the days from ``as_of`` to the lead's first
sales event of the primary target's stages after it, observed until the data horizon; a lead
that has not converted by then is censored at the horizon.

**Conversion timing** (:class:`ConversionTiming`): a discrete-time model. Horizons
``h_1 < … < h_K`` (``timing.horizons_days``) cut time after ``as_of`` into intervals
``(h_{k-1}, h_k]``; each snapshot gives one row per interval it is still at risk in (not
converted by ``h_{k-1}``, observed past it), labelled 1 when it converts within the interval
and 0 when it is observed to its end without converting. An interval in which the snapshot is
censored gives no row: nothing about it is known. LightGBM learns the interval's hazard from the
snapshot's features plus the interval's index (one model for all horizons); per lead
``P(converted by h_k) = 1 - prod_{j <= k} (1 - hazard_j)``, non-decreasing by construction
(and enforced). Each horizon's probability is then recalibrated (sigmoid, on the `calibration`
slice's snapshots labelled at that horizon: converted by it, or observed past it without
converting), as the targets' probabilities are: the product of hazards learned interval by
interval drifts from the observed share, and the monthly forecast sums these probabilities. The
expected conversion day is where that curve crosses 50 %, linear between
horizons, or unknown when it stays under 50 % up to the longest horizon.

**Deal amount** (:class:`AmountModel`): LightGBM regression of the won deal's amount on the
snapshot's features, on the snapshots whose lead was won with an amount; with fewer than
``timing.min_deals`` of them, their mean. ``expected_value = p × expected amount``.

Its evaluation and the monthly forecast are :mod:`models.reports.timing`'s (serving never
needs them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from models.calibration import Calibrator

DAY_SECONDS = 86_400.0


def durations(
    snapshots: pd.DataFrame, sales_events: pd.DataFrame, stages: Sequence[str], horizon: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per snapshot: observed days (to the first event of ``stages`` strictly after ``as_of``,
    else to the horizon), whether that was the event (else censored), and the event's amount
    (NaN when censored or not given)."""
    as_of = pd.to_datetime(snapshots["as_of"], utc=True).reset_index(drop=True)
    frame = pd.DataFrame(
        {
            "lead_id": snapshots["lead_id"].astype(str).to_numpy(),
            "as_of": as_of,
            "row": range(len(as_of)),
        }
    )
    events = sales_events[sales_events["stage"].isin(list(stages))]
    amount = events["amount"] if "amount" in events else pd.Series(np.nan, index=events.index)
    events = pd.DataFrame(
        {
            "lead_id": events["lead_id"].astype(str).to_numpy(),
            "event_at": pd.to_datetime(events["occurred_at"], utc=True).to_numpy(),
            "amount": pd.to_numeric(amount, errors="coerce").to_numpy(dtype=np.float64),
        }
    ).sort_values("event_at", kind="stable")
    merged = pd.merge_asof(  # keeps event_at: the keys' names differ
        frame.sort_values("as_of", kind="stable"),
        events,
        left_on="as_of",
        right_on="event_at",
        by="lead_id",
        direction="forward",
        allow_exact_matches=False,
    ).sort_values("row")
    end = pd.Timestamp(horizon)
    end = end.tz_localize("UTC") if end.tzinfo is None else end.tz_convert("UTC")
    event_at = pd.to_datetime(merged["event_at"], utc=True)
    happened = event_at.notna().to_numpy() & (event_at <= end).to_numpy()
    stop = event_at.where(happened, end)
    days = (stop - pd.to_datetime(merged["as_of"], utc=True)).dt.total_seconds().to_numpy()
    days = np.maximum(days / DAY_SECONDS, 0.0)
    amounts = np.where(happened, merged["amount"].to_numpy(dtype=np.float64), np.nan)
    return days, happened, amounts


def person_periods(
    days: np.ndarray, event: np.ndarray, horizons: Sequence[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The discrete-time rows: (snapshot position, interval index, label) of every interval a
    snapshot is at risk in and observed through (or converts in)."""
    positions, intervals, labels = [], [], []
    lower = 0.0
    for k, upper in enumerate(horizons):
        at_risk = days > lower
        converts = at_risk & event & (days <= upper)
        survives = at_risk & (days > upper)
        rows = np.flatnonzero(converts | survives)
        positions.append(rows)
        intervals.append(np.full(len(rows), k, dtype=np.int64))
        labels.append(converts[rows].astype(np.float64))
        lower = float(upper)
    return np.concatenate(positions), np.concatenate(intervals), np.concatenate(labels)


def _with_interval(X: np.ndarray, interval: np.ndarray) -> np.ndarray:
    return np.column_stack([X, interval.astype(np.float64)])


class ConversionTiming:
    """P(converted by each horizon) per lead, from a discrete-time hazard model."""

    def __init__(
        self,
        horizons_days: Sequence[int],
        booster_params: Mapping[str, Any],
        max_rounds: int = 1000,
        early_stopping_rounds: int = 30,
    ) -> None:
        self.horizons_days = tuple(horizons_days)
        self.booster_params = booster_params
        self.max_rounds = max_rounds
        self.early_stopping_rounds = early_stopping_rounds

    def fit(
        self,
        X: np.ndarray,
        days: np.ndarray,
        event: np.ndarray,
        X_valid: np.ndarray,
        days_valid: np.ndarray,
        event_valid: np.ndarray,
        names: Sequence[str],
        categorical: Sequence[int],
    ) -> ConversionTiming:
        rows, interval, y = person_periods(days, event, self.horizons_days)
        v_rows, v_interval, v_y = person_periods(days_valid, event_valid, self.horizons_days)
        feature_names = [*names, "timing_interval"]
        train = lgb.Dataset(
            _with_interval(X[rows], interval),
            y,
            feature_name=feature_names,
            categorical_feature=list(categorical),
        )
        params = _unconstrained(self.booster_params, "binary")
        callbacks: list[Any] = []
        valid_sets: list[lgb.Dataset] = []
        if len(v_y) and 0 < v_y.sum() < len(v_y):
            valid_sets = [
                lgb.Dataset(_with_interval(X_valid[v_rows], v_interval), v_y, reference=train)
            ]
            callbacks = [lgb.early_stopping(self.early_stopping_rounds, verbose=False)]
        self.booster_ = lgb.train(
            params,
            train,
            num_boost_round=self.max_rounds if valid_sets else min(self.max_rounds, 200),
            valid_sets=valid_sets,
            callbacks=callbacks,
        )
        self.best_iteration_ = int(
            self.booster_.best_iteration or self.booster_.current_iteration()
        )
        self.person_periods_ = len(y)
        return self

    def calibrate(
        self, X: np.ndarray, days: np.ndarray, event: np.ndarray, min_each: int = 20
    ) -> ConversionTiming:
        """Per horizon, a sigmoid map of the curve's value fitted on the snapshots of ``X``
        labelled at that horizon (converted by it, or observed past it without converting);
        none (the value as it is) for a horizon with fewer than ``min_each`` of either."""
        raw = self._uncalibrated(X)
        calibrators: list[Calibrator | None] = []
        self.calibration_rows_: list[int] = []
        for k, horizon in enumerate(self.horizons_days):
            converted = event & (days <= horizon)
            observed = converted | (days > horizon)
            y = converted[observed]
            self.calibration_rows_.append(int(observed.sum()))
            if y.sum() < min_each or (~y).sum() < min_each:
                calibrators.append(None)
                continue
            calibrators.append(Calibrator("sigmoid").fit(raw[observed, k], y.astype(np.float64)))
        self.calibrators_ = calibrators
        return self

    def by_horizon(self, X: np.ndarray, num_threads: int = 0) -> np.ndarray:
        """(n, K): the probability of converting within each horizon, calibrated per horizon
        where the calibration slice allowed, non-decreasing."""
        by = self._uncalibrated(X, num_threads)
        calibrators = getattr(self, "calibrators_", None)  # pickled before calibration: none
        if calibrators is None or not len(by):
            return by
        for k, calibrator in enumerate(calibrators):
            if calibrator is not None:
                by[:, k] = calibrator.predict(by[:, k])
        return np.maximum.accumulate(by, axis=1)

    def _uncalibrated(self, X: np.ndarray, num_threads: int = 0) -> np.ndarray:
        n, k = len(X), len(self.horizons_days)
        if not n:
            return np.zeros((0, k))
        stacked = _with_interval(np.repeat(X, k, axis=0), np.tile(np.arange(k), n))
        hazard = np.asarray(
            self.booster_.predict(
                stacked, num_iteration=self.best_iteration_, num_threads=num_threads
            ),
            dtype=np.float64,
        ).reshape(n, k)
        by = 1.0 - np.cumprod(1.0 - np.clip(hazard, 0.0, 1.0), axis=1)
        return np.maximum.accumulate(by, axis=1)

    def median_days(self, by: np.ndarray) -> np.ndarray:
        """Days from as_of to where each curve reaches 50 % (linear between horizons; NaN when
        it stays below up to the longest horizon)."""
        knots = np.array([0.0, *self.horizons_days], dtype=np.float64)
        curves = np.column_stack([np.zeros(len(by)), by])
        reached = curves >= 0.5
        # the first knot at or above 50 % (never knot 0, where every curve is 0)
        k = np.maximum(reached.argmax(axis=1), 1)
        rows = np.arange(len(by))
        low, high = curves[rows, k - 1], curves[rows, k]
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.where(high == low, 1.0, (0.5 - low) / (high - low))
        days = knots[k - 1] + share * (knots[k] - knots[k - 1])
        return np.where(reached.any(axis=1), days, np.nan)

    def within(self, by: np.ndarray, start_days: np.ndarray, end_days: np.ndarray) -> np.ndarray:
        """Each row's probability of converting in (start, end] days after its as_of, reading
        its curve linearly between horizons and as flat beyond the longest."""
        knots = np.array([0.0, *self.horizons_days], dtype=np.float64)
        curves = np.column_stack([np.zeros(len(by)), by])
        low = _interpolate(np.asarray(start_days, dtype=np.float64), knots, curves)
        high = _interpolate(np.asarray(end_days, dtype=np.float64), knots, curves)
        return np.maximum(high - low, 0.0)


def _interpolate(x: np.ndarray, knots: np.ndarray, curves: np.ndarray) -> np.ndarray:
    """Row i's curve (values at ``knots``) at ``x[i]``, linear between knots and flat beyond
    both ends: ``np.interp`` with a curve per row."""
    j = np.clip(np.searchsorted(knots, x, side="right") - 1, 0, len(knots) - 2)
    rows = np.arange(len(x))
    left, right = curves[rows, j], curves[rows, j + 1]
    slope = (right - left) / (knots[j + 1] - knots[j])
    inside = left + slope * (x - knots[j])
    return np.where(x <= knots[0], curves[:, 0], np.where(x >= knots[-1], curves[:, -1], inside))


def _unconstrained(booster_params: Mapping[str, Any], objective: str) -> dict[str, Any]:
    """The target models' LightGBM params for another objective, without their monotone
    constraints (one per feature of theirs; these models' columns differ)."""
    params = {**booster_params, "objective": objective, "verbosity": -1}
    params.pop("monotone_constraints", None)
    params.pop("monotone_constraints_method", None)
    return params


class AmountModel:
    """The expected amount of a won deal, from the snapshot's features."""

    def __init__(self, booster_params: Mapping[str, Any], min_deals: int = 50) -> None:
        self.booster_params = booster_params
        self.min_deals = min_deals

    def fit(
        self, X: np.ndarray, amount: np.ndarray, names: Sequence[str], categorical: Sequence[int]
    ) -> AmountModel:
        known = np.isfinite(amount)
        X, amount = X[known], amount[known]
        self.deals_ = len(amount)
        self.mean_ = float(amount.mean()) if len(amount) else None
        self.booster_: lgb.Booster | None = None
        if len(amount) >= self.min_deals:
            params = _unconstrained(self.booster_params, "regression")
            params["min_data_in_leaf"] = max(
                5, min(int(params.get("min_data_in_leaf", 20)), len(amount) // 10)
            )
            dataset = lgb.Dataset(
                X, amount, feature_name=list(names), categorical_feature=list(categorical)
            )
            self.booster_ = lgb.train(params, dataset, num_boost_round=100)
        return self

    def predict(self, X: np.ndarray, num_threads: int = 0) -> np.ndarray:
        if self.booster_ is not None:
            values = self.booster_.predict(X, num_threads=num_threads)
            return np.maximum(np.asarray(values, dtype=np.float64), 0.0)
        return np.full(len(X), np.nan if self.mean_ is None else self.mean_)
