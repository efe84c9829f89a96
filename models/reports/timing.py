"""The conversion-timing report: how well the timing model (:mod:`models.timing`) orders and
predicts conversion times on the test snapshots beside the Kaplan–Meier baseline, the
backtested monthly forecast of the test period, and the forecast of the open leads
(``metrics.json`` ``timing``, ``kpis.json`` ``forecast``).

Harrell's concordance of the model's risk (the probability of converting by the longest
horizon) against observed, censored times, beside the Kaplan–Meier baseline (the same curve
for every lead, so 0.5); the integrated Brier score of both with inverse-probability-of-
censoring weights (Graf et al.), the censoring curve from the train slice; and cumulative /
dynamic ROC AUC per horizon (converted by h against still open after h, unweighted)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from models.reports.leakage import rank_auc
from models.scorer import LeadScorer
from models.timing import DAY_SECONDS, ConversionTiming, durations


def concordance(days: np.ndarray, event: np.ndarray, risk: np.ndarray) -> float | None:
    """Harrell's C: among pairs where the earlier time is an observed conversion (a lead
    censored at that same time counts as later), the share in which that lead has the higher
    risk (ties in risk count one half)."""
    days, risk = np.asarray(days), np.asarray(risk)
    event = np.asarray(event, dtype=bool)
    concordant = 0.0
    comparable = 0
    events = np.flatnonzero(event)
    for start in range(0, len(events), 512):
        chunk = events[start : start + 512]
        # j outlived i: converted or censored later, or censored at i's conversion time
        later = (days[None, :] > days[chunk, None]) | (
            (days[None, :] == days[chunk, None]) & ~event[None, :]
        )
        comparable += int(later.sum())
        higher = (risk[chunk, None] > risk[None, :]) & later
        tied = (risk[chunk, None] == risk[None, :]) & later
        concordant += float(higher.sum()) + 0.5 * float(tied.sum())
    return None if not comparable else concordant / comparable


def kaplan_meier(days: np.ndarray, event: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The Kaplan–Meier survival curve: event times and S(t) just after each."""
    times = np.unique(days[event])
    at_risk = np.array([(days >= t).sum() for t in times], dtype=np.float64)
    events = np.array([((days == t) & event).sum() for t in times], dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        factors = np.where(at_risk > 0, 1.0 - events / at_risk, 1.0)
    return times, np.cumprod(factors)


def _step(
    times: np.ndarray, values: np.ndarray, at: np.ndarray, before: bool = False
) -> np.ndarray:
    """A right-continuous step function (1 before the first time) at ``at``; ``before``: its
    left limit."""
    index = np.searchsorted(times, at, side="left" if before else "right")
    padded = np.concatenate([[1.0], values])
    return padded[index]


def integrated_brier(
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    by_horizon: np.ndarray,
    horizons: Sequence[float],
) -> float | None:
    """Graf's integrated Brier score of ``by_horizon`` (P(converted by h)) over ``horizons``,
    censoring weighted by the Kaplan–Meier curve of the train slice's censoring times."""
    days_train, event_train = train
    days, event = test
    g_times, g_values = kaplan_meier(days_train, ~event_train)
    scores = []
    for k, h in enumerate(horizons):
        survival = 1.0 - by_horizon[:, k]
        g_at_event = _step(g_times, g_values, days, before=True)
        g_at_h = float(_step(g_times, g_values, np.array([h]))[0])
        if g_at_h <= 0:
            continue
        converted = (days <= h) & event
        still_open = days > h
        with np.errstate(divide="ignore", invalid="ignore"):
            term = np.where(
                converted, survival**2 / np.where(g_at_event > 0, g_at_event, np.inf), 0.0
            )
        term = term + np.where(still_open, (1.0 - survival) ** 2 / g_at_h, 0.0)
        scores.append(float(term.mean()))
    usable = list(horizons)[: len(scores)]
    if len(scores) < 2:
        return None
    return float(np.trapezoid(scores, usable) / (usable[-1] - usable[0]))


def evaluate_timing(
    timing: ConversionTiming,
    X_test: np.ndarray,
    test: tuple[np.ndarray, np.ndarray],
    train: tuple[np.ndarray, np.ndarray],
) -> dict[str, Any]:
    """Concordance, integrated Brier score and per-horizon ROC AUC of the model and of the
    Kaplan–Meier baseline on the test snapshots."""
    days, event = test
    by = timing.by_horizon(X_test)
    horizons = [float(h) for h in timing.horizons_days]
    km_times, km_values = kaplan_meier(*train)
    km_by = np.tile(1.0 - _step(km_times, km_values, np.array(horizons)), (len(days), 1))
    within = [h for h in horizons if h <= (days.max() if len(days) else 0)]
    auc = {}
    for k, h in enumerate(horizons):
        cases = (days <= h) & event
        controls = days > h
        usable = cases | controls
        value = rank_auc(cases[usable], by[usable, k]) if usable.any() else None
        auc[str(int(h))] = None if value is None else round(value, 6)

    def rounded(value: float | None) -> float | None:
        return None if value is None else round(value, 6)

    return {
        "horizons_days": [int(h) for h in horizons],
        "test_snapshots": len(days),
        "test_conversions": int(event.sum()),
        "concordance": rounded(concordance(days, event, by[:, -1])),
        "baseline_concordance": rounded(concordance(days, event, km_by[:, -1])),
        "integrated_brier": rounded(integrated_brier(train, test, by[:, : len(within)], within)),
        "baseline_integrated_brier": rounded(
            integrated_brier(train, test, km_by[:, : len(within)], within)
        ),
        "roc_auc_by_horizon": auc,
    }


def monthly_forecast(
    as_of: pd.Series,
    by: np.ndarray,
    amounts: np.ndarray,
    timing: ConversionTiming,
    end: pd.Timestamp,
    actual_at: pd.Series | None = None,
    actual_amount: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """Expected wins and revenue per calendar month (from the first as_of's month to
    ``end``'s) of the leads given, from their curves; with ``actual_at`` (each lead's
    conversion time, NaT when none), what happened beside."""
    as_of = pd.to_datetime(as_of, utc=True).reset_index(drop=True)
    if not len(as_of):
        return []
    months = pd.period_range(
        as_of.min().tz_localize(None).to_period("M"), end.tz_localize(None).to_period("M"), freq="M"
    )
    out = []
    for month in months:
        start = month.start_time.tz_localize("UTC")
        stop = (month + 1).start_time.tz_localize("UTC")
        start_days = np.maximum((start - as_of).dt.total_seconds().to_numpy() / DAY_SECONDS, 0.0)
        stop_days = np.maximum((stop - as_of).dt.total_seconds().to_numpy() / DAY_SECONDS, 0.0)
        p = timing.within(by, start_days, stop_days)
        row: dict[str, Any] = {
            "month": str(month),
            "expected_wins": round(float(p.sum()), 3),
            "expected_revenue": round(float(np.nansum(p * amounts)), 2),
        }
        if actual_at is not None and actual_amount is not None:
            at = pd.to_datetime(actual_at, utc=True).reset_index(drop=True)
            won = (at >= start).to_numpy() & (at < stop).to_numpy()
            row["actual_wins"] = int(won.sum())
            row["actual_revenue"] = round(float(np.nansum(np.where(won, actual_amount, 0.0))), 2)
        out.append(row)
    return out


def timing_report(
    snapshots: pd.DataFrame,
    X: np.ndarray,
    sales_events: pd.DataFrame,
    scorer: LeadScorer,
    stages: Sequence[str],
    horizon: pd.Timestamp,
) -> dict[str, Any] | None:
    """``concordance``, ``baseline_concordance`` (Kaplan–Meier), ``integrated_brier`` (and the
    baseline's), ROC AUC per horizon, and ``forecast_by_month``: per calendar month of the test
    period, the expected wins and revenue of the test leads (each from its first test
    snapshot) beside the wins and revenue that happened. None without a timing model."""
    timing = scorer.timing_
    if timing is None:
        return None
    days, event, amounts = durations(snapshots, sales_events, stages, horizon)
    split = snapshots["split"].to_numpy()
    train, test = split == "train", split == "test"
    report = evaluate_timing(
        timing, X[test], (days[test], event[test]), (days[train], event[train])
    )
    # Each test lead once, from its first test snapshot: a lead's later snapshots would count
    # its one conversion again.
    first = np.flatnonzero(test)[~snapshots.loc[test, "lead_id"].duplicated().to_numpy()]
    as_of = pd.Series(pd.to_datetime(snapshots["as_of"], utc=True).to_numpy()[first])
    converted_at = pd.Series(pd.NaT, index=range(len(first)), dtype="datetime64[ns, UTC]")
    happened = event[first]
    converted_at[happened] = (
        pd.to_datetime(as_of[happened], utc=True) + pd.to_timedelta(days[first][happened], unit="D")
    ).to_numpy()
    report["forecast_by_month"] = monthly_forecast(
        as_of,
        timing.by_horizon(X[first]),
        _amounts(scorer, X[first]),
        timing,
        horizon,
        actual_at=converted_at,
        actual_amount=amounts[first],
    )
    report["forecast_leads"] = len(first)
    report["amount"] = scorer.metadata.get("timing", {}).get("amount")
    return report


def _amounts(scorer: LeadScorer, X: np.ndarray) -> np.ndarray:
    if scorer.amount_ is None:
        return np.full(len(X), np.nan)
    return scorer.amount_.predict(X)


def open_lead_forecast(
    X_open: np.ndarray, scorer: LeadScorer, horizon: pd.Timestamp
) -> list[dict[str, Any]] | None:
    """Expected wins and revenue per calendar month from the open leads, scored as of the
    horizon, up to the longest timing horizon after it."""
    timing = scorer.timing_
    if timing is None:
        return None
    by = timing.by_horizon(X_open)
    end = horizon + pd.Timedelta(days=timing.horizons_days[-1])
    as_of = pd.Series([horizon] * len(X_open))
    return monthly_forecast(as_of, by, _amounts(scorer, X_open), timing, end)


def pipeline_forecast(
    X_open: np.ndarray,
    scorer: LeadScorer,
    horizon: pd.Timestamp,
    backtest: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """``kpis.json`` ``forecast``: the open leads' count and :func:`open_lead_forecast`, and
    the test period's ``forecast_by_month`` (``backtest``: :func:`timing_report`'s) beside."""
    return {
        "open_leads": len(X_open),
        "by_month": open_lead_forecast(X_open, scorer, horizon),
        "backtest_by_month": list(backtest["forecast_by_month"]) if backtest else [],
    }


def forecast_totals(rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Summed forecast (and actual, when known) wins and revenue over ``rows``."""
    keys = ("expected_wins", "expected_revenue", "actual_wins", "actual_revenue")
    return {k: round(float(sum(r[k] for r in rows)), 2) for k in keys if rows and k in rows[0]}
