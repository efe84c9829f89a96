"""Training per target: readiness check, LightGBM with early stopping on `valid`,
calibration on `calibration`, the two baselines on the same rows, and the per-column leakage
guard (:mod:`models.reports.leakage`) on the trained model."""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from features.engine.engine import FeatureEngine
from features.engine.snapshots import labelled
from features.errors import UserError
from features.ingest.suspicion import warn_suspicious_names
from features.params import Params, TrainParams
from models.axes import GridBands
from models.baselines import PointsScore
from models.calibration import Calibrator
from models.linear import LinearModel
from models.reports.leakage import Slices, column_report, rank_auc
from models.reports.monitoring import build_reference
from models.scorer import Definition, LeadScorer, TargetModel
from models.segment_training import check_segment_feature, train_segments
from models.selection import Fit, Rows, Selection, select
from models.timing import AmountModel, ConversionTiming

if TYPE_CHECKING:
    from distributed import Client

logger = logging.getLogger(__name__)


Outcomes = tuple[np.ndarray, np.ndarray, np.ndarray]
"""Per snapshot: observed days, converted (else censored), the won deal's amount
(:func:`models.timing.durations`)."""


@dataclass
class TrainedTarget:
    model: TargetModel
    rules: PointsScore
    logistic: LinearModel
    report: dict[str, Any]


def check_readiness(y: np.ndarray, target: str, params: TrainParams) -> None:
    """Refuse to train, with one clear line, on too few labelled positives or negatives."""
    positives = int(np.sum(y == 1))
    negatives = int(np.sum(y == 0))
    if positives < params.min_positives or negatives < params.min_negatives:
        raise UserError(
            f"not ready to train '{target}': the train split has {positives} labelled positives "
            f"and {negatives} negatives; params train.min_positives/min_negatives require "
            f"{params.min_positives} and {params.min_negatives}"
        )


def monotone_constraints(names: Sequence[str], params: TrainParams) -> list[int]:
    def matches(name: str, patterns: Sequence[str]) -> bool:
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)

    return [
        1
        if matches(n, params.monotone.increasing)
        else -1
        if matches(n, params.monotone.decreasing)
        else 0
        for n in names
    ]


def lightgbm_params(params: TrainParams, monotone: list[int]) -> dict[str, Any]:
    return {
        "objective": "binary",
        "learning_rate": params.learning_rate,
        "num_leaves": params.num_leaves,
        "min_data_in_leaf": params.min_data_in_leaf,
        "feature_fraction": params.feature_fraction,
        "bagging_fraction": params.bagging_fraction,
        "bagging_freq": params.bagging_freq,
        "lambda_l2": params.lambda_l2,
        "max_cat_to_onehot": params.max_cat_to_onehot,
        "extra_trees": params.extra_trees,
        "path_smooth": params.path_smooth,
        "seed": params.seed,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": params.num_threads,
        "monotone_constraints": monotone,
        "monotone_constraints_method": "advanced",
        "verbosity": -1,
    }


def sample_train_rows(
    y_train: np.ndarray, max_rows: int | None, seed: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """Positions of the train rows to fit on, in time order, and their weights (None: all rows,
    unweighted). Above ``max_rows``: every positive and a seeded random sample of the negatives
    (``max_rows`` minus the positives, at least half of ``max_rows`` and at least one), each
    kept negative weighted by the inverse of its sampling share, so the weighted rows keep the
    slice's class balance. Validation and calibration slices are never sampled: the
    calibrator, fitted on the untouched later slice, keeps the probabilities calibrated."""
    n = len(y_train)
    if max_rows is None or n <= max_rows:
        return np.arange(n), None
    positive = np.flatnonzero(y_train == 1)
    negative = np.flatnonzero(y_train != 1)
    n_negative = min(len(negative), max(max_rows - len(positive), max_rows // 2, 1))
    chosen = np.random.default_rng(seed).choice(negative, n_negative, replace=False)
    kept = np.sort(np.concatenate([positive, chosen]))
    weights = np.where(y_train[kept] == 1, 1.0, len(negative) / max(n_negative, 1))
    return kept, weights


def _for_share(booster_params: dict[str, Any], share: float) -> dict[str, Any]:
    """``booster_params`` for a sampled ``share`` of the rows: a leaf's minimum stands for as
    many of the slice's rows as without sampling."""
    leaf = max(1, round(booster_params["min_data_in_leaf"] * share))
    return {**booster_params, "min_data_in_leaf": leaf}


def _early_stopped(
    booster_params: dict[str, Any],
    fit: tuple[np.ndarray, np.ndarray, np.ndarray | None],
    judge: tuple[np.ndarray, np.ndarray],
    names: Sequence[str],
    categorical: list[int],
    settings: TrainParams,
) -> lgb.Booster:
    """LightGBM on ``fit`` (rows, labels, weights), stopped early on ``judge``."""
    X_fit, y_fit, weights = fit
    dataset = lgb.Dataset(
        X_fit, y_fit, weight=weights, feature_name=list(names), categorical_feature=categorical
    )
    return lgb.train(
        booster_params,
        dataset,
        num_boost_round=settings.max_rounds,
        valid_sets=[lgb.Dataset(*judge, reference=dataset)],
        callbacks=[lgb.early_stopping(settings.early_stopping_rounds, verbose=False)],
    )


def _trained_on_cluster(
    client: Client,
    train_rows: Rows,
    choose_on: Callable[[Rows, float], Selection],
    params_for: Callable[[dict[str, Any], float], dict[str, Any]],
    fit: Fit,
    valid_rows: tuple[np.ndarray, np.ndarray],
    names: Sequence[str],
    categorical: list[int],
    settings: TrainParams,
) -> tuple[Selection, lgb.Booster, dict[str, Any]]:
    """Model selection on a seeded sample of ``train.cluster.tree_sample_rows`` train rows
    here, then the chosen setting fitted on all of them on the Dask cluster, with as many
    trees as early stopping chose on the sample (lightgbm.dask cannot stop early)."""
    from models.cluster_training import train_on_cluster

    X_train, y_train, weights = train_rows
    sample, sample_weights = sample_train_rows(
        y_train, settings.cluster.tree_sample_rows, settings.seed
    )
    probe_weights = sample_weights
    if weights is not None:
        probe_weights = weights[sample] * (1.0 if sample_weights is None else sample_weights)
    share = 1.0 if sample_weights is None else len(sample) / len(y_train)
    probe_rows = (X_train[sample], y_train[sample], probe_weights)
    selection = choose_on(probe_rows, share)
    probe = selection.booster
    if probe is None:
        probe = fit(params_for(selection.update, share), probe_rows, valid_rows)
    rounds = int(probe.best_iteration or probe.current_iteration())
    booster = train_on_cluster(
        client,
        X_train,
        y_train,
        weights,
        names,
        categorical,
        params_for(selection.update, 1.0),
        rounds,
        settings.cluster.time_out_minutes,
    )
    return selection, booster, {"trees_from_sample_rows": len(sample), "trees": rounds}


def cv_period(
    X: np.ndarray, snapshots: pd.DataFrame, target: str, settings: TrainParams
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The labelled train + valid snapshots' rows, labels and times when there are fewer than
    ``train.selection.cv_below`` of them (selection then cross-validates in time order), else
    None."""
    period = labelled(snapshots, target) & snapshots["split"].isin(["train", "valid"]).to_numpy()
    positions = np.flatnonzero(period)
    if len(positions) >= settings.selection.cv_below:
        return None
    if "as_of" in snapshots:
        # Ranks: as_of may carry a time zone, which numpy's datetimes cannot.
        times = snapshots["as_of"].rank(method="first").to_numpy()[positions]
    else:
        times = positions
    y = snapshots[f"label_{target}"].to_numpy()[positions]
    return X[positions], y, np.asarray(times)


def train_target(
    X: np.ndarray,
    snapshots: pd.DataFrame,
    target: str,
    engine: FeatureEngine,
    params: Params,
    client: Client | None = None,
    guard: bool = True,
) -> TrainedTarget:
    """One target's model, chosen among candidates on validation data
    (:mod:`models.selection`), calibrated, and its baselines; with a Dask ``client``, LightGBM
    trains on its workers (:func:`_trained_on_cluster`). ``guard=False`` skips the per-column
    leakage guard (a segment's model: the pooled model's guard saw the same columns)."""
    label = f"label_{target}"
    y = snapshots[label].to_numpy()
    train, valid, calibration = (
        labelled(snapshots, target, s) for s in ("train", "valid", "calibration")
    )
    settings = params.train
    check_readiness(y[train], target, settings)
    names = engine.feature_names_
    categorical = [names.index(c) for c in engine.categorical_features_]
    monotone = monotone_constraints(names, settings)
    # One copy of the train rows serves LightGBM and both baselines.
    train_positions = np.flatnonzero(train)
    kept, weights = sample_train_rows(y[train_positions], settings.max_rows, settings.seed)
    X_train, y_train = X[train_positions[kept]], y[train_positions[kept]]
    X_valid, y_valid = X[valid], y[valid]
    train_share = 1.0 if weights is None else len(kept) / len(train_positions)

    def params_for(update: dict[str, Any], share: float) -> dict[str, Any]:
        tried = lightgbm_params(settings.model_copy(update=update), monotone)
        return tried if share == 1.0 else _for_share(tried, share)

    def fit(
        booster_params: dict[str, Any], rows: Rows, judge: tuple[np.ndarray, np.ndarray]
    ) -> lgb.Booster:
        return _early_stopped(booster_params, rows, judge, names, categorical, settings)

    def fit_linear(rows: Rows) -> LinearModel:
        # One BLAS thread: on small matrices the thread pool costs more than it saves (9.6 s
        # → 0.35 s on 3,000 leads here).
        with threadpool_limits(limits=1):
            model = LinearModel(
                names, engine.categorical_features_, settings.logistic_c, settings.seed
            )
            return model.fit(*rows[:2], sample_weight=rows[2])

    logistic = fit_linear((X_train, y_train, weights))
    period = cv_period(X, snapshots, target, settings)

    def choose_on(rows: Rows, share: float) -> Selection:
        return select(
            settings,
            rows,
            (X_valid, y_valid),
            lambda update: params_for(update, share),
            fit,
            logistic if settings.selection.logistic else None,
            fit_linear,
            period,
        )

    cluster_report = None
    if client is None:
        selection = choose_on((X_train, y_train, weights), train_share)
        booster = selection.booster
        if booster is None:
            booster = fit(
                params_for(selection.update, train_share),
                (X_train, y_train, weights),
                (X_valid, y_valid),
            )
    else:
        selection, booster, cluster_report = _trained_on_cluster(
            client, (X_train, y_train, weights), choose_on, params_for, fit,
            (X_valid, y_valid), names, categorical, settings,
        )  # fmt: skip
    booster_params = params_for(selection.update, train_share)
    best = booster.best_iteration or booster.current_iteration()
    linear = logistic if selection.blend else None  # the trees alone: no linear part to carry
    model = TargetModel(
        booster, Calibrator(settings.calibration), int(best), linear, selection.blend
    )
    valid_auc = rank_auc(y_valid == 1, model.margin(X_valid))
    model.calibrator.fit(model.uncalibrated(X[calibration]), y[calibration])
    rules = PointsScore(
        names, engine.vocabularies_, params.rules.touch_points, params.rules.attribute_points
    ).fit(X_train, y_train, sample_weight=weights)
    report: dict[str, Any] = {
        "best_iteration": int(best),
        "rows": {
            s: int(m.sum())
            for s, m in (("train", train), ("valid", valid), ("calibration", calibration))
        },
        "positives_train": int(np.sum(y_train == 1)),
        "sampled_train": None
        if weights is None
        else {"rows": len(kept), "negative_weight": round(float(weights.max()), 6)},
        "valid_roc_auc": None if valid_auc is None else round(valid_auc, 6),
        "cluster": cluster_report,
        "selection": selection.report(),
    }
    logger.info("trained %s: %s", target, report)
    if not guard:
        return TrainedTarget(model, rules, logistic, report)
    report["leakage"] = column_report(
        target,
        Slices(X_train, y_train, X_valid, y_valid),
        names,
        categorical,
        booster,
        int(best),
        booster_params,
        settings.leakage,
        seed=settings.seed,
    )
    logger.info(
        "leakage guard for %s: %d columns in %.1f s, flagged: %s",
        target,
        len(names),
        report["leakage"]["seconds"],
        ", ".join(report["leakage"]["flagged"]) or "none",
    )
    return TrainedTarget(model, rules, logistic, report)


def check_leakage(trained: dict[str, TrainedTarget], params: TrainParams) -> None:
    """With ``train.leakage.fatal``: refuse the model, naming the columns and figures, when a
    column is flagged or a validation ROC AUC is above ``train.leakage_auc``."""
    if not params.leakage.fatal:
        return
    problems = []
    for target, result in trained.items():
        for column in result.report["leakage"]["columns"]:
            if column["flagged"]:
                problems.append(f"{column['column']!r} ({target}: {'; '.join(column['reasons'])})")
        auc = result.report.get("valid_roc_auc")
        if auc is not None and auc > params.leakage_auc:
            problems.append(
                f"validation ROC AUC of {target} {auc:.3f} > train.leakage_auc {params.leakage_auc}"
            )
    if problems:
        raise UserError(
            "probable leakage, and train.leakage.fatal is true: "
            + ", ".join(problems)
            + "; declare such columns post_outcome in the mapping"
        )


def train_all(
    snapshots: pd.DataFrame,
    engine: FeatureEngine,
    params: Params,
    post_outcome: Sequence[str] = (),
    source: str = "synthetic",
    X: np.ndarray | None = None,
    engagement: Sequence[str] = (),
    client: Client | None = None,
    outcomes: Outcomes | None = None,
) -> tuple[LeadScorer, dict[str, TrainedTarget]]:
    """Every target in params with labels in ``snapshots``. ``X`` is the feature matrix of
    ``snapshots`` when the caller already has it (then ``snapshots`` needs only ``split`` and
    the labels). ``engagement``: a flat export's columns on the engagement axis (its mapping's
    ``engagement``); ``client``: a Dask client whose workers train LightGBM
    (``engine.kind: dask``); ``outcomes``: the snapshots' conversion times, for the timing and
    amount models (:func:`train_timing`; None: neither)."""
    if params.segments.by is not None:
        check_segment_feature(engine.categorical_features_, params.segments.by)
    if X is None:
        X = engine.matrix_from_frame(snapshots)
    # The lead attribute columns as the data named them (not the engine's derived history
    # features, whose names like `account_won_before` are computed point in time by design).
    name_warnings = warn_suspicious_names(
        [*engine.lead_categoricals_, *engine.numerics_],
        post_outcome,
        params.train.leakage.suspicious_names,
    )
    trained = {
        target: train_target(X, snapshots, target, engine, params, client)
        for target in params.targets
        if f"label_{target}" in snapshots
    }
    check_leakage(trained, params.train)
    definition = Definition(
        target=params.quality_lead.target,
        window_days=params.quality_lead.window_days,
        targets={t: tuple(params.targets[t].stages) for t in trained},
        grades=params.grades.model_dump(),
        handoff_min_grade=params.handoff.min_grade,
        post_outcome=tuple(post_outcome),
        source=source,
        grid=GridBands.from_floors(params.grid.fit, params.grid.engagement),
    )
    scorer = LeadScorer(
        engine,
        {t: r.model for t, r in trained.items()},
        definition,
        {
            "reports": {t: r.report for t, r in trained.items()},
            "leakage_names": [w.as_dict() for w in name_warnings],
        },
        engagement_columns=engagement,
    )
    if outcomes is not None and params.timing.enabled:
        scorer.timing_, scorer.amount_, timing_report = train_timing(
            X, snapshots, outcomes, engine, params
        )
        scorer.metadata["timing"] = timing_report
    scorer.metadata["reference"] = training_reference(scorer, snapshots, X, params)
    scorer.fit_axes(X[axis_reference_rows(snapshots, params)])
    if params.segments.by is not None:

        def fit_target(
            rows: np.ndarray, segment: pd.DataFrame, target: str
        ) -> tuple[TargetModel, dict[str, Any]]:
            result = train_target(rows, segment, target, engine, params, client, guard=False)
            return result.model, result.report

        scorer.segmentation_ = train_segments(
            X, snapshots, scorer, params, fit_target,
            lambda segment: axis_reference_rows(segment, params),
        )  # fmt: skip
    return scorer, trained


def train_timing(
    X: np.ndarray,
    snapshots: pd.DataFrame,
    outcomes: Outcomes,
    engine: FeatureEngine,
    params: Params,
) -> tuple[ConversionTiming | None, AmountModel | None, dict[str, Any]]:
    """The conversion-timing model and the amount regression (:mod:`models.timing`) on the
    train slice's snapshots (censored ones too: each interval they were observed through
    counts), early-stopped on valid; None with the reason when train holds too few
    conversions."""
    days, event, amounts = outcomes
    split = snapshots["split"].to_numpy()
    train, valid = split == "train", split == "valid"
    conversions = int(event[train].sum())
    if conversions < params.train.min_positives:
        reason = (
            f"{conversions} conversions in train, fewer than train.min_positives "
            f"{params.train.min_positives}"
        )
        return None, None, {"trained": False, "reason": reason}
    names = engine.feature_names_
    categorical = [names.index(c) for c in engine.categorical_features_]
    fast = params.train.model_copy(update={"learning_rate": params.timing.learning_rate})
    booster_params = lightgbm_params(fast, [0] * len(names))
    timing = ConversionTiming(
        params.timing.horizons_days,
        booster_params,
        params.train.max_rounds,
        params.train.early_stopping_rounds,
    ).fit(
        X[train], days[train], event[train], X[valid], days[valid], event[valid], names, categorical
    )
    calibration = split == "calibration"
    if params.timing.calibrate:
        timing.calibrate(X[calibration], days[calibration], event[calibration])
    calibrators = getattr(timing, "calibrators_", [None] * len(timing.horizons_days))
    won = train & event
    amount = AmountModel(booster_params, params.timing.min_deals).fit(
        X[won], amounts[won], names, categorical
    )
    report = {
        "trained": True,
        "horizons_days": list(timing.horizons_days),
        "person_periods": timing.person_periods_,
        "trees": timing.best_iteration_,
        "calibrated_horizons": [
            d for d, c in zip(timing.horizons_days, calibrators, strict=True) if c is not None
        ],
        "conversions_train": conversions,
        "amount": {
            "deals": amount.deals_,
            "model": "lightgbm" if amount.booster_ is not None else "mean",
            "mean": None if amount.mean_ is None else round(amount.mean_, 2),
        },
    }
    logger.info("conversion timing: %s", report)
    return timing, amount, report


def axis_reference_rows(snapshots: pd.DataFrame, params: Params) -> np.ndarray:
    """The training rows the fit and engagement percentiles are taken among: the train slice,
    or a seeded sample of ``grid.reference_rows`` of it (all rows when it has none)."""
    rows = np.flatnonzero((snapshots["split"] == "train").to_numpy())
    if not len(rows):
        rows = np.arange(len(snapshots))
    if len(rows) > params.grid.reference_rows:
        generator = np.random.default_rng(params.train.seed)
        rows = np.sort(generator.choice(rows, params.grid.reference_rows, replace=False))
    return rows


def training_reference(
    scorer: LeadScorer, snapshots: pd.DataFrame, X: np.ndarray, params: Params
) -> dict[str, Any]:
    """What ``leadscore monitor`` measures drift against (:mod:`models.reports.monitoring`):
    the train slice's feature and score distributions, and the primary target's ROC AUC on the
    test slice (the yardstick of the matured-score AUC; the test slice was not trained on)."""
    engine, primary = scorer.engine, scorer.primary
    train = (snapshots["split"] == "train").to_numpy()
    test = labelled(snapshots, primary, "test")
    test_auc = None
    if test.any():
        y_test = snapshots[f"label_{primary}"].to_numpy()[test] == 1
        test_auc = rank_auc(y_test, scorer.probabilities(X[test])[primary])
    return build_reference(
        X[train],
        engine.feature_names_,
        engine.categorical_features_,
        scorer.probabilities(X[train])[primary] if train.any() else np.zeros(0),
        params.monitor.bins,
        {name: engine.vocabulary(name) for name in engine.categorical_features_},
        test_roc_auc=None if test_auc is None else round(test_auc, 6),
    )
