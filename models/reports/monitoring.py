"""Monitoring a model in production (``leadscore monitor``): the track record of its stored
scores, drift of the scored population against the training reference, and a retrain
recommendation.

- **Reference** (:func:`build_reference`, stored at training in the scorer's
  ``metadata["reference"]``): from the ``train`` slice, per numeric feature its quantile bin
  edges (``monitor.bins`` quantiles, ties merged) and the share of rows per bin, missing values
  a bin of their own; per categorical feature the share of each category (vocabulary names;
  the engine's ``__other__`` and missing as their own categories); the same bins for the score
  (the primary target's calibrated probability); and the model's ROC AUC on its test slice.
- **Drift** (:func:`drift_report`): PSI = Σ (a − e) · ln(a / e) over the reference's bins,
  shares floored at :data:`EPSILON` so that an empty bin counts as a large but finite change;
  bands: below ``monitor.psi_moderate`` stable, above ``monitor.psi_major`` major, moderate
  between. KS for numeric features is the **two-sample KS statistic on the binned data**: the
  largest gap between the two cumulative distributions at the reference's bin edges (missing
  values left out); the reference keeps bins, not rows, so this is what can be computed — a
  lower bound of the raw-data statistic, with its asymptotic p-value (Kolmogorov distribution,
  effective size n·m/(n+m)), conservative for the same reason. Categories the training slice
  never had (share 0 there) are counted per categorical feature (``unseen``). Features built
  from accumulated history (campaign and channel outcome rates, which none has in the data's
  first window; an account's history; campaign volume in a growing market) drift with the age
  of the data even in a steady world: their bands are read with that in mind.
- **Backtest** (:func:`observed_outcomes`, :func:`backtest`): a score at ``as_of`` has matured
  when ``as_of + window_days`` is not after the data horizon; its outcome is whether the lead
  reached the primary target's stages within the window after ``as_of``, decided by the same
  code that labels training snapshots (:func:`features.engine.snapshots.build_snapshots`).
  Per grade, per month of scoring (the month of ``as_of``: live, when the score was given)
  and per channel: scores, predicted (mean probability) and observed conversion with a 95 %
  Wilson interval; ROC AUC and ECE overall.
- **Expected performance** (:func:`expected_performance`): before outcomes mature, the mean
  calibrated probability of the recently scored leads against the training slice's mean — an
  estimate, labelled as one.
- **Retrain recommendation** (:func:`retrain_recommendation`): the score's PSI reaching
  ``monitor.retrain_score_psi``, or the matured-score ROC AUC more than
  ``monitor.retrain_auc_drop`` below the model's own test AUC (with at least
  ``monitor.min_matured`` matured scores).

Everything returned is JSON-safe (no NaN: missing figures are ``None``).
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import kstwobign

from features.engine.catalog import OTHER
from features.engine.snapshots import build_snapshots
from features.params import MonitorParams, Params
from models.reports.evaluation import NO_CHANNEL, expected_calibration_error, score_metric
from models.scorer import GRADES, LeadScorer

REFERENCE_VERSION = 1
EPSILON = 1e-4
"""Floor of a bin's share in PSI: an empty bin then adds a large but finite term."""
MISSING = "(missing)"
Z_95 = 1.959963984540054
DIGITS = 6
ESTIMATE_LABEL = (
    "estimate: the mean calibrated probability of the recently scored leads, not an observed "
    "rate; their outcomes have not matured yet"
)


# ------------------------------------------------------------------------------ helpers
def _number(value: Any, digits: int = DIGITS) -> float | None:
    """A finite float rounded for the report, or None (NaN, inf, None)."""
    if value is None:
        return None
    number = float(value)
    return round(number, digits) if math.isfinite(number) else None


def json_safe(value: Any, digits: int | None = DIGITS) -> Any:
    """``value`` with numpy scalars as Python numbers, floats rounded to ``digits`` (None: as
    they are) and every non-finite float as None."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v, digits) for v in value]
    if isinstance(value, np.ndarray):
        return [json_safe(v, digits) for v in value.tolist()]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        if digits is None:
            return float(value) if math.isfinite(value) else None
        return _number(value, digits)
    if isinstance(value, (pd.Timestamp, dt.datetime, dt.date)):
        return value.isoformat()
    return value


def band_of(psi: float | None, settings: MonitorParams) -> str:
    """stable (< psi_moderate), moderate, or major (> psi_major); ``no data`` without a PSI."""
    if psi is None:
        return "no data"
    if psi < settings.psi_moderate:
        return "stable"
    return "major" if psi > settings.psi_major else "moderate"


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float] | None:
    """The Wilson score interval of a proportion (95 % by default); None without rows."""
    if n <= 0:
        return None
    p = successes / n
    denominator = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n)) / denominator
    # exact at the ends (the formula gives 0 and 1 there, up to rounding)
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


# ---------------------------------------------------------------------------- reference
def _comparable(values: np.ndarray) -> np.ndarray:
    """Values as binned: at single precision (7 significant digits), so that the float noise
    of a computed ratio (a lift of 1 ± 1e-16) does not split a point mass across a bin edge
    placed on it."""
    with np.errstate(over="ignore"):
        return np.asarray(values, dtype=np.float64).astype(np.float32).astype(np.float64)


def quantile_edges(values: np.ndarray, bins: int) -> list[float]:
    """Upper bounds of the bins ``(-inf, e1], (e1, e2], …, (ek, inf)`` at the ``bins``-quantiles
    of the finite values, ties merged: the quantiles are observed values, so a point mass (a
    count that is mostly 0) is a bin of its own and the values above it still get bins."""
    values = _comparable(values)
    finite = values[np.isfinite(values)]
    if not len(finite):
        return []
    quantiles = np.quantile(finite, np.linspace(0.0, 1.0, bins + 1)[1:-1], method="lower")
    # a bound at the maximum would leave the top bin empty by construction
    return [float(e) for e in np.unique(quantiles) if e < finite.max()]


def bin_counts(values: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """Rows per bin ``(-inf, e1], (e1, e2], …, (ek, inf)``, then the missing (NaN) rows."""
    values = _comparable(values)
    finite = np.isfinite(values)
    index = np.searchsorted(np.asarray(edges, dtype=np.float64), values[finite], side="left")
    counts = np.bincount(index, minlength=len(edges) + 1)
    return np.append(counts, int((~finite).sum()))


def _shares(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    return counts / total if total else np.zeros(len(counts))


def numeric_reference(values: np.ndarray, bins: int) -> dict[str, Any]:
    values = np.asarray(values, dtype=np.float64)
    edges = quantile_edges(values, bins)
    shares = _shares(bin_counts(values, edges))
    return {
        "kind": "numeric",
        "edges": edges,
        "shares": [float(s) for s in shares[:-1]],
        "missing": float(shares[-1]),
        "rows": len(values),
    }


def category_names(codes: np.ndarray, vocabulary: Sequence[str] | None) -> np.ndarray:
    """The engine's codes as names: vocabulary index → name, one past it → the engine's
    ``__other__``, NaN → ``(missing)`` (codes as text when there is no vocabulary)."""
    codes = np.asarray(codes, dtype=np.float64)
    names = np.full(len(codes), MISSING, dtype=object)
    known = np.isfinite(codes)
    values = codes[known].astype(np.int64)
    if vocabulary is None:
        names[known] = [str(v) for v in values.tolist()]
        return names
    table = np.asarray([*vocabulary, OTHER], dtype=object)
    inside = (values >= 0) & (values < len(table))
    named = np.empty(len(values), dtype=object)
    named[inside] = table[values[inside]]
    named[~inside] = [f"code {v}" for v in values[~inside].tolist()]
    names[known] = named
    return names


def _category_shares(names: np.ndarray) -> dict[str, float]:
    if not len(names):
        return {}
    labels, counts = np.unique(names.astype(str), return_counts=True)
    return {str(k): float(c / len(names)) for k, c in zip(labels, counts, strict=True)}


def categorical_reference(codes: np.ndarray, vocabulary: Sequence[str] | None) -> dict[str, Any]:
    names = category_names(codes, vocabulary)
    return {"kind": "categorical", "shares": _category_shares(names), "rows": len(names)}


def build_reference(
    X: np.ndarray,
    feature_names: Sequence[str],
    categorical: Sequence[str],
    probabilities: np.ndarray,
    bins: int,
    vocabularies: Mapping[str, Sequence[str]] | None = None,
    test_roc_auc: float | None = None,
) -> dict[str, Any]:
    """The compact, JSON-able training reference drift is measured against: ``X`` the train
    slice's feature matrix (columns ``feature_names``; categorical columns hold codes),
    ``probabilities`` the model's primary probability of those rows."""
    if X.shape[1] != len(feature_names):
        raise ValueError(f"X has {X.shape[1]} columns for {len(feature_names)} feature names")
    vocabularies = vocabularies or {}
    wanted = set(categorical)
    features: dict[str, Any] = {}
    for j, name in enumerate(feature_names):
        column = X[:, j]
        features[name] = (
            categorical_reference(column, vocabularies.get(name))
            if name in wanted
            else numeric_reference(column, bins)
        )
    p = np.asarray(probabilities, dtype=np.float64)
    return json_safe(
        {
            "version": REFERENCE_VERSION,
            "population": "train slice",
            "rows": len(X),
            "bins": bins,
            "features": features,
            "score": numeric_reference(p, bins),
            "mean_probability": float(p.mean()) if len(p) else None,
            "test_roc_auc": test_roc_auc,
        },
        digits=None,  # rounded edges would move rows across them
    )


# -------------------------------------------------------------------------------- drift
def psi(expected: np.ndarray, actual: np.ndarray, epsilon: float = EPSILON) -> float:
    """Population stability index of two share vectors over the same bins."""
    e = np.maximum(np.asarray(expected, dtype=np.float64), epsilon)
    a = np.maximum(np.asarray(actual, dtype=np.float64), epsilon)
    return float(np.sum((a - e) * np.log(a / e)))


def binned_ks(
    expected: np.ndarray, actual: np.ndarray, n_expected: int, n_actual: int
) -> tuple[float, float] | None:
    """Two-sample KS on binned data (ordered bins, missing excluded): the largest gap of the
    two cumulative shares at the bin edges, and its asymptotic p-value."""
    e, a = np.asarray(expected, dtype=np.float64), np.asarray(actual, dtype=np.float64)
    if e.sum() <= 0 or a.sum() <= 0 or n_expected <= 0 or n_actual <= 0:
        return None
    statistic = float(np.max(np.abs(np.cumsum(e / e.sum()) - np.cumsum(a / a.sum()))))
    effective = n_expected * n_actual / (n_expected + n_actual)
    return statistic, float(kstwobign.sf(statistic * math.sqrt(effective)))


def numeric_drift(
    reference: Mapping[str, Any], values: np.ndarray, settings: MonitorParams
) -> dict[str, Any]:
    counts = bin_counts(values, reference["edges"])
    n = int(counts.sum())
    if n == 0:
        return {"psi": None, "band": "no data", "ks": None, "ks_pvalue": None}
    expected = np.array([*reference["shares"], reference["missing"]], dtype=np.float64)
    actual = _shares(counts)
    value = psi(expected, actual)
    ks = binned_ks(
        expected[:-1],
        counts[:-1].astype(np.float64),
        round(reference["rows"] * (1.0 - reference["missing"])),
        int(counts[:-1].sum()),
    )
    return {
        "psi": _number(value),
        "band": band_of(value, settings),
        "ks": None if ks is None else _number(ks[0]),
        "ks_pvalue": None if ks is None else _number(ks[1]),
        "missing": _number(actual[-1]),
    }


def categorical_drift(
    reference: Mapping[str, Any],
    codes: np.ndarray,
    vocabulary: Sequence[str] | None,
    settings: MonitorParams,
) -> dict[str, Any]:
    names = category_names(codes, vocabulary)
    if not len(names):
        return {"psi": None, "band": "no data", "unseen": 0}
    actual = _category_shares(names)
    expected: Mapping[str, float] = reference["shares"]
    categories = sorted(set(expected) | set(actual))
    e = np.array([expected.get(c, 0.0) for c in categories])
    a = np.array([actual.get(c, 0.0) for c in categories])
    value = psi(e, a)
    never = {c for c in categories if expected.get(c, 0.0) == 0.0}
    unseen = int(sum(round(actual.get(c, 0.0) * len(names)) for c in never))
    return {
        "psi": _number(value),
        "band": band_of(value, settings),
        "unseen": unseen,
        "unseen_categories": sorted(c for c in never if actual.get(c, 0.0) > 0),
    }


def drift_report(
    reference: Mapping[str, Any] | None,
    X: np.ndarray,
    feature_names: Sequence[str],
    categorical: Sequence[str],
    probabilities: np.ndarray,
    settings: MonitorParams,
    vocabularies: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, Any]:
    """PSI (and KS, unseen categories) per feature of the recent population ``X``, and the
    score's PSI from its primary ``probabilities``, against the training ``reference``."""
    if reference is None:
        return {
            "note": "the model carries no training reference (trained before monitoring); "
            "retrain it to measure drift",
            "rows": len(X),
            "features": {},
            "score": {"psi": None, "band": "no data"},
            "major": [],
            "moderate": [],
        }
    vocabularies = vocabularies or {}
    wanted = set(categorical)
    features: dict[str, Any] = {}
    for j, name in enumerate(feature_names):
        entry = reference["features"].get(name)
        if entry is None:
            features[name] = {"psi": None, "band": "no reference"}
        elif name in wanted and entry["kind"] == "categorical":
            features[name] = categorical_drift(entry, X[:, j], vocabularies.get(name), settings)
        else:
            features[name] = numeric_drift(entry, X[:, j], settings)
    for name, entry in features.items():
        entry["trending"] = any(fnmatch.fnmatchcase(name, p) for p in settings.trending)
    p = np.asarray(probabilities, dtype=np.float64)
    score = numeric_drift(reference["score"], p, settings)
    score = {"psi": score["psi"], "band": score["band"], "ks": score.get("ks"), "rows": len(p)}
    watched = {n: f for n, f in features.items() if not f["trending"]}
    return {
        "population": f"recently scored leads ({len(X)} with features) vs the training "
        f"reference ({reference['rows']} rows)",
        "rows": len(X),
        "features": features,
        "score": score,
        "major": sorted(n for n, f in watched.items() if f["band"] == "major"),
        "moderate": sorted(n for n, f in watched.items() if f["band"] == "moderate"),
        "trending_major": sorted(
            n for n, f in features.items() if f["trending"] and f["band"] == "major"
        ),
    }


# ----------------------------------------------------------------------------- backtest
def observed_outcomes(
    scores: pd.DataFrame,
    leads: pd.DataFrame,
    sales_events: pd.DataFrame | None,
    horizon: pd.Timestamp,
    window_days: int,
    stages: Sequence[str],
) -> np.ndarray:
    """Per score (``lead_id``, ``as_of``): 1.0 if the lead reached one of ``stages`` within
    ``window_days`` after ``as_of``, 0.0 if not, NaN when it cannot be known: not matured
    (``as_of + window_days`` after ``horizon``), a lead the data does not have, one already
    closed at ``as_of`` (as for a training snapshot), or no sales events at all (a flat
    export). The training label code decides it: each
    score is a snapshot of a lead "created" at its ``as_of`` with offset 0."""
    out = np.full(len(scores), np.nan)
    if not len(scores) or sales_events is None:  # no sales events: no outcome is known
        return out
    events = sales_events
    ids = scores["lead_id"].astype(str).reset_index(drop=True)
    known = ids.isin(set(leads["lead_id"].astype(str))).to_numpy()
    as_of = pd.to_datetime(scores["as_of"], utc=True).reset_index(drop=True)
    # build_snapshots needs one row per lead: a lead scored k times is asked k times.
    level = ids.groupby(ids).cumcount().to_numpy()
    event_ids = events["lead_id"].astype(str)
    for k in np.unique(level[known]):
        rows = np.flatnonzero(known & (level == k))
        pseudo = pd.DataFrame(
            {"lead_id": ids.iloc[rows].to_numpy(), "created_at": as_of.iloc[rows]}
        )
        pseudo = pseudo.reset_index(drop=True)
        own = events[event_ids.isin(set(pseudo["lead_id"])).to_numpy()]
        snapshots = build_snapshots(pseudo, own, [0], horizon, window_days, {"y": tuple(stages)})
        label = snapshots.set_index("lead_id")["label_y"]
        out[rows] = label.reindex(pseudo["lead_id"]).to_numpy(dtype=np.float64)
    return out


def _row(scored: int, converted: float, probability_sum: float) -> dict[str, Any]:
    """One backtest row from a group's counts."""
    positives = round(converted)
    interval = wilson_interval(positives, scored)
    return {
        "scored": int(scored),
        "converted": positives,
        "predicted": _number(probability_sum / scored) if scored else None,
        "observed": _number(positives / scored) if scored else None,
        "observed_low": None if interval is None else _number(interval[0]),
        "observed_high": None if interval is None else _number(interval[1]),
    }


def _sums(
    codes: np.ndarray, size: int, y: np.ndarray, p: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per group code: scores, conversions and the sum of probabilities (one pass each)."""
    return (
        np.bincount(codes, minlength=size),
        np.bincount(codes, weights=y, minlength=size),
        np.bincount(codes, weights=p, minlength=size),
    )


def backtest(matured: pd.DataFrame, ece_bins: int = 10, min_group_auc: int = 30) -> dict[str, Any]:
    """The track record of matured scores: ``matured`` has ``grade``, ``probability``,
    ``scored_at``, ``channel`` (None when unknown) and ``observed`` (0/1) per score."""
    y = matured["observed"].to_numpy(dtype=np.float64)
    p = matured["probability"].to_numpy(dtype=np.float64)
    # integer codes, so that each table is a few bincounts however many scores there are
    grade = pd.Categorical(matured["grade"].astype(str), categories=list(GRADES)).codes
    grade = np.asarray(grade, dtype=np.int64)  # -1: not a grade (cannot be: the store checks)
    known = grade >= 0
    y_known, p_known, g_known = y[known], p[known], grade[known]
    n_grades = len(GRADES)
    count, converted, total = _sums(g_known, n_grades, y_known, p_known)
    by_grade = [
        {"grade": g, **_row(count[i], converted[i], total[i])} for i, g in enumerate(GRADES)
    ]
    # the month the lead was scored as of: live, that is when it was scored; for a rescoring
    # of the past (`leadscore rescore --as-of`), the month it stood for
    when = matured["as_of"] if "as_of" in matured else matured["scored_at"]
    scored_at = pd.DatetimeIndex(pd.to_datetime(when, utc=True))
    month_number = np.asarray(scored_at.year * 12 + scored_at.month - 1, dtype=np.int64)
    by_month = []
    if len(month_number):
        months, month_code = np.unique(month_number, return_inverse=True)
        m_count, m_converted, m_total = _sums(month_code, len(months), y, p)
        cell = month_code[known] * n_grades + g_known
        c_count, c_converted, c_total = _sums(cell, len(months) * n_grades, y_known, p_known)
        for i, number in enumerate(months.tolist()):
            by_month.append(
                {
                    "month": f"{number // 12}-{number % 12 + 1:02d}",
                    **_row(m_count[i], m_converted[i], m_total[i]),
                    "by_grade": [
                        {"grade": g, **_row(c_count[k], c_converted[k], c_total[k])}
                        for j, g in enumerate(GRADES)
                        if c_count[k := i * n_grades + j]
                    ],
                }
            )
    by_channel = []
    channels = matured["channel"]
    if channels.notna().any():
        names = channels.astype("object").where(channels.notna(), NO_CHANNEL).astype(str)
        labels, channel_code = np.unique(names.to_numpy(dtype=str), return_inverse=True)
        ch_count, ch_converted, ch_total = _sums(channel_code, len(labels), y, p)
        for i, channel in enumerate(labels.tolist()):
            entry = {"channel": channel, **_row(ch_count[i], ch_converted[i], ch_total[i])}
            rows = channel_code == i
            enough = ch_count[i] >= min_group_auc
            entry["roc_auc"] = (
                _number(score_metric("roc_auc", y[rows], p[rows])) if enough else None
            )
            entry["ece"] = (
                _number(expected_calibration_error(y[rows], p[rows], ece_bins)) if enough else None
            )
            by_channel.append(entry)
    return {
        "matured": len(y),
        "converted": int(y.sum()),
        "predicted": _number(p.mean()) if len(p) else None,
        "observed": _number(y.mean()) if len(y) else None,
        "roc_auc": _number(score_metric("roc_auc", y, p)) if len(y) else None,
        "ece": _number(expected_calibration_error(y, p, ece_bins)) if len(y) else None,
        "by_grade": by_grade,
        "by_month": by_month,
        "by_channel": by_channel,
    }


# ------------------------------------------------------------------ expected, retraining
def expected_performance(
    recent_probabilities: np.ndarray, reference: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The recent scored population's expected conversion (mean calibrated probability) beside
    the training population's — an estimate until their outcomes mature."""
    p = np.asarray(recent_probabilities, dtype=np.float64)
    recent = float(p.mean()) if len(p) else None
    training = None if reference is None else reference.get("mean_probability")
    change = None if recent is None or training is None else recent - training
    return {
        "label": ESTIMATE_LABEL,
        "leads": len(p),
        "expected_conversion": _number(recent),
        "expected_conversions": _number(p.sum()) if len(p) else None,
        "training_conversion": _number(training),
        "change": _number(change),
        "relative_change": _number(change / training) if change is not None and training else None,
    }


def retrain_recommendation(
    score_psi: float | None,
    matured_auc: float | None,
    matured: int,
    test_auc: float | None,
    settings: MonitorParams,
    major_features: Sequence[str] = (),
) -> tuple[bool, list[str], dict[str, Any]]:
    """``(retrain_recommended, retrain_reasons, rules)``: the reasons name the figures; the
    rules say for each rule whether it could be applied and why not. ``major_features``: the
    features (not trending) whose drift is major."""
    reasons: list[str] = []
    rules: dict[str, Any] = {}
    if settings.retrain_major_features == 0:
        rules["major_features"] = {"applied": False, "note": "monitor.retrain_major_features is 0"}
    else:
        hit = len(major_features) >= settings.retrain_major_features
        rules["major_features"] = {
            "applied": True,
            "value": len(major_features),
            "threshold": settings.retrain_major_features,
            "triggered": hit,
        }
        if hit:
            listed = ", ".join(major_features[:5]) + (" …" if len(major_features) > 5 else "")
            reasons.append(
                f"{len(major_features)} features drift majorly (PSI > {settings.psi_major}: "
                f"{listed}): the leads are no longer like the ones the model learned from"
            )
    if score_psi is None:
        rules["score_psi"] = {"applied": False, "note": "no recent scores or no reference"}
    else:
        hit = score_psi >= settings.retrain_score_psi
        rules["score_psi"] = {
            "applied": True,
            "value": _number(score_psi),
            "threshold": settings.retrain_score_psi,
            "triggered": hit,
        }
        if hit:
            reasons.append(
                f"the score's PSI is {score_psi:.3f}, at or above monitor.retrain_score_psi "
                f"{settings.retrain_score_psi}: the scored population has shifted since training"
            )
    if test_auc is None:
        rules["auc_drop"] = {
            "applied": False,
            "note": "the model carries no test ROC AUC (trained before monitoring); skipped",
        }
    elif matured < settings.min_matured or matured_auc is None:
        rules["auc_drop"] = {
            "applied": False,
            "note": f"{matured} matured scores (with both outcomes), monitor.min_matured is "
            f"{settings.min_matured}; skipped",
        }
    else:
        floor = test_auc - settings.retrain_auc_drop
        hit = matured_auc < floor
        rules["auc_drop"] = {
            "applied": True,
            "value": _number(matured_auc),
            "test_roc_auc": _number(test_auc),
            "threshold": _number(floor),
            "triggered": hit,
        }
        if hit:
            reasons.append(
                f"the ROC AUC on {matured} matured scores is {matured_auc:.3f}, more than "
                f"monitor.retrain_auc_drop {settings.retrain_auc_drop} below the model's test "
                f"ROC AUC {test_auc:.3f}"
            )
    return bool(reasons), reasons, rules


# ------------------------------------------------------------------------- the report
def channels_of(
    lead_ids: pd.Series, leads: pd.DataFrame, campaigns: pd.DataFrame | None
) -> pd.Series:
    """Each lead's channel (its campaign's, as the queue spells it), None when unknown."""
    if campaigns is None or "campaign_id" not in leads:
        return pd.Series([None] * len(lead_ids), dtype="object")
    campaign = leads.set_index(leads["lead_id"].astype(str))["campaign_id"]
    campaign = campaign[~campaign.index.duplicated()]
    channel = campaigns.set_index(campaigns["campaign_id"].astype(str))["channel"]
    channel = channel.astype(str).str.strip().str.lower()
    of_lead = lead_ids.astype(str).map(campaign).map(channel)
    return of_lead.astype("object").where(of_lead.notna(), None).reset_index(drop=True)


def latest_per_point(scores: pd.DataFrame) -> pd.DataFrame:
    """One score per (lead, as_of): the last given (rescoring the same moment replaces it)."""
    ordered = scores.sort_values(["scored_at", "id"] if "id" in scores else ["scored_at"])
    return ordered.drop_duplicates(["lead_id", "as_of"], keep="last").reset_index(drop=True)


def recent_scores(scores: pd.DataFrame, horizon: pd.Timestamp, days: int) -> pd.DataFrame:
    """The recently scored population: scores given after ``horizon − days`` (later ones too:
    the API scores today leads the data has not caught up with), the latest per lead."""
    since = horizon - pd.Timedelta(days=days)
    recent = scores[pd.to_datetime(scores["scored_at"], utc=True) > since]
    ordered = recent.sort_values(["scored_at", "id"] if "id" in recent else ["scored_at"])
    return ordered.drop_duplicates("lead_id", keep="last").reset_index(drop=True)


def recent_features(
    scorer: LeadScorer,
    tables: Mapping[str, pd.DataFrame],
    recent: pd.DataFrame,
    partition: int = 250_000,
) -> tuple[np.ndarray, np.ndarray]:
    """The features of the recently scored leads as of their score's ``as_of``, by the scorer's
    own engine (the queue's ``transform``); and the mask of ``recent`` rows they are for (leads
    the data has)."""
    leads = tables["leads"]
    ids = recent["lead_id"].astype(str)
    mask = ids.isin(set(leads["lead_id"].astype(str))).to_numpy()
    snapshots = pd.DataFrame(
        {"lead_id": ids[mask].to_numpy(), "as_of": pd.to_datetime(recent["as_of"][mask], utc=True)}
    ).reset_index(drop=True)
    touches = tables.get("touches")
    sales = tables.get("sales_events")
    lead_ids = leads["lead_id"].astype(str)
    parts = []
    for start in range(0, len(snapshots), partition):
        part = snapshots.iloc[start : start + partition]
        wanted = set(part["lead_id"])
        parts.append(
            scorer.engine.transform(
                part,
                leads[lead_ids.isin(wanted).to_numpy()],
                touches[touches["lead_id"].astype(str).isin(wanted)]
                if touches is not None
                else None,
                sales[sales["lead_id"].astype(str).isin(wanted)] if sales is not None else None,
            )
        )
    n_features = len(scorer.engine.feature_names_)
    return (np.vstack(parts) if parts else np.zeros((0, n_features))), mask


def _vocabularies(scorer: LeadScorer) -> dict[str, tuple[str, ...]]:
    return {name: scorer.engine.vocabulary(name) for name in scorer.engine.categorical_features_}


def monitor(
    scores: pd.DataFrame,
    tables: Mapping[str, pd.DataFrame],
    horizon: pd.Timestamp,
    scorer: LeadScorer,
    params: Params,
    model: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The whole monitoring report from the store's ``scores`` (as
    :meth:`~models.store.ScoreStore.scores_between` gives them) and the validated ``tables``
    up to ``horizon``. JSON-safe."""
    settings = params.monitor
    definition = scorer.definition
    window = definition.window_days
    primary = definition.target
    reference = scorer.metadata.get("reference")
    points = latest_per_point(scores) if len(scores) else scores
    leads = tables["leads"]

    # the backtest
    observed = observed_outcomes(
        points,
        leads,
        tables.get("sales_events"),
        horizon,
        window,
        definition.targets[primary],
    )
    has_outcome = np.isfinite(observed)
    matured = pd.DataFrame(
        {
            "grade": points["grade"].to_numpy()[has_outcome] if len(points) else [],
            "probability": points["probability"].to_numpy()[has_outcome] if len(points) else [],
            "scored_at": points["scored_at"].to_numpy()[has_outcome] if len(points) else [],
            "as_of": points["as_of"].to_numpy()[has_outcome] if len(points) else [],
            "observed": observed[has_outcome],
        }
    )
    matured["channel"] = channels_of(
        points["lead_id"][has_outcome] if len(points) else pd.Series([], dtype=object),
        leads,
        tables.get("campaigns"),
    )
    track = backtest(matured, params.evaluate.ece_bins)
    as_of = pd.to_datetime(points["as_of"], utc=True) if len(points) else pd.Series([])
    not_matured = int((as_of + pd.Timedelta(days=window) > horizon).sum()) if len(points) else 0
    track["not_matured"] = not_matured
    track["unknown_leads"] = (
        int((~points["lead_id"].astype(str).isin(set(leads["lead_id"].astype(str)))).sum())
        if len(points)
        else 0
    )
    if not track["matured"]:
        track["message"] = (
            f"nothing to backtest yet: no stored score has matured (a score matures "
            f"{window} days after its as_of, by the data horizon {horizon.isoformat()})"
        )

    # drift and the expected performance of the recent population
    recent = recent_scores(scores, horizon, settings.recent_days) if len(scores) else scores
    recent_p = recent["probability"].to_numpy(dtype=np.float64) if len(recent) else np.zeros(0)
    names = scorer.engine.feature_names_
    if len(recent):
        X, with_data = recent_features(scorer, tables, recent, params.features.partition_leads)
    else:
        X, with_data = np.zeros((0, len(names))), np.zeros(0, dtype=bool)
    drift = drift_report(
        reference,
        X,
        names,
        scorer.engine.categorical_features_,
        recent_p,
        settings,
        _vocabularies(scorer),
    )
    drift["recent_scores"] = len(recent)
    drift["recent_without_data"] = int((~with_data).sum())
    test_auc = None if reference is None else reference.get("test_roc_auc")
    recommended, reasons, rules = retrain_recommendation(
        drift["score"]["psi"],
        track["roc_auc"],
        track["matured"],
        test_auc,
        settings,
        drift.get("major", []),
    )
    return json_safe(
        {
            "model": dict(model) if model else None,
            "target": primary,
            "horizon": horizon,
            "window_days": window,
            "recent_days": settings.recent_days,
            "recent_since": horizon - pd.Timedelta(days=settings.recent_days),
            "scores": {"stored": len(scores), "points": len(points)},
            "backtest": track,
            "expected": expected_performance(recent_p, reference),
            "drift": drift,
            "retrain_recommended": recommended,
            "retrain_reasons": reasons,
            "retrain_rules": rules,
        }
    )


def plot_tables(report: Mapping[str, Any]) -> dict[str, pd.DataFrame]:
    """The DVC plots' tables: the backtest by grade (promised vs observed) and the drift per
    feature and the score."""
    by_grade = pd.DataFrame(
        report["backtest"]["by_grade"],
        columns=["grade", "scored", "converted", "predicted", "observed", "observed_low",
                 "observed_high"],
    )  # fmt: skip
    drift = report["drift"]
    rows = [
        {"feature": name, "psi": entry.get("psi"), "band": entry.get("band"), "ks": entry.get("ks")}
        for name, entry in drift["features"].items()
    ]
    score = drift["score"]
    rows.append(
        {
            "feature": "(score)",
            "psi": score.get("psi"),
            "band": score.get("band"),
            "ks": score.get("ks"),
        }
    )
    return {
        "backtest_by_grade": by_grade[
            [
                "grade",
                "scored",
                "converted",
                "predicted",
                "observed",
                "observed_low",
                "observed_high",
            ]
        ],
        "drift": pd.DataFrame(rows, columns=["feature", "psi", "band", "ks"]),
    }
