"""Choosing each target's model among candidates, on validation data only.

The candidates (``train.selection``): LightGBM under the first ``lightgbm_settings`` of
:data:`GRID` (the params.yaml setting first), the logistic regression
(:class:`models.linear.LinearModel`), and blends of the best LightGBM setting's log-odds with
the logistic's, ``(1 - w) LightGBM + w logistic`` for each weight ``w`` in ``blends``. Each is
judged by ROC AUC (the promotion gate's default metric), either

- on the ``valid`` slice, every candidate fitted on ``train`` (LightGBM early-stopped on
  ``valid``, as the final model is); or, with fewer than ``cv_below`` labelled train + valid
  snapshots, where one valid slice is too small to tell candidates apart,
- by time-ordered cross-validation over the train + valid period: its snapshots in ``as_of``
  order cut into ``cv_folds + 1`` blocks, fold k fitted on blocks 1..k and judged on block
  k + 1 (never on the past), the candidate's figure the mean over folds.

LightGBM's trees are early-stopped on the rows that judge it, in both modes; that favours it a
little against the logistic regression, which has nothing to tune. Ties go to the earlier
candidate (LightGBM first), and params.yaml's setting stays unless another candidate beats it by
``min_gain`` (a validation gain within noise lost test PR AUC on the default data: 0.434 →
0.422 for +0.0026 validation ROC AUC) or the logistic regression beats it. The logistic
regression is a candidate, so the chosen model never loses to it on the validation figure. The
test slice is never read here."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np

from features.params import TrainParams
from models.linear import LinearModel
from models.reports.leakage import rank_auc
from models.treeshap import MAX_NODES

Rows = tuple[np.ndarray, np.ndarray, np.ndarray | None]
"""Feature rows, labels (1 positive) and sample weights (None: unweighted)."""

Fit = Callable[[dict[str, Any], Rows, tuple[np.ndarray, np.ndarray]], lgb.Booster]
"""Fits LightGBM under booster params on rows, early-stopped on (X, y)."""


def grid(settings: TrainParams) -> list[dict[str, Any]]:
    """The LightGBM settings tried, as updates of ``train``'s params: params.yaml's, then
    faster learning with more features per tree (the cheapest), then larger trees (up to 9
    leaves: the largest serving tabulates), then simpler ones (the dearest: many more trees),
    then less regularisation, then no random thresholds."""
    leaf = settings.min_data_in_leaf
    updates: list[dict[str, Any]] = [
        {},
        {
            "learning_rate": min(1.0, settings.learning_rate * 2),
            "feature_fraction": min(1.0, settings.feature_fraction + 0.3),
        },
        # Larger, within what serving tabulates for exact SHAP and axes (models.treeshap).
        {
            "num_leaves": max(settings.num_leaves, MAX_NODES + 1),
            "min_data_in_leaf": max(1, leaf // 2),
        },
        {"num_leaves": max(2, settings.num_leaves // 2), "min_data_in_leaf": leaf * 2},
        {"lambda_l2": settings.lambda_l2 / 10, "path_smooth": settings.path_smooth / 5},
        {"extra_trees": not settings.extra_trees},
    ]
    return updates[: settings.selection.lightgbm_settings]


def setting_name(update: dict[str, Any]) -> str:
    if not update:
        return "lightgbm"
    return "lightgbm " + " ".join(f"{k}={v}" for k, v in update.items())


@dataclass
class Selection:
    """What selection chose, and every candidate's figures."""

    update: dict[str, Any]
    """The chosen (or, for the logistic regression, the best) LightGBM setting's update."""
    blend: float
    """The logistic regression's weight in the chosen model's log-odds (0: LightGBM alone)."""
    chosen: str
    method: str
    """``valid`` or ``time_cv``."""
    folds: int
    candidates: list[dict[str, Any]]
    booster: lgb.Booster | None = field(default=None, repr=False)
    """The chosen setting fitted on train and early-stopped on valid (holdout mode only)."""

    def report(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "folds": self.folds,
            "chosen": self.chosen,
            "candidates": self.candidates,
        }


def _margin(booster: lgb.Booster, X: np.ndarray) -> np.ndarray:
    best = booster.best_iteration or booster.current_iteration()
    return np.asarray(booster.predict(X, num_iteration=best, raw_score=True), dtype=np.float64)


def _trees(booster: lgb.Booster) -> int:
    return int(booster.best_iteration or booster.current_iteration())


@dataclass
class _Fold:
    """One judgement: every LightGBM setting's and the logistic's log-odds on the judging
    rows, with their labels."""

    y: np.ndarray
    tree_margins: list[np.ndarray]
    trees: list[int]
    linear_margin: np.ndarray | None
    boosters: list[lgb.Booster]


def _judge(
    updates: Sequence[dict[str, Any]],
    fit_rows: Rows,
    judge_rows: tuple[np.ndarray, np.ndarray],
    booster_params: Callable[[dict[str, Any]], dict[str, Any]],
    fit: Fit,
    linear: LinearModel | None,
) -> _Fold:
    boosters = [fit(booster_params(u), fit_rows, judge_rows) for u in updates]
    X_judge, y_judge = judge_rows
    return _Fold(
        y_judge == 1,
        [_margin(b, X_judge) for b in boosters],
        [_trees(b) for b in boosters],
        None if linear is None else linear.margin(X_judge),
        boosters,
    )


def _mean_auc(folds: Sequence[_Fold], margins: Sequence[np.ndarray]) -> float | None:
    """The mean ROC AUC over folds of a candidate's log-odds per fold (folds with one class
    left out)."""
    values = [rank_auc(f.y, m) for f, m in zip(folds, margins, strict=True)]
    known = [v for v in values if v is not None]
    return float(np.mean(known)) if known else None


def choose(
    settings: TrainParams,
    folds: Sequence[_Fold],
    updates: Sequence[dict[str, Any]],
    method: str,
) -> Selection:
    """The best candidate by mean ROC AUC over ``folds`` (ties: the earlier; params.yaml's
    LightGBM unless beaten by ``min_gain`` or by the logistic regression)."""
    figures: list[tuple[str, float | None, dict[str, Any]]] = []
    for i, update in enumerate(updates):
        trees = float(np.mean([f.trees[i] for f in folds]))
        auc = _mean_auc(folds, [f.tree_margins[i] for f in folds])
        figures.append((setting_name(update), auc, {"blend": 0.0, "trees": round(trees, 1)}))
    best_tree = max(range(len(updates)), key=lambda i: (figures[i][1] or 0.0, -i))
    linear = [f.linear_margin for f in folds if f.linear_margin is not None]
    if len(linear) == len(folds):
        figures.append(("logistic", _mean_auc(folds, linear), {"blend": 1.0}))
        for weight in settings.selection.blends:
            blended = [
                (1 - weight) * f.tree_margins[best_tree] + weight * m
                for f, m in zip(folds, linear, strict=True)
            ]
            name = f"blend {setting_name(updates[best_tree])} + {weight:g} logistic"
            figures.append((name, _mean_auc(folds, blended), {"blend": float(weight)}))
    winner = max(range(len(figures)), key=lambda i: (figures[i][1] or 0.0, -i))
    incumbent = figures[0][1]
    logistic = next((auc for name, auc, _ in figures if name == "logistic"), None)
    if (
        incumbent is not None
        and (figures[winner][1] or 0.0) - incumbent < settings.selection.min_gain
        and (logistic is None or incumbent >= logistic)
    ):
        winner = 0  # a gain within noise does not replace params.yaml's setting
    blend = figures[winner][2]["blend"]
    tree_index = winner if winner < len(updates) else best_tree
    candidates = [
        {
            "name": name,
            "valid_roc_auc": None if auc is None else round(auc, 6),
            **extra,
            "chosen": i == winner,
        }
        for i, (name, auc, extra) in enumerate(figures)
    ]
    booster = folds[0].boosters[tree_index] if method == "valid" else None
    return Selection(
        dict(updates[tree_index]),
        blend,
        figures[winner][0],
        method,
        len(folds),
        candidates,
        booster,
    )


def time_folds(order: np.ndarray, n_folds: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(fit, judge) positions of expanding-window folds over rows in time order ``order``."""
    blocks = np.array_split(order, n_folds + 1)
    return [
        (np.concatenate(blocks[: k + 1]), blocks[k + 1])
        for k in range(n_folds)
        if len(blocks[k + 1])
    ]


def select(
    settings: TrainParams,
    train_rows: Rows,
    valid_rows: tuple[np.ndarray, np.ndarray],
    booster_params: Callable[[dict[str, Any]], dict[str, Any]],
    fit: Fit,
    linear: LinearModel | None,
    fit_linear: Callable[[Rows], LinearModel],
    period: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> Selection:
    """Choose among the candidates. ``linear``: the logistic regression fitted on
    ``train_rows`` (None: not a candidate), ``fit_linear`` fits it on a fold's rows;
    ``period``: the train + valid snapshots' rows, labels and times for time-ordered
    cross-validation (None: judge on the valid slice)."""
    updates = grid(settings)
    folds = []
    if period is not None:
        X, y, times = period
        order = np.argsort(times, kind="stable")
        for fit_positions, judge_positions in time_folds(order, settings.selection.cv_folds):
            fit_positions, judge_positions = np.sort(fit_positions), np.sort(judge_positions)
            y_fit = y[fit_positions]
            if not ((y_fit == 1).any() and (y_fit != 1).any()):
                continue  # a fold whose past holds one class cannot be fitted
            rows: Rows = (X[fit_positions], y_fit, None)
            fitted = None if linear is None else fit_linear(rows)
            judge = (X[judge_positions], y[judge_positions])
            folds.append(_judge(updates, rows, judge, booster_params, fit, fitted))
    if folds:
        return choose(settings, folds, updates, "time_cv")
    fold = _judge(updates, train_rows, valid_rows, booster_params, fit, linear)
    return choose(settings, [fold], updates, "valid")
