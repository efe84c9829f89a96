"""Model selection: candidates judged on validation data only, time-ordered folds that never
judge on the past, the logistic regression or a blend chosen where the signal is linear and
LightGBM where it is not, and a chosen blend served whole (scores, SHAP, reasons)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.params import Params, TrainParams
from models.calibration import Calibrator
from models.linear import LinearModel
from models.reports.leakage import rank_auc
from models.selection import Rows, Selection, grid, select, time_folds
from models.training import _early_stopped, lightgbm_params
from tests.serving.world import World

NAMES = [f"x{i}" for i in range(12)] + ["channel"]
CATEGORICAL = ["channel"]


def _settings(**selection: Any) -> TrainParams:
    base = Params().train
    fast = {"learning_rate": 0.1, "max_rounds": 200, "early_stopping_rounds": 20}
    fast |= {"num_threads": 1, "min_data_in_leaf": 40}
    return base.model_copy(
        update={**fast, "selection": base.selection.model_copy(update=selection)}
    )


def _linear_world(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Twelve small additive effects and a channel: what a linear model fits best."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, len(NAMES)))
    X[:, -1] = rng.integers(0, 4, n)
    z = X[:, :12] @ np.linspace(0.5, 0.15, 12) + 0.4 * (X[:, -1] == 2) - 0.6
    y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(np.float64)
    return X, y


def _interaction_world(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The sign of a product decides: invisible to a linear model."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, len(NAMES)))
    X[:, -1] = rng.integers(0, 4, n)
    z = 2.5 * np.sign(X[:, 0] * X[:, 1]) - 0.3
    y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(np.float64)
    return X, y


def _select(
    settings_: TrainParams,
    train: tuple[np.ndarray, np.ndarray],
    valid: tuple[np.ndarray, np.ndarray],
    period: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    logistic: bool = True,
) -> Selection:
    categorical = [NAMES.index(c) for c in CATEGORICAL]

    def fit_linear(rows: Rows) -> LinearModel:
        return LinearModel(NAMES, CATEGORICAL, 1.0, 0).fit(rows[0], rows[1], rows[2])

    def fit(params: dict[str, Any], rows: Rows, judge: tuple[np.ndarray, np.ndarray]) -> Any:
        return _early_stopped(params, rows, judge, NAMES, categorical, settings_)

    rows: Rows = (train[0], train[1], None)
    return select(
        settings_,
        rows,
        valid,
        lambda update: lightgbm_params(settings_.model_copy(update=update), [0] * len(NAMES)),
        fit,
        fit_linear(rows) if logistic else None,
        fit_linear,
        period,
    )


def _by_name(selection: Selection) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in selection.candidates}


def test_a_linear_signal_chooses_the_logistic_regression_or_a_blend() -> None:
    X, y = _linear_world(4_000, seed=1)
    selection = _select(_settings(), (X[:3_000], y[:3_000]), (X[3_000:], y[3_000:]))
    assert selection.blend > 0.0, selection.candidates
    figures = _by_name(selection)
    chosen = figures[selection.chosen]
    assert chosen["chosen"]
    assert sum(c["chosen"] for c in selection.candidates) == 1
    assert chosen["valid_roc_auc"] > figures["lightgbm"]["valid_roc_auc"]
    assert chosen["valid_roc_auc"] >= figures["logistic"]["valid_roc_auc"]


def test_an_interaction_chooses_lightgbm() -> None:
    X, y = _interaction_world(4_000, seed=2)
    selection = _select(_settings(), (X[:3_000], y[:3_000]), (X[3_000:], y[3_000:]))
    assert selection.blend == 0.0, selection.candidates
    assert selection.chosen.startswith("lightgbm")
    assert selection.booster is not None  # judged on valid: the fitted booster is kept
    figures = _by_name(selection)
    assert figures["logistic"]["valid_roc_auc"] < 0.6 < figures[selection.chosen]["valid_roc_auc"]


def test_every_candidate_is_listed_with_its_validation_figure() -> None:
    X, y = _linear_world(2_000, seed=3)
    settings_ = _settings(lightgbm_settings=3, blends=(0.5,))
    selection = _select(settings_, (X[:1_500], y[:1_500]), (X[1_500:], y[1_500:]))
    names = [c["name"] for c in selection.candidates]
    assert len(names) == 3 + 1 + 1 == len(set(names))
    assert names[0] == "lightgbm"
    assert names[3] == "logistic"
    assert names[4].startswith("blend")
    X_valid, y_valid = X[1_500:], y[1_500:]
    logistic = LinearModel(NAMES, CATEGORICAL).fit(X[:1_500], y[:1_500])
    # the logistic's figure is its ROC AUC on the valid rows, recomputed here
    expected = rank_auc(y_valid == 1, logistic.margin(X_valid))
    assert _by_name(selection)["logistic"]["valid_roc_auc"] == pytest.approx(expected, abs=1e-6)
    assert selection.report()["method"] == "valid"
    json.dumps(selection.report())  # plain data, for metrics.json


def test_without_the_logistic_only_lightgbm_settings_compete() -> None:
    X, y = _linear_world(2_000, seed=4)
    selection = _select(_settings(), (X[:1_500], y[:1_500]), (X[1_500:], y[1_500:]), logistic=False)
    assert [c["name"] for c in selection.candidates] == [
        "lightgbm " + " ".join(f"{k}={v}" for k, v in u.items()) if u else "lightgbm"
        for u in grid(_settings())
    ]
    assert selection.blend == 0.0


def test_the_grid_stays_within_what_serving_tabulates() -> None:
    from models.treeshap import MAX_NODES

    for update in grid(_settings(lightgbm_settings=6)):
        assert update.get("num_leaves", 7) <= MAX_NODES + 1


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 400), folds=st.integers(2, 10), seed=st.integers(0, 10_000))
def test_time_folds_never_judge_on_the_past(n: int, folds: int, seed: int) -> None:
    times = np.random.default_rng(seed).integers(0, 50, n)  # ties too
    order = np.argsort(times, kind="stable")
    seen: set[int] = set()
    for fit, judge in time_folds(order, folds):
        assert len(fit)
        assert len(judge)
        assert times[fit].max() <= times[judge].min()  # equal only for tied times
        assert not set(fit.tolist()) & set(judge.tolist())
        assert not set(judge.tolist()) & seen  # each row judged once at most
        seen |= set(judge.tolist())


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 1_000), linear=st.booleans())
def test_the_chosen_model_never_loses_to_the_logistic_on_validation(
    seed: int, linear: bool
) -> None:
    X, y = (_linear_world if linear else _interaction_world)(900, seed)
    times = np.arange(len(y))
    selection = _select(_settings(), (X[:700], y[:700]), (X[700:], y[700:]), (X, y, times))
    figures = _by_name(selection)
    assert selection.method == "time_cv"
    assert selection.folds == _settings().selection.cv_folds
    chosen = figures[selection.chosen]["valid_roc_auc"]
    assert chosen >= figures["logistic"]["valid_roc_auc"]
    best = max(c["valid_roc_auc"] for c in selection.candidates)
    if selection.chosen == "lightgbm":  # params.yaml's setting: kept within min_gain of the best
        assert chosen > best - _settings().selection.min_gain
    else:
        assert chosen == best


def test_cross_validation_scores_each_fold_on_later_rows_only() -> None:
    """A candidate's figure is the mean over expanding-window folds of its ROC AUC on the
    block after its fit rows, recomputed here block by block."""
    X, y = _linear_world(1_500, seed=5)
    times = np.arange(len(y))
    selection = _select(
        _settings(lightgbm_settings=1, blends=()), (X, y), (X[:10], y[:10]), (X, y, times)
    )
    folds = _settings().selection.cv_folds
    blocks = np.array_split(np.arange(len(y)), folds + 1)
    aucs = []
    for k in range(folds):
        fit = np.concatenate(blocks[: k + 1])
        model = LinearModel(NAMES, CATEGORICAL).fit(X[fit], y[fit])
        aucs.append(rank_auc(y[blocks[k + 1]] == 1, model.margin(X[blocks[k + 1]])))
    logistic = _by_name(selection)["logistic"]["valid_roc_auc"]
    assert logistic == pytest.approx(float(np.mean(aucs)), abs=1e-6)


def test_a_blend_scores_and_explains_as_one_model() -> None:
    """The served model of a blend: calibrated ``(1 - w) trees + w linear`` log-odds, and SHAP
    values whose sum plus the base value is that log-odds."""
    from models.scorer import TargetModel

    X, y = _linear_world(3_000, seed=6)
    selection = _select(_settings(), (X[:2_000], y[:2_000]), (X[2_000:2_500], y[2_000:2_500]))
    assert selection.booster is not None
    linear = LinearModel(NAMES, CATEGORICAL).fit(X[:2_000], y[:2_000])
    booster = selection.booster
    model = TargetModel(booster, Calibrator("sigmoid"), booster.best_iteration, linear, 0.5)
    model.calibrator.fit(model.uncalibrated(X[2_500:]), y[2_500:])
    trees = booster.predict(X[:50], num_iteration=booster.best_iteration, raw_score=True)
    margin = 0.5 * trees + 0.5 * linear.margin(X[:50])
    np.testing.assert_allclose(model.margin(X[:50]), margin, rtol=0, atol=1e-12)
    expected = model.calibrator.predict(1 / (1 + np.exp(-margin)))
    np.testing.assert_allclose(model.predict(X[:50]), expected, rtol=0, atol=1e-12)
    contributions = 0.5 * np.asarray(
        booster.predict(X[:50], num_iteration=booster.best_iteration, pred_contrib=True)
    )[:, :-1] + 0.5 * linear.contributions(X[:50])
    np.testing.assert_allclose(
        contributions.sum(axis=1) + model.expected_value, margin, rtol=0, atol=1e-9
    )
    # a lead's bits are the same alone as in a batch
    assert all(model.margin(X[i : i + 1])[0] == model.margin(X[:50])[i] for i in range(50))
    refit = LinearModel(NAMES, CATEGORICAL).fit(X[:2_000], y[:2_000])
    assert np.array_equal(refit.margin(X[:5]), linear.margin(X[:5]))  # deterministic


def scorer_gain(world: World) -> float:
    from features.params import load_params

    return load_params(world.params_path).train.selection.min_gain


def test_the_trained_worlds_metrics_list_every_candidate(world: World) -> None:
    metrics = json.loads((world.artifacts / "metrics.json").read_text())
    scorer = world.scorer
    for target in scorer.models:
        selection = metrics[target]["selection"]
        assert selection["method"] in ("valid", "time_cv")
        candidates = selection["candidates"]
        assert [c["name"] for c in candidates if c["chosen"]] == [selection["chosen"]]
        best = max(c["valid_roc_auc"] for c in candidates)
        chosen = next(c for c in candidates if c["chosen"])
        if chosen["name"] == "lightgbm":
            assert chosen["valid_roc_auc"] > best - scorer_gain(world)
        else:
            assert chosen["valid_roc_auc"] == best
        logistic = next(c for c in candidates if c["name"] == "logistic")
        assert chosen["valid_roc_auc"] >= logistic["valid_roc_auc"]
        model = scorer.models[target]
        assert model.blend == (chosen["blend"] if model.linear is not None else 0.0)


def test_a_gain_within_min_gain_keeps_the_params_setting() -> None:
    from models.selection import _Fold, choose

    rng = np.random.default_rng(7)
    y = rng.random(400) < 0.3
    default = y + rng.normal(0, 1.2, 400)
    other = y + rng.normal(0, 1.0, 400)
    gain = rank_auc(y, other) - rank_auc(y, default)  # type: ignore[operator]
    assert gain > 0
    fold = _Fold(y, [default, other], [10, 10], -default, [])  # the logistic: worst of all
    updates = [{}, {"learning_rate": 0.1}]
    within = _settings(min_gain=gain + 1e-3, blends=())
    assert choose(within, [fold], updates, "time_cv").chosen == "lightgbm"
    beyond = _settings(min_gain=gain - 1e-3, blends=())
    assert choose(beyond, [fold], updates, "time_cv").chosen == "lightgbm learning_rate=0.1"
    # a logistic regression better than params.yaml's setting is never passed over for it
    fold = _Fold(y, [default, other], [10, 10], other + 0.5 * y, [])
    assert choose(within, [fold], updates, "time_cv").chosen == "logistic"
