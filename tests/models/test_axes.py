"""Fit and engagement (models/axes.py) on the session's trained world: each axis depends on its
own features only (the issue's two axis tests, through the one-lead feature path), the effects
are the trees' own expectations, the 0–100 scales and the grid, and the queue's priority."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from threadpoolctl import threadpool_limits

from features.engine import catalog
from features.engine.table import build_feature_table
from features.params import Params
from models.axes import AxisScale, GridBands, axis_groups
from models.reports.grid import grid_report
from models.scorer import LeadScorer
from models.training import train_all
from models.treeshap import path_table
from tests.serving.world import World, fast

FIT, ENGAGEMENT = 0, 1
AS_OF = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def scorer(world: World) -> LeadScorer:
    return world.scorer


@pytest.fixture(scope="module")
def rows(world: World, scorer: LeadScorer) -> np.ndarray:
    return scorer.engine.matrix_from_frame(world.snapshots.iloc[::7])


def test_every_feature_is_on_one_axis(scorer: LeadScorer) -> None:
    groups = scorer.axis_groups
    names = scorer.engine.feature_names_
    assert len(groups) == len(names)
    by_axis = {
        axis: [n for n, g in zip(names, groups, strict=True) if g == i]
        for i, axis in enumerate(catalog.AXES)
    }
    assert "seniority" in by_axis["fit"]
    assert "channel" in by_axis["fit"]
    assert "demo_request_7d" in by_axis["engagement"]
    assert "touches_trend" in by_axis["engagement"]
    assert "lead_age_days" in by_axis["engagement"]
    assert "campaign_converted_lift" in by_axis["fit"]


def test_the_whole_model_as_one_group_is_its_log_odds_less_the_bias(
    scorer: LeadScorer, rows: np.ndarray
) -> None:
    model = scorer.models[scorer.primary]
    n = len(scorer.engine.feature_names_)
    table = path_table(model.booster, model.best_iteration, np.zeros(n, np.int64))
    assert table is not None
    contrib = model.booster.predict(rows, num_iteration=model.best_iteration, pred_contrib=True)
    raw = model.booster.predict(rows, num_iteration=model.best_iteration, raw_score=True)
    effects = table.group_effects(rows)
    np.testing.assert_allclose(effects[:, 0], raw - contrib[:, -1], rtol=0, atol=1e-9)


def test_an_axis_of_no_features_has_no_effect(scorer: LeadScorer, rows: np.ndarray) -> None:
    model = scorer.models[scorer.primary]
    groups = np.zeros(len(scorer.engine.feature_names_), np.int64)
    groups[0] = 2  # group 1 gets no feature
    table = path_table(model.booster, model.best_iteration, groups)
    assert table is not None
    effects = table.group_effects(rows)
    assert effects.shape == (len(rows), 3)
    assert np.all(effects[:, 1] == 0.0)


def _swap(rows: np.ndarray, groups: np.ndarray, axis: int, i: int, j: int) -> np.ndarray:
    """Row i with the features of ``axis`` taken from row j."""
    out = rows[i].copy()
    out[groups == axis] = rows[j][groups == axis]
    return out


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_an_axis_moves_only_with_its_own_features(
    scorer: LeadScorer, rows: np.ndarray, data: st.DataObject
) -> None:
    i = data.draw(st.integers(0, len(rows) - 1))
    j = data.draw(st.integers(0, len(rows) - 1))
    groups = scorer.axis_groups
    before = scorer.axis_effects(rows[[i]], num_threads=1)[0]
    engaged = scorer.axis_effects(_swap(rows, groups, ENGAGEMENT, i, j)[None], 1)[0]
    fitted = scorer.axis_effects(_swap(rows, groups, FIT, i, j)[None], 1)[0]
    # bit for bit: the other axis's effect never sees the swapped features
    assert engaged[FIT] == before[FIT]
    assert fitted[ENGAGEMENT] == before[ENGAGEMENT]
    # and the effects are the same alone as in a batch
    batch = scorer.axis_effects(rows, num_threads=2)
    assert np.array_equal(batch[i], before)


def _lead(seniority: str = "manager") -> dict[str, Any]:
    return {
        "lead_id": "axis-1",
        "created_at": (AS_OF - dt.timedelta(days=40)).isoformat(),
        "seniority": seniority,
        "department": "it",
        "country": "DE",
        "source": "web",
    }


def _touches(demo_days_ago: list[int]) -> list[dict[str, Any]]:
    web = [
        {"occurred_at": (AS_OF - dt.timedelta(days=d)).isoformat(), "touch_type": "web_visit"}
        for d in (35, 20, 9)
    ]
    demos = [
        {"occurred_at": (AS_OF - dt.timedelta(days=d)).isoformat(), "touch_type": "demo_request"}
        for d in demo_days_ago
    ]
    return web + demos


def test_more_recent_demo_requests_move_the_engagement_axis_only(scorer: LeadScorer) -> None:
    engine = scorer.engine
    old = engine.transform_one(_lead(), _touches([30]), (), AS_OF).reshape(1, -1)
    recent = engine.transform_one(_lead(), _touches([30, 3, 1]), (), AS_OF).reshape(1, -1)
    before, after = scorer.axis_effects(old, 1)[0], scorer.axis_effects(recent, 1)[0]
    assert after[FIT] == before[FIT]  # bit for bit
    # The session's small model (3,000 leads) barely uses demo requests, so the move is shown
    # with recent pricing-page visits and e-mail clicks too, which it does use.
    pricing = [
        {"occurred_at": (AS_OF - dt.timedelta(days=d)).isoformat(), "touch_type": kind}
        for d, kind in ((2, "pricing_page_visit"), (1, "email_click"), (1, "pricing_page_visit"))
    ]
    busier = engine.transform_one(_lead(), _touches([30, 3, 1]) + pricing, (), AS_OF)
    moved = scorer.axis_effects(busier.reshape(1, -1), 1)[0]
    assert moved[FIT] == before[FIT]
    assert moved[ENGAGEMENT] != before[ENGAGEMENT]
    scores = scorer.summarise(np.vstack([old, recent, busier]), num_threads=1)
    assert len(set(scores.fit_score.tolist())) == 1


def test_seniority_moves_the_fit_axis_only(scorer: LeadScorer) -> None:
    engine = scorer.engine
    values = [v for v in engine.vocabulary("seniority") if v != "manager"]
    manager = engine.transform_one(_lead("manager"), _touches([10]), (), AS_OF).reshape(1, -1)
    effects = scorer.axis_effects(manager, 1)[0]
    moved = False
    for value in values:
        other = engine.transform_one(_lead(value), _touches([10]), (), AS_OF).reshape(1, -1)
        changed = scorer.axis_effects(other, 1)[0]
        assert changed[ENGAGEMENT] == effects[ENGAGEMENT]
        moved |= changed[FIT] != effects[FIT]
    assert moved  # the model uses seniority: some level changes the fit effect


def test_scores_are_percentiles_of_the_training_rows(scorer: LeadScorer, rows: np.ndarray) -> None:
    scores = scorer.summarise(rows, num_threads=1)
    for values in (scores.fit_score, scores.engagement_score):
        assert np.all((values >= 0) & (values <= 100))
        assert np.array_equal(values, np.rint(values))
    effects = scorer.axis_effects(rows, 1)
    for g, values in enumerate((scores.fit_score, scores.engagement_score)):
        order = np.argsort(effects[:, g], kind="stable")
        assert np.all(np.diff(values[order]) >= 0)  # a larger effect never scores lower
    # the training population itself spreads over the scale: its median scores about 50
    assert 30 <= float(np.median(scores.fit_score)) <= 70


@given(st.lists(st.floats(-5, 5), min_size=1, max_size=40), st.floats(-6, 6))
def test_mid_rank_percentile(reference: list[float], value: float) -> None:
    scale = AxisScale.fit(np.array([[r, 0.0] for r in reference]), [True, True])
    score = scale.scores(np.array([[value, 0.0]]))[0]
    below = sum(r < value for r in reference)
    equal = sum(r == value for r in reference)
    assert score[0] == round(100 * (below + equal / 2) / len(reference))
    assert score[1] == 50  # a constant axis puts every lead in the middle


def test_an_axis_without_features_is_unknown() -> None:
    scale = AxisScale.fit(np.zeros((5, 2)), [True, False])
    scores = scale.scores(np.zeros((3, 2)))
    assert np.all(scores[:, 0] == 50)
    assert np.all(np.isnan(scores[:, 1]))
    assert list(GridBands().cells(scores[:, 0], scores[:, 1])) == [None, None, None]


@given(st.floats(0, 100), st.floats(0, 100))
def test_grid_cells_follow_the_bands(fit: float, engagement: float) -> None:
    bands = GridBands.from_floors({"A": 80, "B": 60, "C": 10}, {"1": 90, "2": 40, "3": 20})
    cell = bands.cells(np.array([fit]), np.array([engagement]))[0]
    letter = "A" if fit >= 80 else "B" if fit >= 60 else "C" if fit >= 10 else "D"
    digit = (
        "1" if engagement >= 90 else "2" if engagement >= 40 else "3" if engagement >= 20 else "4"
    )
    assert cell == letter + digit


def test_the_groups_come_from_the_catalog_by_name() -> None:
    groups = axis_groups(
        ["seniority", "web_visit_7d", "account_wins", "lead_age_days"], ["seniority"]
    )
    assert groups.tolist() == [FIT, ENGAGEMENT, FIT, ENGAGEMENT]


@given(st.lists(st.floats(0, 1), min_size=1, max_size=60))
def test_priority_is_the_percentile_among_the_leads_queued(p: list[float]) -> None:
    priority = LeadScorer.priority(np.array(p))
    assert priority.max() == 100  # the best lead of the queue
    assert np.all((priority >= 1) & (priority <= 100))
    for a, b in zip(p, priority.tolist(), strict=True):
        assert b == round(100 * sum(x <= a for x in p) / len(p))


def _flat_scorer(params: Params, engagement: tuple[str, ...]) -> LeadScorer:
    """A model of a flat export (no touches): ``calls`` says what the lead did, ``job`` who
    it is; both drive the outcome."""
    rng = np.random.default_rng(1)
    n = 2500
    job = rng.choice(["admin", "technician", "manager"], n)
    calls = rng.integers(0, 6, n).astype(float)
    p = 0.05 + 0.25 * (job == "manager") + 0.05 * calls
    leads = pd.DataFrame(
        {
            "lead_id": [f"F{i:05d}" for i in range(n)],
            "created_at": pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(np.arange(n), "h"),
            "job": job,
            "calls": calls,
            "outcome_converted": (rng.uniform(size=n) < p).astype(float),
        }
    )
    manifest = {"categorical": ["job"], "numeric": ["calls"], "order": "time"}
    fast_params = fast(params).model_copy(
        update={"targets": {"converted": params.targets["converted"]}}
    )
    engine, snapshots = build_feature_table({"leads": leads}, fast_params, manifest)
    with threadpool_limits(1):
        scorer, _ = train_all(snapshots, engine, fast_params, source="flat", engagement=engagement)
    return scorer


@pytest.mark.parametrize("engagement", [(), ("calls",)])
def test_a_flat_export_has_an_engagement_axis_only_when_its_mapping_names_one(
    repo_params: Params, engagement: tuple[str, ...]
) -> None:
    scorer = _flat_scorer(repo_params, engagement)
    rows = np.vstack(
        [
            scorer.engine.transform_one(
                {"lead_id": "x", "created_at": "2024-06-01", "job": job, "calls": calls},
                as_of="2024-06-02",
            )
            for job in ("admin", "manager")
            for calls in (0.0, 5.0)
        ]
    )
    summary = scorer.summarise(rows, num_threads=1)
    if not engagement:
        assert np.isnan(summary.engagement_score).all()
        assert list(summary.grid) == [None] * 4
        return
    assert not np.isnan(summary.engagement_score).any()
    # the same job: the same fit whatever the calls; the same calls: the same engagement
    assert summary.fit_score[0] == summary.fit_score[1]
    assert summary.fit_score[2] == summary.fit_score[3]
    assert summary.engagement_score[0] == summary.engagement_score[2]
    assert summary.engagement_score[1] == summary.engagement_score[3]
    assert summary.fit_score[2] > summary.fit_score[0]  # managers fit better
    assert summary.engagement_score[1] > summary.engagement_score[0]  # more calls: more engaged
    assert all(isinstance(cell, str) for cell in summary.grid)


def test_the_grid_report_counts_every_labelled_test_score(world: World, scorer: LeadScorer) -> None:
    snapshots = world.snapshots
    X = scorer.engine.matrix_from_frame(snapshots)
    report = grid_report(snapshots, X, scorer)
    labelled = (snapshots["split"] == "test") & snapshots["label_converted"].notna()
    assert report["available"] is True
    assert [c["cell"] for c in report["cells"]] == [f"{f}{e}" for f in "ABCD" for e in "1234"]
    assert sum(c["scores"] for c in report["cells"]) == report["scores"] == int(labelled.sum())
    assert sum(c["positives"] for c in report["cells"]) == int(
        (snapshots.loc[labelled, "label_converted"] == 1).sum()
    )
    cells = scorer.summarise(X[labelled.to_numpy()]).grid
    for cell in report["cells"]:
        assert cell["scores"] == int((cells == cell["cell"]).sum())
        if cell["scores"]:
            assert cell["rate"] == round(cell["positives"] / cell["scores"], 6)
    # the fit axis ranks: A cells convert more often than D cells, over all engagement
    by_letter = {
        f: sum(c["positives"] for c in report["cells"] if c["fit"] == f)
        / max(1, sum(c["scores"] for c in report["cells"] if c["fit"] == f))
        for f in "AD"
    }
    assert by_letter["A"] > by_letter["D"]


def test_no_grid_without_an_engagement_axis(repo_params: Params) -> None:
    scorer = _flat_scorer(repo_params, ())
    leads = pd.DataFrame({"lead_id": ["a", "b"], "as_of": pd.Timestamp("2024-06-01", tz="UTC")})
    snapshots = leads.assign(split="test", label_converted=[1.0, 0.0])
    X = np.vstack(
        [
            scorer.engine.transform_one(
                {"lead_id": i, "created_at": "2024-05-01", "job": "admin", "calls": 1.0},
                as_of="2024-06-01",
            )
            for i in "ab"
        ]
    )
    report = grid_report(snapshots, X, scorer)
    assert report["available"] is False
    assert "one axis only" in report["reason"]
