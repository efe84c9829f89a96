"""The tabulated TreeSHAP equals LightGBM's own ``pred_contrib`` (bias excluded) within 1e-9:
on the trained world's model and on small models built to hit every kind of split LightGBM
makes (numeric with missing types None, Zero and NaN, either default way; categorical bitsets
past 32 categories), with rows full of NaN, zeros, negatives and unseen categories."""

from __future__ import annotations

import pickle

import lightgbm as lgb
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from models.treeshap import CHUNK_ROWS, MAX_NODES, path_table
from tests.serving.world import World

TOLERANCE = 1e-9


def reference(booster: lgb.Booster, X: np.ndarray, num_iteration: int | None = None) -> np.ndarray:
    return np.asarray(booster.predict(X, num_iteration=num_iteration, pred_contrib=True))[:, :-1]


def synthetic_model(
    seed: int, num_leaves: int, zero_as_missing: bool, use_missing: bool
) -> tuple[lgb.Booster, np.ndarray]:
    """A small binary model on data with NaNs, exact zeros and a 40-level categorical."""
    rng = np.random.default_rng(seed)
    n = 3000
    numeric = rng.normal(size=(n, 3))
    numeric[rng.random((n, 3)) < 0.15] = np.nan
    numeric[rng.random((n, 3)) < 0.15] = 0.0
    category = rng.integers(0, 40, n).astype(np.float64)
    category[rng.random(n) < 0.1] = np.nan
    X = np.column_stack([numeric, category])
    logit = np.nan_to_num(numeric[:, 0]) - 0.5 * np.isnan(numeric[:, 1]) + (category % 7 == 3)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    params = {
        "objective": "binary",
        "num_leaves": num_leaves,
        "min_data_in_leaf": 20,
        "max_cat_to_onehot": 4,
        "min_data_per_group": 5,
        "cat_smooth": 1.0,
        "zero_as_missing": zero_as_missing,
        "use_missing": use_missing,
        "verbose": -1,
        "seed": seed,
    }
    data = lgb.Dataset(X, y, categorical_feature=[3], params=params)
    return lgb.train(params, data, num_boost_round=40), X


def awkward_rows(X: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Training rows, and the same with NaNs, zeros, negatives, tiny values and unseen or
    fractional category codes planted."""
    rows = X[:200].copy()
    planted = rows.copy()
    mask = rng.random(planted.shape) < 0.3
    choices = np.array([np.nan, 0.0, -0.0, -3.0, 1e-40, 1e6, 39.0, 40.0, 99.0, 2.5, -1.0])
    planted[mask] = rng.choice(choices, size=int(mask.sum()))
    return np.vstack([rows, planted])


@pytest.mark.parametrize(
    ("num_leaves", "zero_as_missing", "use_missing"),
    [(7, False, True), (7, True, True), (9, False, False), (4, False, True), (2, True, True)],
)
def test_every_kind_of_split_equals_pred_contrib(
    num_leaves: int, zero_as_missing: bool, use_missing: bool
) -> None:
    booster, X = synthetic_model(num_leaves, num_leaves, zero_as_missing, use_missing)
    table = path_table(booster)
    assert table is not None
    model = booster.dump_model()
    decisions = {
        (node.get("decision_type"), node.get("missing_type"))
        for tree in model["tree_info"]
        for node in _nodes(tree["tree_structure"])
    }
    assert ("==", "NaN") in decisions or ("==", "None") in decisions  # categorical splits
    rows = awkward_rows(X, np.random.default_rng(num_leaves))
    np.testing.assert_allclose(table.contributions(rows), reference(booster, rows), atol=TOLERANCE)


def _nodes(node: dict) -> list[dict]:
    if "split_index" not in node:
        return []
    return [node, *_nodes(node["left_child"]), *_nodes(node["right_child"])]


def test_trees_too_big_are_not_tabulated() -> None:
    booster, _ = synthetic_model(0, MAX_NODES + 8, False, True)
    assert max(t["num_leaves"] for t in booster.dump_model()["tree_info"]) > MAX_NODES + 1
    assert path_table(booster) is None


@pytest.fixture(scope="module")
def world_model(world: World) -> tuple[lgb.Booster, int, np.ndarray]:
    scorer = world.scorer
    model = scorer.models[scorer.primary]
    snapshots = world.snapshots
    X = scorer.engine.transform(
        snapshots.head(300),
        world.tables["leads"],
        world.tables["touches"],
        world.tables["sales_events"],
    )
    return model.booster, model.best_iteration, X


def test_trained_model_equals_pred_contrib(
    world_model: tuple[lgb.Booster, int, np.ndarray],
) -> None:
    booster, best, X = world_model
    table = path_table(booster, best)
    assert table is not None
    np.testing.assert_allclose(
        table.contributions(X), reference(booster, X, best), atol=TOLERANCE, rtol=0
    )


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_any_row_equals_pred_contrib(
    world_model: tuple[lgb.Booster, int, np.ndarray], data: st.DataObject
) -> None:
    booster, best, X = world_model
    base = X[data.draw(st.integers(0, len(X) - 1))].copy()
    values = st.one_of(
        st.just(np.nan), st.just(0.0), st.floats(-1e6, 1e6), st.integers(-2, 80).map(float)
    )
    planted = data.draw(arrays(np.float64, base.shape, elements=values))
    mask = data.draw(arrays(np.bool_, base.shape))
    row = np.where(mask, planted, base)[None, :]
    table = path_table(booster, best)
    assert table is not None
    np.testing.assert_allclose(
        table.contributions(row), reference(booster, row, best), atol=TOLERANCE, rtol=0
    )


def test_scorer_carries_its_table_and_a_lead_alone_equals_its_batch_row(world: World) -> None:
    scorer = world.scorer
    tables = world.tables
    X = scorer.engine.transform(
        world.snapshots.head(600), tables["leads"], tables["touches"], tables["sales_events"]
    )
    # A pickled scorer carries the table: serving never builds it on a request.
    restored = pickle.loads(pickle.dumps(scorer))
    assert "shap_table" in vars(restored)
    batch = restored.contributions(X)  # more rows than one chunk
    alone = np.vstack([restored.contributions(X[i : i + 1]) for i in range(0, 600, 37)])
    assert np.array_equal(alone, batch[::37])  # the same bits, alone or in a batch
    model = scorer.models[scorer.primary]
    expected = model.tree_weight * reference(model.booster, X, model.best_iteration)
    if model.linear is not None:  # a blend: its linear part's exact SHAP values beside
        expected += model.linear_weight * model.linear.contributions(X)
    np.testing.assert_allclose(batch, expected, atol=TOLERANCE, rtol=0)


def test_threads_give_the_same_bits_as_one(
    world_model: tuple[lgb.Booster, int, np.ndarray],
) -> None:
    booster, best, X = world_model
    table = path_table(booster, best)
    assert table is not None
    rows = np.vstack([X] * 4)  # several chunks, so the threads really share the work
    assert len(rows) > 3 * CHUNK_ROWS
    one = table.contributions(rows, threads=1)
    for threads in (0, 2, 3):
        assert np.array_equal(table.contributions(rows, threads=threads), one)
