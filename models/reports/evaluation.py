"""Evaluation on the held-out test slice: the model beside both baselines, per target.

Pure functions of labels and probabilities (numpy in, numbers or small frames out), plus
:func:`evaluate`, which applies them to the `test` snapshots of the features stage and returns
the metrics, the per-group metrics, the plot data and the top features of the model card.

Conventions:

- ``pr_auc`` is average precision (the step-wise area under the precision-recall curve, as
  scikit-learn's ``average_precision_score``), not a trapezoidal area.
- ``ece`` (expected calibration error) uses equal-width probability bins on [0, 1]:
  the mean over bins of |mean predicted − observed rate|, weighted by the bin's share of rows.
- ``capture_top_<k>`` is the share of all positives found in the top k % of rows ranked by the
  probability; rows tied at the cut count fractionally (the expectation over random tie-breaks),
  so a coarse score such as the points baseline is not flattered or penalised by row order.
  ``lift_top_decile`` is the positive rate in the top 10 % over the overall rate
  (= ``capture_top_10`` / 0.1).
- A metric that is undefined on the rows given (AUC with one class, lift without positives) is
  ``None`` (``null`` in JSON), never NaN.
- ``leakage_suspected`` is true when the per-column guard of training
  (:mod:`models.reports.leakage`) flagged a column for any target, or a model's test ROC AUC is
  above ``train.leakage_auc``. Each target's ``leakage`` entry names the flagged columns and
  shows them and the top columns by |SHAP| with their figures and reasons (lists, so the
  registry's metric logging and ``dvc metrics show`` skip them).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    log_loss,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

from features.engine.snapshots import labelled
from features.params import Params
from models.reports.leakage import target_guard
from models.scorer import LeadScorer, score_of

logger = logging.getLogger(__name__)

METRICS: tuple[str, ...] = (
    "roc_auc",
    "pr_auc",
    "brier",
    "log_loss",
    "ece",
    "lift_top_decile",
    "capture_top_10",
    "capture_top_20",
    "capture_top_30",
)
HIGHER_IS_BETTER: dict[str, bool] = {
    "roc_auc": True,
    "pr_auc": True,
    "brier": False,
    "log_loss": False,
}
"""The scoring metrics a promotion can be judged on, and which way is better."""
MODELS: tuple[str, ...] = ("model", "rules", "logistic")
"""The model and the two baselines, in the order every report shows them."""
CAPTURE_SHARES: tuple[int, ...] = (10, 20, 30)
CURVE_POINTS = 101
"""ROC, precision-recall and gains curves are written on this fixed grid of [0, 1]."""
NO_CHANNEL = "(no campaign)"

Metric = float | None


class ProbabilityModel(Protocol):
    def predict_proba(self, X: np.ndarray) -> np.ndarray: ...


# ------------------------------------------------------------------------ metrics
def _arrays(y: Any, p: Any) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(y, dtype=np.float64)
    probabilities = np.asarray(p, dtype=np.float64)
    if labels.shape != probabilities.shape or labels.ndim != 1:
        raise ValueError(f"labels {labels.shape} and probabilities {probabilities.shape} differ")
    return labels, probabilities


def _both_classes(y: np.ndarray) -> bool:
    return bool(len(y)) and bool((y == 1).any()) and bool((y == 0).any())


def _bin_index(p: np.ndarray, bins: int) -> np.ndarray:
    return np.minimum((np.clip(p, 0.0, 1.0) * bins).astype(np.int64), bins - 1)


def calibration_table(y: Any, p: Any, bins: int = 10) -> pd.DataFrame:
    """Per equal-width bin of [0, 1]: bounds, rows, mean predicted and observed rate
    (bins without rows are left out)."""
    labels, probabilities = _arrays(y, p)
    index = _bin_index(probabilities, bins)
    count = np.bincount(index, minlength=bins)
    predicted = np.bincount(index, weights=probabilities, minlength=bins)
    observed = np.bincount(index, weights=labels, minlength=bins)
    filled = count > 0
    edges = np.arange(bins + 1) / bins
    return pd.DataFrame(
        {
            "bin": np.arange(bins)[filled],
            "lower": edges[:-1][filled],
            "upper": edges[1:][filled],
            "count": count[filled],
            "mean_predicted": predicted[filled] / count[filled],
            "observed": observed[filled] / count[filled],
        }
    )


def expected_calibration_error(y: Any, p: Any, bins: int = 10) -> Metric:
    """Weighted mean |mean predicted − observed| over equal-width probability bins."""
    labels, _ = _arrays(y, p)
    if not len(labels):
        return None
    table = calibration_table(y, p, bins)
    gaps = np.abs(table["mean_predicted"] - table["observed"]).to_numpy()
    return float(np.sum(gaps * table["count"].to_numpy()) / len(labels))


def _positives_in_top(y: np.ndarray, p: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """Expected positives among the top ``share`` of rows by p (ties split fractionally)."""
    order = np.argsort(-p, kind="stable")
    ranked_p, ranked_y = p[order], y[order]
    starts = np.flatnonzero(np.r_[True, ranked_p[1:] != ranked_p[:-1]])
    sizes = np.diff(np.r_[starts, len(ranked_p)])
    positives = np.add.reduceat(ranked_y, starts) if len(starts) else np.zeros(0)
    rows_before = np.r_[0, np.cumsum(sizes)]
    positives_before = np.r_[0.0, np.cumsum(positives)]
    wanted = np.asarray(shares, dtype=np.float64) * len(y)
    group = np.clip(np.searchsorted(rows_before, wanted, side="right") - 1, 0, len(sizes) - 1)
    inside = np.clip(wanted - rows_before[group], 0.0, sizes[group])
    return np.asarray(positives_before[group] + positives[group] * inside / sizes[group])


def capture(y: Any, p: Any, share: float) -> Metric:
    """Share of all positives found in the top ``share`` (0–1) of rows ranked by p."""
    labels, probabilities = _arrays(y, p)
    total = labels.sum()
    if not len(labels) or total == 0:
        return None
    return float(_positives_in_top(labels, probabilities, np.array([share]))[0] / total)


def lift(y: Any, p: Any, share: float = 0.1) -> Metric:
    """Positive rate in the top ``share`` of rows over the overall positive rate."""
    captured = capture(y, p, share)
    return None if captured is None else captured / share


def score_metric(name: str, y: Any, p: Any) -> Metric:
    """One of the four scoring metrics (``roc_auc``, ``pr_auc``, ``brier``, ``log_loss``;
    :data:`HIGHER_IS_BETTER`): None without rows, and for the ranking metrics without both
    classes. The evaluation and the promotion gate both use this."""
    labels, probabilities = _arrays(y, p)
    if name not in HIGHER_IS_BETTER:
        raise ValueError(f"unknown scoring metric {name!r}")
    if not len(labels) or (name in ("roc_auc", "pr_auc") and not _both_classes(labels)):
        return None
    if name == "roc_auc":
        return float(roc_auc_score(labels, probabilities))
    if name == "pr_auc":
        return float(average_precision_score(labels, probabilities))
    if name == "brier":
        return float(brier_score_loss(labels, probabilities, pos_label=1))
    return float(log_loss(labels, np.clip(probabilities, 1e-15, 1 - 1e-15), labels=[0, 1]))


def binary_metrics(y: Any, p: Any, bins: int = 10) -> dict[str, Metric]:
    """Every metric of :data:`METRICS` for one set of labels and probabilities."""
    labels, probabilities = _arrays(y, p)
    out: dict[str, Metric] = {
        name: score_metric(name, labels, probabilities) for name in HIGHER_IS_BETTER
    }
    out.update(
        {
            "ece": expected_calibration_error(labels, probabilities, bins),
            "lift_top_decile": lift(labels, probabilities, 0.1),
        }
    )
    for share in CAPTURE_SHARES:
        out[f"capture_top_{share}"] = capture(labels, probabilities, share / 100)
    return out


# ------------------------------------------------------------------------- curves
def _grid() -> np.ndarray:
    return np.linspace(0.0, 1.0, CURVE_POINTS)


def roc_on_grid(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """True-positive rate at each false-positive rate of the grid (linear between points)."""
    fpr, tpr, _ = roc_curve(y, p)
    # A strictly increasing x keeps np.interp exact on vertical segments.
    return np.interp(_grid(), fpr + np.arange(len(fpr)) * 1e-12, tpr)


def precision_on_grid(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Interpolated precision (best precision at recall ≥ r) at each recall of the grid."""
    precision, recall, _ = precision_recall_curve(y, p)
    order = np.argsort(recall, kind="stable")
    recall, precision = recall[order], precision[order]
    best_after = np.maximum.accumulate(precision[::-1])[::-1]
    index = np.minimum(np.searchsorted(recall, _grid(), side="left"), len(recall) - 1)
    return np.asarray(best_after[index])


def gains_on_grid(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Share of positives captured when working the top x of rows, for x on the grid."""
    total = y.sum()
    if total == 0:
        return np.zeros(CURVE_POINTS)
    return _positives_in_top(y, p, _grid()) / total


def _round(value: Metric, digits: int = 6) -> Metric:
    if value is None or not math.isfinite(value):
        return None
    return round(float(value), digits)


def _rounded(metrics: Mapping[str, Metric]) -> dict[str, Metric]:
    return {name: _round(value) for name, value in metrics.items()}


# -------------------------------------------------------------------- evaluation
@dataclass
class TargetResult:
    metrics: dict[str, Any]
    groups: dict[str, dict[str, dict[str, Any]]]


@dataclass
class Evaluation:
    """What the evaluate stage writes: metrics, per-group metrics, plots and top features."""

    metrics: dict[str, Any]
    by_group: dict[str, Any]
    plots: dict[str, pd.DataFrame]
    top_fields: list[dict[str, Any]]
    test_rows: int


def month_labels(as_of: pd.Series) -> np.ndarray:
    """'YYYY-MM' of each timestamp (UTC)."""
    stamps = pd.to_datetime(as_of, utc=True)
    return np.asarray(stamps.dt.strftime("%Y-%m").to_numpy(), dtype=object)


def channel_labels(snapshots: pd.DataFrame) -> np.ndarray | None:
    """The snapshot's channel feature as text (no campaign → '(no campaign)'), if present."""
    if "channel" not in snapshots:
        return None
    values = snapshots["channel"].astype("object")
    return np.asarray(values.where(values.notna(), NO_CHANNEL).astype(str).to_numpy(), dtype=object)


def group_metrics(
    y: np.ndarray,
    predictions: Mapping[str, np.ndarray],
    groups: np.ndarray,
    min_size: int,
    bins: int,
) -> dict[str, dict[str, Any]]:
    """Per group with at least ``min_size`` rows: rows, positives and every model's metrics."""
    out: dict[str, dict[str, Any]] = {}
    for name in sorted(pd.unique(groups)):
        rows = groups == name
        if rows.sum() < min_size:
            continue
        entry: dict[str, Any] = {"n": int(rows.sum()), "positives": int(y[rows].sum())}
        for model, p in predictions.items():
            entry[model] = _rounded(binary_metrics(y[rows], p[rows], bins))
        out[str(name)] = entry
    return out


def predictions_for(
    X: np.ndarray,
    baselines: Mapping[str, Mapping[str, ProbabilityModel]],
    target: str,
    probabilities: Mapping[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """The model's calibrated probability and both baselines' for one target."""
    out = {"model": np.asarray(probabilities[target], dtype=np.float64)}
    for name in ("rules", "logistic"):
        out[name] = np.asarray(baselines[target][name].predict_proba(X)[:, 1], dtype=np.float64)
    return out


def truth_probabilities(truth: pd.DataFrame, lead_ids: pd.Series, target: str) -> np.ndarray | None:
    """The simulator's true probability ``p_<target>`` of each snapshot's lead, if known."""
    column = f"p_{target}"
    if column not in truth:
        return None
    values = truth.set_index("lead_id")[column].reindex(lead_ids.to_numpy()).to_numpy()
    return None if np.isnan(values).any() else np.asarray(values, dtype=np.float64)


def fields_by_shap(
    scorer: LeadScorer, X: np.ndarray, rows: int, count: int = 12
) -> list[dict[str, Any]]:
    """Business fields ranked by mean |SHAP| of the primary target's booster on ``rows``
    evenly spaced rows of X (a field's features are summed per lead first, as the reasons
    shown to sales are)."""
    if not len(X):
        return []
    sample = X[np.unique(np.linspace(0, len(X) - 1, min(rows, len(X))).astype(np.int64))]
    contributions = scorer.contributions(sample)
    spec = scorer.engine.features_
    fields = pd.Index([f.business_field for f in spec])
    per_field = pd.DataFrame(contributions, columns=fields).T.groupby(level=0).sum().T
    importance = per_field.abs().mean().sort_values(ascending=False)
    descriptions = {f.name: f.description for f in spec}
    feature_importance = pd.Series(np.abs(contributions).mean(axis=0), index=[f.name for f in spec])
    total = float(importance.sum()) or 1.0
    out = []
    for name, value in importance.head(count).items():
        members = [f.name for f in spec if f.business_field == name]
        top = str(feature_importance[members].idxmax())
        out.append(
            {
                "field": str(name),
                "mean_abs_shap": round(float(value), 6),
                "share": round(float(value) / total, 4),
                "top_feature": top,
                "top_feature_description": descriptions[top],
            }
        )
    return out


def _plots(
    y: np.ndarray, predictions: Mapping[str, np.ndarray], scorer: LeadScorer, bins: int
) -> dict[str, pd.DataFrame]:
    grid = _grid()
    plots = {
        "roc": pd.DataFrame(
            {"fpr": grid, **{m: roc_on_grid(y, p) for m, p in predictions.items()}}
        ),
        "precision_recall": pd.DataFrame(
            {"recall": grid, **{m: precision_on_grid(y, p) for m, p in predictions.items()}}
        ),
        "gains": pd.DataFrame(
            {
                "share_contacted": grid,
                **{m: gains_on_grid(y, p) for m, p in predictions.items()},
                "random": grid,
            }
        ),
    }
    for model, p in predictions.items():
        plots[f"calibration_{model}"] = calibration_table(y, p, bins)
    model_p = predictions["model"]
    grades = scorer.grade(model_p)
    by_grade = pd.DataFrame({"grade": grades, "p": model_p, "y": y}).groupby("grade")
    plots["grades"] = pd.DataFrame(
        {
            "grade": list(by_grade.groups),
            "snapshots": by_grade.size().to_numpy(),
            "share": by_grade.size().to_numpy() / max(len(y), 1),
            "mean_predicted": by_grade["p"].mean().to_numpy(),
            "observed": by_grade["y"].mean().to_numpy(),
        }
    )
    score = score_of(model_p)
    bucket = np.minimum(score // 5 * 5, 95)
    histogram = (
        pd.DataFrame({"score": bucket, "y": y})
        .groupby("score")["y"]
        .agg(snapshots="size", positives="sum")
        .reindex(np.arange(0, 100, 5), fill_value=0)
        .reset_index()
    )
    histogram["grade"] = scorer.grade(histogram["score"].to_numpy() / 100)
    plots["score_histogram"] = histogram
    return {name: frame.round(6) for name, frame in plots.items()}


def evaluate(
    snapshots: pd.DataFrame,
    X: np.ndarray,
    scorer: LeadScorer,
    baselines: Mapping[str, Mapping[str, ProbabilityModel]],
    params: Params,
    truth: pd.DataFrame | None = None,
    shap_rows: int = 2000,
    by_month: bool = True,
) -> Evaluation:
    """Metrics of the model and both baselines on the labelled `test` snapshots.

    ``truth`` (simulator data only): per lead, the true ``p_<target>``. ``by_month=False`` for
    data without real timestamps (a flat export in random order)."""
    settings = params.evaluate
    test = (snapshots["split"] == "test").to_numpy()
    X_test, test_snapshots = X[test], snapshots[test].reset_index(drop=True)
    probabilities = scorer.probabilities(X_test)
    channels = channel_labels(test_snapshots)
    months = month_labels(test_snapshots["as_of"])
    primary = scorer.definition.target
    metrics: dict[str, Any] = {}
    by_group: dict[str, Any] = {}
    plots: dict[str, pd.DataFrame] = {}
    leakage = False
    for target in scorer.models:
        rows = labelled(test_snapshots, target)
        y = test_snapshots.loc[rows, f"label_{target}"].to_numpy(dtype=np.float64)
        predictions = predictions_for(
            X_test[rows],
            baselines,
            target,
            {t: p[rows] for t, p in probabilities.items()},
        )
        entry: dict[str, Any] = {
            name: _rounded(binary_metrics(y, p, settings.ece_bins))
            for name, p in predictions.items()
        }
        if truth is not None:
            true_p = truth_probabilities(truth, test_snapshots.loc[rows, "lead_id"], target)
            if true_p is not None and _both_classes(y):
                truth_auc = float(roc_auc_score(y, true_p))
                entry["truth"] = {"roc_auc": _round(truth_auc)}
                model_auc = entry["model"]["roc_auc"]
                entry["model_truth_auc_ratio"] = (
                    _round(model_auc / truth_auc, 4) if model_auc is not None else None
                )
        entry["n_test"] = int(rows.sum())
        entry["positives_test"] = int(y.sum())
        groups: dict[str, Any] = {}
        if channels is not None:
            groups["by_channel"] = group_metrics(
                y, predictions, channels[rows], settings.min_group_size, settings.ece_bins
            )
        if by_month:
            groups["by_month"] = group_metrics(
                y, predictions, months[rows], settings.min_group_size, settings.ece_bins
            )
        by_group[target] = groups
        metrics[target] = entry
        auc = entry["model"]["roc_auc"]
        too_good = auc is not None and auc > params.train.leakage_auc
        if too_good:
            logger.warning(
                "probable leakage: test ROC AUC of %s is %.4f, above train.leakage_auc %.2f",
                target,
                auc,
                params.train.leakage_auc,
            )
        selection = scorer.metadata.get("reports", {}).get(target, {}).get("selection")
        if selection is not None:  # scorers trained before model selection have none
            entry["selection"] = selection
        guard = target_guard(scorer.metadata, target)
        if guard is not None:
            guard["auc_above_threshold"] = too_good
            entry["leakage"] = guard
            for column in guard["columns"]:
                if column["flagged"]:
                    logger.warning(
                        "probable leakage: column %r (%s): %s",
                        column["column"],
                        target,
                        "; ".join(column["reasons"]),
                    )
        leakage = leakage or too_good or bool(guard and guard["flagged"])
        if target == primary and _both_classes(y):
            plots = _plots(y, predictions, scorer, settings.ece_bins)
    metrics["leakage_suspected"] = leakage
    metrics["primary_target"] = primary
    if scorer.segmentation is not None:
        metrics["segments"] = segment_metrics(test_snapshots, X_test, scorer, settings.ece_bins)
    primary_labelled = labelled(test_snapshots, primary)
    fields = fields_by_shap(scorer, X_test[primary_labelled], shap_rows)
    return Evaluation(
        metrics=metrics,
        by_group=by_group,
        plots=plots,
        top_fields=fields,
        test_rows=int(test.sum()),
    )


def segment_metrics(
    test_snapshots: pd.DataFrame, X_test: np.ndarray, scorer: LeadScorer, bins: int
) -> dict[str, Any]:
    """Per segment (:mod:`models.segments`), training's figures and choice, and on the
    segment's own test rows, per target: the metrics of the model its leads are scored with
    (``model``: the segment's own, or the pooled model where it was refused) beside the pooled
    model's (``pooled``) on the same rows."""
    segmentation = scorer.segmentation
    assert segmentation is not None
    routed = scorer.probabilities(X_test)
    pooled = scorer.probabilities(X_test, routed=False)
    membership = segmentation.membership(X_test)
    report = segmentation.report
    segments: dict[str, Any] = {}
    for name, trained in report.get("segments", {}).items():
        entry = {k: v for k, v in trained.items() if k != "targets"}
        tests: dict[str, Any] = {}
        for target in scorer.models:
            rows = labelled(test_snapshots, target) & (membership == name)
            y = test_snapshots.loc[rows, f"label_{target}"].to_numpy(dtype=np.float64)
            test: dict[str, Any] = {"rows": int(rows.sum()), "positives": int(y.sum())}
            test["model"] = _rounded(binary_metrics(y, routed[target][rows], bins))
            test["pooled"] = _rounded(binary_metrics(y, pooled[target][rows], bins))
            tests[target] = {**trained.get("targets", {}).get(target, {}), "test": test}
        entry["targets"] = tests
        segments[name] = entry
    return {
        "by": report.get("by", segmentation.feature),
        "groups": report.get("groups", {}),
        "chosen_on": report.get("chosen_on"),
        "min_gain": report.get("min_gain"),
        "used": sorted(segmentation.scorers),
        "segments": segments,
    }


def metric_table(metrics: Mapping[str, Any], target: str) -> pd.DataFrame:
    """Rows = metrics, columns = model, rules, logistic (and truth's ROC AUC when known)."""
    entry = metrics[target]
    table = pd.DataFrame({m: entry[m] for m in MODELS if m in entry}, index=list(METRICS))
    if "truth" in entry:
        table["truth"] = [entry["truth"]["roc_auc"], *([None] * (len(METRICS) - 1))]
    return table


SUMMARY_MAX_NUMBERS = 20
"""`artifacts/summary.json` holds at most this many numbers: what `dvc metrics show` and `dvc exp
show` print per experiment has to stay readable (the detailed metrics.json has ~60)."""

_PRIMARY_HEADLINE: tuple[tuple[str, str], ...] = (
    ("model", "roc_auc"),
    ("model", "pr_auc"),
    ("model", "brier"),
    ("model", "ece"),
    ("model", "lift_top_decile"),
    ("rules", "roc_auc"),
    ("logistic", "roc_auc"),
    ("truth", "roc_auc"),
)


def summary_metrics(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The headline numbers of :func:`evaluate`'s metrics (nothing that changes from run to run
    on the same inputs): the primary target's model ROC AUC, PR AUC, Brier, ECE and top-decile
    lift, both baselines' and (simulated data) the truth's ROC AUC, its test counts; the other
    targets' model ROC AUC and PR AUC, as many as fit in :data:`SUMMARY_MAX_NUMBERS`; and
    ``leakage_suspected``. Keys are flat within a target (``rules_roc_auc``): one column each."""
    primary = str(metrics["primary_target"])
    entry = metrics[primary]
    head: dict[str, Any] = {}
    for model, name in _PRIMARY_HEADLINE:
        if model in entry and name in entry[model]:
            head[name if model == "model" else f"{model}_{name}"] = entry[model][name]
    head["n_test"] = entry.get("n_test")
    head["positives_test"] = entry.get("positives_test")
    out: dict[str, Any] = {"primary_target": primary, primary: head}
    budget = SUMMARY_MAX_NUMBERS - len(head) - 1  # leakage_suspected
    for target, other in metrics.items():
        if target == primary or not isinstance(other, Mapping) or "model" not in other:
            continue
        if budget < 2:
            break
        out[target] = {name: other["model"].get(name) for name in ("roc_auc", "pr_auc")}
        budget -= 2
    out["leakage_suspected"] = bool(metrics.get("leakage_suspected"))
    return out
