"""Models per segment with a pooled fallback: routing, the choice made on the segment's own
calibration rows, and the test-slice comparison the evaluate stage reports."""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from threadpoolctl import threadpool_limits

from features.engine.table import build_feature_table
from features.errors import UserError
from features.ingest.simulate import simulate
from features.params import GenerateParams, Params, SegmentsParams, load_params
from features.storage import read_validated
from models.reports.evaluation import segment_metrics
from models.scorer import LeadScorer
from models.segments import POOLED, Segmentation, route, segment_lookup, stitch
from models.training import train_all
from tests.serving.world import fast

REPO = Path(__file__).resolve().parents[2]
REGIONS = {
    "americas": ("US", "CA", "BR"),
    "emea": ("GB", "DE", "FR", "NL", "ES", "SE"),
    "apac": ("AU", "IN"),
}


def test_a_value_is_its_own_segment_or_its_groups_and_the_rest_pooled() -> None:
    vocabulary = ("US", "DE", "FR", "IN")
    assert list(segment_lookup(vocabulary, None)) == ["US", "DE", "FR", "IN", POOLED]
    grouped = segment_lookup(vocabulary, {"emea": ("de", " FR ")})
    assert list(grouped) == [POOLED, "emea", "emea", POOLED, POOLED]


def test_missing_unseen_and_odd_codes_are_pooled() -> None:
    segmentation = Segmentation("country", 1, segment_lookup(("US", "DE"), None))
    X = np.array([[0.0, 0.0], [0.0, 1.0], [0.0, np.nan], [0.0, 2.0], [0.0, 99.0], [0.0, -3.0]])
    assert list(segmentation.names(X)) == ["US", "DE", POOLED, POOLED, POOLED, "US"]
    assert segmentation.names(np.zeros((0, 2))).shape == (0,)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from([0.0, 1.0, 2.0, np.nan]), min_size=1, max_size=40))
def test_routed_parts_come_back_in_row_order(codes: list[float]) -> None:
    X = np.column_stack([np.arange(len(codes), dtype=float), codes])
    segmentation = Segmentation("c", 1, segment_lookup(("a", "b", "c"), {"ab": ("a", "b")}))
    segmentation.scorers["ab"] = object()
    routes = route(segmentation, X)
    names = segmentation.names(X)
    if routes is None:
        assert (names == POOLED).all()
        return
    covered = np.sort(np.concatenate([p for _, p in routes]))
    assert covered.tolist() == list(range(len(codes)))
    parts = [(p, {"row": X[p, 0], "pair": (X[p], X[p, 0] * 2)}) for _, p in routes]
    out = stitch(parts, len(codes))
    assert out["row"].tolist() == X[:, 0].tolist()
    assert np.array_equal(out["pair"][0], X, equal_nan=True)
    assert out["pair"][1].tolist() == (X[:, 0] * 2).tolist()


def test_segment_groups_may_not_overlap_or_be_called_pooled() -> None:
    with pytest.raises(ValueError, match="in both"):
        SegmentsParams(by="country", groups={"a": ("US",), "b": ("us",)})
    with pytest.raises(ValueError, match="pooled"):
        SegmentsParams(by="country", groups={"pooled": ("US",)})


@dataclass
class Trained:
    scorer: LeadScorer
    X: np.ndarray
    snapshots: pd.DataFrame
    metrics: dict


def _params(**segments: object) -> Params:
    params = fast(load_params(REPO / "params.yaml"))
    return params.model_copy(
        update={
            "segments": params.segments.model_copy(update=segments),
            "timing": params.timing.model_copy(update={"enabled": False}),
        }
    )


def _train(root: Path, drivers: bool, params: Params) -> Trained:
    raw = root / "raw"
    simulate(GenerateParams(leads=8000, seed=7, segment_drivers=drivers), raw)
    engine, snapshots = build_feature_table(read_validated(raw), params, None)
    with threadpool_limits(1):
        scorer, _ = train_all(snapshots, engine, params)
    X = engine.matrix_from_frame(snapshots)
    test = (snapshots["split"] == "test").to_numpy()
    metrics = segment_metrics(snapshots[test].reset_index(drop=True), X[test], scorer, 10)
    return Trained(scorer, X, snapshots, metrics)


@pytest.fixture(scope="module")
def drifted(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """A world where regions buy differently (``generate.segment_drivers``)."""
    params = _params(by="country", groups=REGIONS)
    return _train(tmp_path_factory.mktemp("drifted"), True, params)


@pytest.fixture(scope="module")
def default(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    params = _params(by="country", groups=REGIONS)
    return _train(tmp_path_factory.mktemp("default"), False, params)


@pytest.mark.slow
def test_where_regions_differ_a_segment_model_is_chosen_and_beats_pooled_on_its_test_rows(
    drifted: Trained,
) -> None:
    segments = drifted.metrics["segments"]
    assert drifted.metrics["used"], segments
    for name in drifted.metrics["used"]:
        entry = segments[name]
        assert entry["model"] == "segment"
        chosen_on = entry["targets"]["converted"]["calibration_roc_auc"]
        assert chosen_on["segment"] > chosen_on["pooled"]
    winners = [
        name
        for name in drifted.metrics["used"]
        if (test := segments[name]["targets"]["converted"]["test"])["model"]["roc_auc"]
        > test["pooled"]["roc_auc"]
    ]
    assert winners, segments


@pytest.mark.slow
def test_on_the_default_world_every_segment_is_compared_with_pooled_on_its_rows(
    default: Trained,
) -> None:
    segments = default.metrics["segments"]
    assert set(segments) == set(REGIONS)
    for name, entry in segments.items():
        assert entry["model"] in ("segment", POOLED)
        assert (entry["model"] == "segment") == (name in default.metrics["used"])
        if entry["model"] == POOLED:
            assert entry["reason"]
        test = entry["targets"]["converted"]["test"]
        assert test["rows"] > 0
        assert test["positives"] > 0
        for side in ("model", "pooled"):
            assert 0.5 < test[side]["roc_auc"] <= 1.0
        if entry["model"] == POOLED:  # the pooled model scores its leads: the same figures
            assert test["model"] == test["pooled"]


@pytest.mark.slow
def test_each_lead_is_scored_by_its_segments_model_alone_or_in_a_batch(drifted: Trained) -> None:
    scorer, X = drifted.scorer, drifted.X[:400]
    segmentation = scorer.segmentation
    assert segmentation is not None
    assert segmentation.scorers
    names = scorer.segments(X)
    summary, reasons = scorer.summarise_explained(X, 3, 1)
    assert list(summary.segment) == list(names)
    pooled = scorer.probabilities(X, 1, routed=False)
    for name in {*names}:
        rows = names == name
        own = scorer if name == POOLED else segmentation.scorers[name]
        expected = own.probabilities(X[rows], 1, routed=False)
        for target, p in summary.probabilities.items():
            assert np.array_equal(p[rows], expected[target])
        contributions = own.contributions(X[rows], 1)
        assert np.array_equal(scorer.contributions(X, 1)[rows], contributions)
    moved = names != POOLED
    assert not np.array_equal(summary.probabilities["converted"][moved], pooled["converted"][moved])
    for i in range(0, 400, 37):
        alone, alone_reasons = scorer.summarise_explained(X[i : i + 1], 3, 1)
        assert alone.segment_of(0) == summary.segment_of(i)
        assert alone.probabilities["converted"][0] == summary.probabilities["converted"][i]
        assert alone.fit_score[0] == summary.fit_score[i]
        assert alone_reasons[0] == reasons[i]
    frame = summary.frame()
    assert frame["segment"].tolist() == list(names)


@pytest.mark.slow
def test_segments_travel_in_the_pickle(drifted: Trained) -> None:
    restored = pickle.loads(pickle.dumps(drifted.scorer))
    assert restored.fingerprint() == drifted.scorer.fingerprint()
    X = drifted.X[:100]
    assert np.array_equal(
        restored.probabilities(X)["converted"], drifted.scorer.probabilities(X)["converted"]
    )


@pytest.mark.slow
def test_a_segment_column_the_model_lacks_is_one_clear_error(drifted: Trained) -> None:
    params = _params(by="favourite_colour")
    snapshots = drifted.snapshots.iloc[:3000]
    with pytest.raises(UserError, match=r"segments\.by: 'favourite_colour' is not a categorical"):
        train_all(snapshots, drifted.scorer.engine, params, X=drifted.X[:3000])


@pytest.mark.slow
def test_segments_smaller_than_any_model_needs_fall_back_instead_of_failing(
    default: Trained,
) -> None:
    """segments' minimums below train's: a tiny segment is pooled with its reason, never a
    'not ready to train' error that fails the stage."""
    params = _params(by="industry", groups={}, min_positives=1, min_negatives=1)
    with threadpool_limits(1):
        scorer, _ = train_all(default.snapshots, default.scorer.engine, params, X=default.X)
    assert scorer.segmentation is not None
    report = scorer.segmentation.report["segments"]
    small = [e for e in report.values() if e["train_positives"] < params.train.min_positives]
    assert small
    for entry in small:
        assert entry["model"] == POOLED
        assert f"require {params.train.min_positives}" in entry["reason"]
