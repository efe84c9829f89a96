"""Training models per segment (``segments`` in params), each kept only where it beats the
pooled model on the segment's own rows.

Per segment, largest first (train rows) and at most ``segments.max_segments``: with enough
labelled positives and negatives of the primary target in its train slice, every target gets a
model trained exactly as the pooled one (model selection, early stopping on the segment's valid
rows, calibration on its calibration rows) on the segment's snapshots only. A target's segment
model is used only if its ROC AUC on the segment's calibration rows (which neither model was
selected or early-stopped on) beats the pooled model's on the same rows by more than
``segments.min_gain``; a segment whose primary model does not stays on the pooled model for
every target. The test slice is left to the evaluate stage, which reports both models there.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from features.engine.snapshots import labelled
from features.errors import UserError
from features.params import Params
from models.reports.leakage import rank_auc
from models.scorer import LeadScorer, TargetModel
from models.segments import POOLED, Segmentation, segment_lookup

logger = logging.getLogger(__name__)


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def minimums(params: Params) -> tuple[int, int]:
    """The labelled positives and negatives a segment's train slice needs: the segments'
    minimums, and never fewer than any model's (``train.min_positives/min_negatives``), so a
    small segment falls back to the pooled model instead of failing the stage."""
    return (
        max(params.segments.min_positives, params.train.min_positives),
        max(params.segments.min_negatives, params.train.min_negatives),
    )


def check_segment_feature(categorical: list[str], by: str) -> None:
    """Refuse, in one line, a ``segments.by`` that is not a categorical feature of the model
    (before anything is trained)."""
    if by not in categorical:
        raise UserError(
            f"params segments.by: {by!r} is not a categorical feature of the model "
            f"(one of: {', '.join(sorted(categorical))}); a flat export's column must be "
            "declared in its mapping"
        )


TargetFit = Callable[[np.ndarray, pd.DataFrame, str], tuple[TargetModel, dict[str, Any]]]
"""Trains one target on the given rows as the pooled model was: its model and report."""
ReferenceRows = Callable[[pd.DataFrame], np.ndarray]
"""The rows of the given snapshots the axis percentiles are taken among."""


def train_segments(
    X: np.ndarray,
    snapshots: pd.DataFrame,
    pooled: LeadScorer,
    params: Params,
    fit_target: TargetFit,
    reference_rows: ReferenceRows,
) -> Segmentation:
    """The segments of ``params.segments.by`` with their scorers where they beat ``pooled``
    (trained on all of ``X``), and the report of every segment's figures and choice;
    ``fit_target`` and ``reference_rows`` are :mod:`models.training`'s (passed in: training
    calls this module)."""
    settings = params.segments
    engine = pooled.engine
    by = settings.by
    assert by is not None
    check_segment_feature(engine.categorical_features_, by)
    column = engine.feature_names_.index(by)
    lookup = segment_lookup(engine.vocabulary(by), settings.groups)
    names = Segmentation(by, column, lookup).names(X)
    primary = pooled.primary
    y = snapshots[f"label_{primary}"].to_numpy()
    in_train = labelled(snapshots, primary, "train")
    sizes = {str(n): int((in_train & (names == n)).sum()) for n in set(names) if n != POOLED}
    order = sorted(sizes, key=lambda n: (-sizes[n], n))
    least_positives, least_negatives = minimums(params)
    scorers: dict[str, LeadScorer] = {}
    segments: dict[str, Any] = {}
    for rank, name in enumerate(order):
        rows = names == name
        positives = int((in_train & rows & (y == 1)).sum())
        negatives = int((in_train & rows & (y == 0)).sum())
        entry: dict[str, Any] = {
            "rows": int(rows.sum()),
            "train_positives": positives,
            "train_negatives": negatives,
        }
        if rank >= settings.max_segments:
            entry["model"] = POOLED
            entry["reason"] = f"beyond the {settings.max_segments} largest (segments.max_segments)"
        elif positives < least_positives or negatives < least_negatives:
            entry["model"] = POOLED
            entry["reason"] = (
                f"{positives} positives and {negatives} negatives of '{primary}' in train; "
                f"segments.min_positives/min_negatives (and train's) require {least_positives} "
                f"and {least_negatives}"
            )
        else:
            X_segment = X[rows]
            segment = snapshots.iloc[np.flatnonzero(rows)].reset_index(drop=True)
            child, targets = _segment_scorer(X_segment, segment, name, pooled, params, fit_target)
            if child is not None:
                child.fit_axes(X_segment[reference_rows(segment)])
            entry["targets"] = targets
            entry["model"] = "segment" if child is not None else POOLED
            if child is None:
                entry["reason"] = targets[primary].get("reason") or (
                    f"its '{primary}' model did not beat the pooled model on the segment's "
                    "calibration rows"
                )
            else:
                scorers[name] = child
        logger.info("segment %s=%s: %s", by, name, entry)
        segments[name] = entry
    used = np.asarray([n in scorers for n in lookup], dtype=bool)
    report = {
        "by": by,
        "groups": {k: list(v) for k, v in settings.groups.items()},
        "chosen_on": "calibration",
        "min_gain": settings.min_gain,
        "segments": segments,
    }
    return Segmentation(by, column, np.where(used, lookup, POOLED), scorers, report, lookup)


def _segment_scorer(
    X_segment: np.ndarray,
    segment: pd.DataFrame,
    name: str,
    pooled: LeadScorer,
    params: Params,
    fit_target: TargetFit,
) -> tuple[LeadScorer | None, dict[str, Any]]:
    """The segment's scorer (None when its primary model loses to the pooled one; its axes
    not fitted yet) and, per target, its figures beside the pooled model's on the segment's
    calibration rows. ``X_segment`` and ``segment``: the segment's feature rows and
    snapshots."""
    settings = params.segments
    least_positives, least_negatives = minimums(params)
    chosen = {}
    targets: dict[str, Any] = {}
    for target in pooled.models:
        y = segment[f"label_{target}"].to_numpy()
        train = labelled(segment, target, "train")
        positives, negatives = int((train & (y == 1)).sum()), int((train & (y == 0)).sum())
        if positives < least_positives or negatives < least_negatives:
            targets[target] = {
                "model": POOLED,
                "reason": f"{positives} positives and {negatives} negatives in train",
            }
            continue
        one_class = [
            split
            for split in ("valid", "calibration")
            if len(set(y[labelled(segment, target, split)].tolist())) < 2
        ]
        if one_class:  # nothing to stop early on, or to calibrate with
            targets[target] = {
                "model": POOLED,
                "reason": f"its {' and '.join(one_class)} rows hold one class only",
            }
            continue
        model, trained = fit_target(X_segment, segment, target)
        judge = labelled(segment, target, "calibration")
        y_judge = y[judge] == 1
        own = rank_auc(y_judge, model.margin(X_segment[judge]))
        theirs = rank_auc(y_judge, pooled.models[target].margin(X_segment[judge]))
        wins = own is not None and theirs is not None and own > theirs + settings.min_gain
        targets[target] = {
            "model": "segment" if wins else POOLED,
            "calibration_rows": int(judge.sum()),
            "calibration_positives": int(y_judge.sum()),
            "calibration_roc_auc": {"segment": _rounded(own), "pooled": _rounded(theirs)},
            "best_iteration": trained["best_iteration"],
            "selection": trained["selection"]["chosen"],
        }
        if wins:
            chosen[target] = model
    if pooled.primary not in chosen:
        return None, targets
    child = LeadScorer(
        pooled.engine,
        {t: chosen.get(t, model) for t, model in pooled.models.items()},
        pooled.definition,
        {"segment": name, "reports": targets},
        engagement_columns=pooled.engagement_columns,
    )
    return child, targets
