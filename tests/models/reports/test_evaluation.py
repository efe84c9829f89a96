"""Evaluation metrics, calibration, the model beside its baselines, and model behaviour."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    log_loss,
    roc_auc_score,
)

from features.engine.table import build_feature_table
from features.errors import UserError
from features.ingest.simulate import simulate
from features.params import Params, TargetParams
from features.storage import read_validated
from models.calibration import Calibrator
from models.reports.evaluation import (
    METRICS,
    binary_metrics,
    calibration_table,
    capture,
    evaluate,
    expected_calibration_error,
    gains_on_grid,
    lift,
    precision_on_grid,
    roc_on_grid,
)
from models.reports.timing import timing_report
from models.scorer import LeadScorer
from models.timing import durations
from models.training import check_readiness, train_all

# ------------------------------------------------------------------ metric functions


def test_metrics_match_scikit_learn() -> None:
    rng = np.random.default_rng(0)
    p = rng.uniform(0.01, 0.99, 5000)
    y = (rng.uniform(size=5000) < p).astype(float)
    metrics = binary_metrics(y, p, bins=10)
    assert list(metrics) == list(METRICS)
    assert metrics["roc_auc"] == pytest.approx(roc_auc_score(y, p))
    assert metrics["pr_auc"] == pytest.approx(average_precision_score(y, p))
    assert metrics["brier"] == pytest.approx(brier_score_loss(y, p))
    assert metrics["log_loss"] == pytest.approx(log_loss(y, p))


def test_ece_by_hand() -> None:
    p = np.array([0.05, 0.05, 0.95, 0.95])
    y = np.array([0, 1, 1, 1])
    # Bin 0: predicted 0.05, observed 0.5; bin 9: predicted 0.95, observed 1; half the rows each.
    assert expected_calibration_error(y, p, 10) == pytest.approx(0.5 * 0.45 + 0.5 * 0.05)


def test_ece_small_when_calibrated_large_when_not() -> None:
    rng = np.random.default_rng(1)
    p = rng.uniform(size=200_000)
    y = (rng.uniform(size=p.size) < p).astype(float)
    assert (expected_calibration_error(y, p, 10) or 1.0) < 0.005
    assert (expected_calibration_error(y, p**2, 10) or 0.0) > 0.1


def test_calibration_table_edges() -> None:
    table = calibration_table([0, 1, 1], [0.0, 1.0, 0.55], bins=10)
    assert table["bin"].tolist() == [0, 5, 9]  # 1.0 falls in the last bin, empty bins left out
    assert table["count"].sum() == 3
    assert table["observed"].tolist() == [0.0, 1.0, 1.0]


def test_lift_and_capture_on_a_crafted_ranking() -> None:
    n = 100
    p = np.linspace(1.0, 0.0, n, endpoint=False)  # row i has rank i + 1
    y = np.zeros(n)
    y[[0, 1, 2, 3, 4, 14, 15, 24, 59, 89]] = 1  # 10 positives at ranks 1-5, 15, 16, 25, 60, 90
    assert capture(y, p, 0.10) == pytest.approx(0.5)
    assert capture(y, p, 0.20) == pytest.approx(0.7)
    assert capture(y, p, 0.30) == pytest.approx(0.8)
    assert lift(y, p, 0.10) == pytest.approx(5.0)
    metrics = binary_metrics(y, p)
    assert metrics["capture_top_20"] == pytest.approx(0.7)
    assert metrics["lift_top_decile"] == pytest.approx(5.0)


def test_ties_at_the_cut_count_fractionally() -> None:
    y = np.array([1, 0, 0, 0, 0, 1, 0, 0, 0, 0] * 10, dtype=float)
    flat = np.full(y.size, 0.3)
    assert capture(y, flat, 0.1) == pytest.approx(0.1)  # a constant score is no better than random
    assert lift(y, flat, 0.1) == pytest.approx(1.0)
    # Two tied groups: top 10 % = 10 of the 20 rows scored 0.9, holding 8 positives.
    p = np.r_[np.full(20, 0.9), np.full(80, 0.1)]
    y = np.r_[np.ones(8), np.zeros(12), np.ones(2), np.zeros(78)]
    assert capture(y, p, 0.1) == pytest.approx(4 / 10)


def test_undefined_metrics_are_none_and_json_safe() -> None:
    metrics = binary_metrics(np.zeros(20), np.linspace(0, 1, 20))
    assert metrics["roc_auc"] is None
    assert metrics["pr_auc"] is None
    assert metrics["lift_top_decile"] is None
    assert metrics["capture_top_10"] is None
    assert metrics["brier"] is not None
    json.dumps(metrics, allow_nan=False)


def test_curves_on_the_grid() -> None:
    rng = np.random.default_rng(2)
    p = rng.uniform(size=3000)
    y = (rng.uniform(size=p.size) < p).astype(float)
    tpr = roc_on_grid(y, p)
    grid = np.linspace(0, 1, tpr.size)
    assert np.trapezoid(tpr, grid) == pytest.approx(roc_auc_score(y, p), abs=0.005)
    assert (np.diff(tpr) >= 0).all()
    gains = gains_on_grid(y, p)
    assert gains[0] == 0.0
    assert gains[-1] == pytest.approx(1.0)
    assert gains[10] == pytest.approx(capture(y, p, 0.1))
    precision = precision_on_grid(y, p)
    assert (np.diff(precision) <= 1e-12).all()  # interpolated precision never rises with recall


# ------------------------------------------------------------------ a small trained world


@pytest.fixture(scope="module")
def small(
    tmp_path_factory: pytest.TempPathFactory, repo_params: Params
) -> tuple[dict[str, pd.DataFrame], pd.DataFrame, np.ndarray, LeadScorer, dict]:
    out = tmp_path_factory.mktemp("small-world")
    simulate(
        repo_params.generate.model_copy(update={"leads": 4000}),
        out,
        window_days=repo_params.quality_lead.window_days,
    )
    tables = read_validated(out)
    engine, snapshots = build_feature_table(tables, repo_params, None)
    primary = repo_params.quality_lead.target
    params = repo_params.model_copy(update={"targets": {primary: repo_params.targets[primary]}})
    scorer, trained = train_all(snapshots, engine, params)  # the primary target: half the time
    baselines = {t: {"rules": r.rules, "logistic": r.logistic} for t, r in trained.items()}
    return tables, snapshots, engine.matrix_from_frame(snapshots), scorer, baselines


def test_calibrator_repairs_miscalibrated_scores_on_held_out_data() -> None:
    rng = np.random.default_rng(4)
    p = rng.beta(1, 6, 40_000)
    y = (rng.uniform(size=p.size) < p).astype(float)
    raw = 1 / (1 + np.exp(-(1.8 * np.log(p / (1 - p)) + 1.0)))  # overconfident and too high
    fit, held_out = slice(0, 20_000), slice(20_000, None)
    for method in ("sigmoid", "isotonic"):
        calibrator = Calibrator(method).fit(raw[fit], y[fit])
        calibrated = calibrator.predict(raw[held_out])
        before = expected_calibration_error(y[held_out], raw[held_out], 10)
        after = expected_calibration_error(y[held_out], calibrated, 10)
        assert before is not None
        assert after is not None
        assert after < before / 3, (method, before, after)


def _probabilities(
    scorer: LeadScorer, lead: dict, touches: list, sales: list, as_of: pd.Timestamp
) -> dict[str, float]:
    row = scorer.engine.transform_one(lead, touches, sales, as_of)[None, :]
    return {t: float(p[0]) for t, p in scorer.summarise(row).probabilities.items()}


def _history(tables: dict[str, pd.DataFrame], lead_id: str, as_of: pd.Timestamp) -> tuple:
    lead = tables["leads"].set_index("lead_id", drop=False).loc[lead_id].to_dict()
    touches = tables["touches"]
    sales = tables["sales_events"]
    return (
        lead,
        touches[(touches["lead_id"] == lead_id) & (touches["occurred_at"] < as_of)].to_dict(
            "records"
        ),
        sales[(sales["lead_id"] == lead_id) & (sales["occurred_at"] < as_of)].to_dict("records"),
    )


@pytest.mark.parametrize(("touch", "direction"), [("demo_request", 1), ("unsubscribe", -1)])
def test_touch_moves_the_score_only_one_way(small: tuple, touch: str, direction: int) -> None:
    """More demo requests never lower any probability; an unsubscribe never raises one
    (monotone constraints in params.train.monotone, monotone calibration)."""
    tables, snapshots, _, scorer, _ = small
    sample = snapshots.sample(60, random_state=3)
    moved = 0
    for row in sample.itertuples():
        as_of = pd.Timestamp(row.as_of) + pd.Timedelta(days=3)
        lead, touches, sales = _history(tables, row.lead_id, as_of)
        before = _probabilities(scorer, lead, touches, sales, as_of)
        for extra in (1, 3):
            added = [
                {
                    "lead_id": row.lead_id,
                    "occurred_at": as_of - pd.Timedelta(hours=h + 1),
                    "touch_type": touch,
                    "campaign_id": None,
                }
                for h in range(extra)
            ]
            after = _probabilities(scorer, lead, touches + added, sales, as_of)
            for target, p in before.items():
                change = after[target] - p
                assert direction * change >= -1e-12, (row.lead_id, target, extra, change)
                moved += abs(change) > 1e-9
    if touch == "demo_request":
        assert moved > 0  # the touch matters to the model at all


def test_readiness_refuses_too_few_positives(repo_params: Params) -> None:
    y = np.r_[np.ones(5), np.zeros(500)]
    with pytest.raises(UserError, match=r"not ready to train 'converted'.*5 labelled positives"):
        check_readiness(y, "converted", repo_params.train)
    check_readiness(np.r_[np.ones(40), np.zeros(40)], "converted", repo_params.train)


def _flat_tables(n: int, leak: bool, seed: int = 0) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    size = rng.choice(["small", "mid", "large"], n)
    score = rng.normal(size=n) + np.where(size == "large", 1.0, 0.0)
    outcome = (rng.uniform(size=n) < 1 / (1 + np.exp(-(score - 1.5)))).astype(float)
    leads = pd.DataFrame(
        {
            "lead_id": [f"F{i:05d}" for i in range(n)],
            "created_at": pd.date_range("2023-01-01", periods=n, freq="3h", tz="UTC"),
            "size": size,
            "score": score + rng.normal(0, 1.0, n),
            "outcome_converted": outcome,
        }
    )
    if leak:
        leads["leak"] = outcome
    return {"leads": leads}


def test_leakage_flag_fires_on_a_feature_equal_to_the_label(repo_params: Params) -> None:
    tables = _flat_tables(2000, leak=True)
    manifest = {"categorical": ["size"], "numeric": ["score", "leak"], "post_outcome": []}
    params = repo_params.model_copy(
        update={
            "targets": {"converted": TargetParams(stages=("won",))},
            # A perfect feature never stops improving the validation loss: cap the rounds.
            "train": repo_params.train.model_copy(update={"max_rounds": 30}),
        }
    )
    engine, snapshots = build_feature_table(tables, params, manifest)
    scorer, trained = train_all(snapshots, engine, params, source="flat")
    baselines = {t: {"rules": r.rules, "logistic": r.logistic} for t, r in trained.items()}
    X = engine.matrix_from_frame(snapshots)
    result = evaluate(snapshots, X, scorer, baselines, params, shap_rows=200)
    assert result.metrics["converted"]["model"]["roc_auc"] > params.train.leakage_auc
    assert result.metrics["leakage_suspected"] is True
    assert result.top_fields[0]["field"] == "leak"


# ------------------------------------------------------------- the synthetic default


@pytest.fixture(scope="module")
def default_evaluation(synthetic_raw: Path, repo_params: Params) -> dict:
    """The default pipeline (20,000 leads) for the primary target only (training time)."""
    primary = repo_params.quality_lead.target
    tables = read_validated(synthetic_raw)
    engine, snapshots = build_feature_table(tables, repo_params, None)
    params = repo_params.model_copy(update={"targets": {primary: repo_params.targets[primary]}})
    horizon = pd.Timestamp(engine.horizon_ms_, unit="ms", tz="UTC")
    stages = params.targets[primary].stages
    outcomes = durations(snapshots, tables["sales_events"], stages, horizon)
    scorer, trained = train_all(snapshots, engine, params, outcomes=outcomes)
    baselines = {t: {"rules": r.rules, "logistic": r.logistic} for t, r in trained.items()}
    truth = pd.read_parquet(synthetic_raw / "truth.parquet")
    X = engine.matrix_from_frame(snapshots)
    result = evaluate(snapshots, X, scorer, baselines, params, truth=truth, shap_rows=500)
    timing = timing_report(snapshots, X, tables["sales_events"], scorer, stages, horizon)
    return {"metrics": result.metrics, "timing": timing}


def test_conversion_timing_beats_kaplan_meier_on_the_default(default_evaluation: dict) -> None:
    """The discrete-time model orders conversions (concordance) and predicts their timing
    (integrated Brier score) better than Kaplan–Meier's one curve for everyone, on the test
    snapshots; and the test period's forecast stands beside what happened, month by month."""
    timing = default_evaluation["timing"]
    assert timing["baseline_concordance"] == 0.5  # one curve: every pair tied
    assert timing["concordance"] > 0.7, timing
    assert timing["integrated_brier"] < timing["baseline_integrated_brier"], timing
    months = timing["forecast_by_month"]
    assert len(months) >= 3
    assert all(
        {"expected_wins", "actual_wins", "expected_revenue", "actual_revenue"} <= set(m)
        for m in months
    )
    expected = sum(m["expected_wins"] for m in months)
    actual = sum(m["actual_wins"] for m in months)
    assert actual > 0
    assert 0.5 < expected / actual < 1.5, (expected, actual)


def test_model_beats_both_baselines_on_the_default(
    default_evaluation: dict, repo_params: Params
) -> None:
    entry = default_evaluation["metrics"][repo_params.quality_lead.target]
    model, rules, logistic = entry["model"], entry["rules"], entry["logistic"]
    summary = {m: (entry[m]["roc_auc"], entry[m]["pr_auc"]) for m in ("model", "rules", "logistic")}
    assert model["roc_auc"] > max(rules["roc_auc"], logistic["roc_auc"]), summary
    assert model["pr_auc"] > max(rules["pr_auc"], logistic["pr_auc"]), summary


def test_model_is_calibrated_on_the_default(default_evaluation: dict, repo_params: Params) -> None:
    metrics = default_evaluation["metrics"]
    entry = metrics[repo_params.quality_lead.target]
    assert entry["model"]["ece"] <= 0.03
    assert not metrics["leakage_suspected"]
    # No false alarm from the per-column guard on ~100 honest simulator features.
    assert entry["leakage"]["flagged"] == []
    assert len(entry["leakage"]["columns"]) == 5
    assert 0.0 < entry["model_truth_auc_ratio"] <= 1.05
