"""The per-column leakage guard: which feature columns predict the outcome too well to be true.

Leakage (a column written after the outcome, such as a rep's ``Lead Quality``) is the most
common way a lead-scoring model lies, and one test-AUC threshold misses it when the rest of the
data is weak. So every feature column is measured, per target, three ways:

- **univariate** ROC AUC and PR AUC (average precision) of the column alone on the `train`
  slice. Direction-free: max(AUC, 1 − AUC), and a missing value may sit at either end (missing
  itself can be the leak). A categorical column scores each row by its category's positive rate
  in the *other* folds (out-of-fold), so a near-unique column cannot score itself;
- its **share of the model's |SHAP|**: mean |SHAP| of the column over the sum for all columns,
  on up to ``shap_rows`` `valid` rows, from the trained booster;
- the **drop in validation ROC AUC** when the model is retrained without it, for the top
  ``drop_columns`` columns by |SHAP| only (to bound the cost). The retrains are cheap (higher
  learning rate, few rounds, early stopping on `valid`) and compared with a full model trained
  the same cheap way, so the difference is the column's and not the budget's.

A column is flagged when any figure crosses its threshold (params ``train.leakage``); the
report says which and why. Training writes the figures into the scorer's reports, evaluation
copies the flagged and the top columns into ``metrics.json`` and the model card.

SciPy and scikit-learn are imported by the functions that measure, not by this module: the API
imports it only to show a scorer's report (:func:`target_guard`) and starts without them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np

from features.params import LeakageParams

logger = logging.getLogger(__name__)

TOP_COLUMNS = 5
"""Columns (by |SHAP| share) that metrics.json and the model card show besides the flagged."""


# ------------------------------------------------------------------- univariate
def rank_auc(y: np.ndarray, score: np.ndarray) -> float | None:
    """ROC AUC of ``score`` for boolean ``y`` (Mann–Whitney with average ranks for ties); None
    without both classes. A rank formula, not scikit-learn's curve: about a hundred columns
    per target are scored, and this is several times faster on the same answer."""
    positives = int(y.sum())
    negatives = len(y) - positives
    if not positives or not negatives:
        return None
    from scipy.stats import rankdata

    ranks = rankdata(score)
    return float((ranks[y].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def oriented(y: np.ndarray, values: np.ndarray) -> tuple[float | None, np.ndarray]:
    """The best direction-free ROC AUC of ``values`` and the score that reaches it (missing
    values placed at the low or the high end, the column read up or down)."""
    missing = np.isnan(values)
    best: float | None = None
    best_score = values
    # Finite ends (not ±inf): average precision refuses infinite scores.
    present = values[~missing]
    low, high = (float(present.min()) - 1.0, float(present.max()) + 1.0) if len(present) else (0, 0)
    for fill in (low, high) if missing.any() else (0.0,):
        score = np.where(missing, fill, values)
        auc = rank_auc(y, score)
        if auc is None:
            return None, values
        for candidate, signed in ((auc, score), (1.0 - auc, -score)):
            if best is None or candidate > best:
                best, best_score = candidate, signed
    return best, best_score


def out_of_fold_rates(codes: np.ndarray, y: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Each row's category positive rate among the rows of the other folds (missing is a
    category of its own; a category unseen in the other folds gets the overall rate)."""
    missing = np.isnan(codes)
    level = np.where(missing, 0, np.nan_to_num(codes) + 1).astype(np.int64)
    levels = int(level.max()) + 1 if len(level) else 1
    fold = np.random.default_rng(seed).permutation(len(y)) % folds
    y_float = y.astype(np.float64)
    rows_all = np.bincount(level, minlength=levels).astype(np.float64)
    positives_all = np.bincount(level, weights=y_float, minlength=levels)
    # Unseen categories get one constant, the overall rate: the other folds' own rate would
    # differ per fold and, inversely to the fold's positives, score rows a little (AUC 0.53 on
    # an id column instead of 0.50).
    prior = positives_all.sum() / max(rows_all.sum(), 1.0)
    out = np.empty(len(y), dtype=np.float64)
    for f in range(folds):
        inside = fold == f
        rows = rows_all - np.bincount(level[inside], minlength=levels)
        positives = positives_all - np.bincount(
            level[inside], weights=y_float[inside], minlength=levels
        )
        with np.errstate(divide="ignore", invalid="ignore"):
            rate = np.where(rows > 0, positives / rows, prior)
        out[inside] = rate[level[inside]]
    return out


def univariate(
    X: np.ndarray, y: np.ndarray, categorical: Sequence[int], folds: int, seed: int
) -> tuple[list[float | None], list[float | None]]:
    """Per column of X: direction-free ROC AUC and the PR AUC of the same oriented score."""
    from sklearn.metrics import average_precision_score

    labels = np.asarray(y) == 1
    is_categorical = set(categorical)
    roc: list[float | None] = []
    pr: list[float | None] = []
    for j in range(X.shape[1]):
        column = X[:, j].astype(np.float64)
        if j in is_categorical:
            column = out_of_fold_rates(column, labels, folds, seed)
        auc, score = oriented(labels, column)
        roc.append(auc)
        pr.append(None if auc is None else float(average_precision_score(labels, score)))
    return roc, pr


# ------------------------------------------------------------------------- SHAP
def shap_shares(booster: lgb.Booster, X: np.ndarray, iteration: int, rows: int) -> np.ndarray:
    """Each column's mean |SHAP| over the sum of all columns', on ``rows`` evenly spaced rows."""
    if not len(X):
        return np.zeros(X.shape[1])
    sample = X[np.unique(np.linspace(0, len(X) - 1, min(rows, len(X))).astype(np.int64))]
    contributions = np.asarray(booster.predict(sample, num_iteration=iteration, pred_contrib=True))
    magnitude = np.abs(contributions[:, :-1]).mean(axis=0)  # the last column is the bias
    total = float(magnitude.sum())
    return magnitude / total if total > 0 else magnitude


# --------------------------------------------------------------- drop-column AUC
@dataclass(frozen=True)
class Slices:
    """The rows the guard reads: `train` to fit, `valid` to stop early and measure."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_valid: np.ndarray
    y_valid: np.ndarray


def _cheap_auc(
    slices: Slices,
    names: Sequence[str],
    categorical: Sequence[int],
    booster_params: Mapping[str, Any],
    keep: np.ndarray,
    settings: LeakageParams,
) -> float | None:
    """Validation ROC AUC of a cheaply trained booster on the columns ``keep`` (indices)."""
    params = dict(booster_params)
    params["learning_rate"] = settings.drop_learning_rate
    # The basic monotone method: the same constraints, several times faster than "advanced"
    # (3.0 → 0.7 s per retrain at 20,000 leads), and the AUC it reaches moves by < 0.005.
    params["monotone_constraints_method"] = "basic"
    if "monotone_constraints" in params:
        params["monotone_constraints"] = [params["monotone_constraints"][j] for j in keep]
    position = {j: i for i, j in enumerate(keep)}
    kept_categorical = [position[j] for j in categorical if j in position]
    train = lgb.Dataset(
        slices.X_train[:, keep],
        slices.y_train,
        feature_name=[names[j] for j in keep],
        categorical_feature=kept_categorical,
    )
    valid = lgb.Dataset(slices.X_valid[:, keep], slices.y_valid, reference=train)
    booster = lgb.train(
        params,
        train,
        num_boost_round=settings.drop_rounds,
        valid_sets=[valid],
        # A tenth of the budget without improvement: the same patience ratio as a full run.
        callbacks=[lgb.early_stopping(max(10, settings.drop_rounds // 10), verbose=False)],
    )
    best = booster.best_iteration or booster.current_iteration()
    p = np.asarray(booster.predict(slices.X_valid[:, keep], num_iteration=best))
    labels = slices.y_valid == 1
    if labels.all() or not labels.any():
        return None
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, p))


def drop_column_deltas(
    slices: Slices,
    names: Sequence[str],
    categorical: Sequence[int],
    booster_params: Mapping[str, Any],
    columns: Sequence[int],
    settings: LeakageParams,
) -> tuple[float | None, dict[int, float | None]]:
    """The cheap full model's validation AUC and, per column of ``columns``, how much lower the
    AUC is when the same cheap model is trained without it."""
    everything = np.arange(len(names))
    full = _cheap_auc(slices, names, categorical, booster_params, everything, settings)
    deltas: dict[int, float | None] = {}
    for j in columns:
        without = _cheap_auc(
            slices, names, categorical, booster_params, everything[everything != j], settings
        )
        deltas[j] = None if full is None or without is None else full - without
    return full, deltas


# ---------------------------------------------------------------------- verdict
def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None or not np.isfinite(value) else round(float(value), digits)


def reasons_of(
    column: Mapping[str, Any], settings: LeakageParams, columns: int = 1_000_000
) -> list[str]:
    """Why a column is flagged, in words, one entry per threshold it crosses (empty: not).
    ``columns``: how many the model has (the |SHAP| share rule needs ``shap_min_columns``)."""
    reasons = []
    auc = column.get("univariate_roc_auc")
    if auc is not None and auc >= settings.univariate_auc:
        reasons.append(
            f"alone it reaches ROC AUC {auc:.3f} on the train slice "
            f"(≥ train.leakage.univariate_auc {settings.univariate_auc:g})"
        )
    share = column.get("shap_share")
    if share is not None and share > settings.shap_share and columns >= settings.shap_min_columns:
        reasons.append(
            f"it carries {share:.0%} of the model's total |SHAP| "
            f"(> train.leakage.shap_share {settings.shap_share:.0%})"
        )
    delta = column.get("drop_auc_delta")
    if delta is not None and delta >= settings.drop_auc_delta:
        reasons.append(
            f"leaving it out lowers validation ROC AUC by {delta:.3f} "
            f"(≥ train.leakage.drop_auc_delta {settings.drop_auc_delta:g})"
        )
    return reasons


def column_report(
    target: str,
    slices: Slices,
    names: Sequence[str],
    categorical: Sequence[int],
    booster: lgb.Booster,
    iteration: int,
    booster_params: Mapping[str, Any],
    settings: LeakageParams,
    seed: int = 0,
) -> dict[str, Any]:
    """The guard's figures for one target: every column's, sorted by |SHAP| share, the flagged
    ones' names, the thresholds used and the seconds it took."""
    started = time.perf_counter()
    roc, pr = univariate(slices.X_train, slices.y_train, categorical, settings.folds, seed)
    shares = shap_shares(booster, slices.X_valid, iteration, settings.shap_rows)
    order = [int(j) for j in np.argsort(-shares, kind="stable")]
    tested = order[: settings.drop_columns]
    full_auc, deltas = (
        drop_column_deltas(slices, names, categorical, booster_params, tested, settings)
        if tested
        else (None, {})
    )
    columns = []
    for j in order:
        entry: dict[str, Any] = {
            "column": names[j],
            "univariate_roc_auc": _round(roc[j]),
            "univariate_pr_auc": _round(pr[j]),
            "shap_share": _round(float(shares[j])),
            "drop_auc_delta": _round(deltas.get(j)),
        }
        entry["reasons"] = reasons_of(entry, settings, len(names))
        entry["flagged"] = bool(entry["reasons"])
        columns.append(entry)
    flagged = [c["column"] for c in columns if c["flagged"]]
    for entry in columns:
        if entry["flagged"]:
            logger.warning(
                "probable leakage: column %r (%s): %s",
                entry["column"],
                target,
                "; ".join(entry["reasons"]),
            )
    return {
        "thresholds": {
            "univariate_auc": settings.univariate_auc,
            "shap_share": settings.shap_share,
            "shap_min_columns": settings.shap_min_columns,
            "drop_auc_delta": settings.drop_auc_delta,
        },
        "positive_share_train": _round(float(np.mean(slices.y_train == 1))),
        "cheap_valid_roc_auc": _round(full_auc),
        "drop_tested": [names[j] for j in tested],
        "flagged": flagged,
        "columns": columns,
        "seconds": round(time.perf_counter() - started, 3),
    }


def summary(report: Mapping[str, Any], top: int = TOP_COLUMNS) -> dict[str, Any]:
    """What metrics.json and the model card show of one target's guard: the flagged columns
    and the top ``top`` by |SHAP| share (each with its figures and reasons), and the
    thresholds."""
    columns = list(report.get("columns", ()))
    shown = [c for c in columns if c.get("flagged")]
    shown += [c for c in columns[:top] if not c.get("flagged")]
    return {
        "flagged": list(report.get("flagged", ())),
        "columns": shown,
        "thresholds": dict(report.get("thresholds", {})),
        "cheap_valid_roc_auc": report.get("cheap_valid_roc_auc"),
    }


def target_guard(metadata: Mapping[str, Any], target: str) -> dict[str, Any] | None:
    """From a scorer's metadata: :func:`summary` of ``target``'s guard plus the feature names
    that sound post-outcome, or None for a scorer trained before the guard existed."""
    report = metadata.get("reports", {}).get(target, {}).get("leakage")
    if report is None:
        return None
    return {**summary(report), "name_warnings": list(metadata.get("leakage_names", ()))}
