"""Unit contracts of the two baselines (models/baselines.py) on hand-built feature matrices."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.metrics import log_loss, roc_auc_score

from features import contract
from features.params import Params
from models.baselines import PointsScore
from models.linear import LinearModel

NAN = np.nan

# A feature matrix shaped like the engine's: `{touch}_all` counts, a windowed count the rules
# must ignore, and categorical codes (0..len(vocabulary)-1 known, len(vocabulary) unseen, NaN
# missing), as features/engine/engine.py encodes them.
NAMES = [
    "demo_request_all",
    "email_open_all",
    "demo_request_7d",
    "unsubscribe_all",
    "seniority",
    "department",
    "account_size",
]
VOCABULARIES = {
    "seniority": ("c_level", "director", "manager", "student", "vp"),
    "department": ("hr", "it", "sales"),
}
TOUCH_POINTS = {"demo_request": 30.0, "email_open": 1.0, "unsubscribe": -40.0, "webinar": 15.0}
ATTRIBUTE_POINTS = {
    "seniority": {"c_level": 20.0, "vp": 15.0, "director": 10.0, "student": -20.0},
    "department": {"it": 5.0, "hr": -5.0},
    "industry": {"software": 50.0},  # not a column here: ignored
}
SENIORITY = {v: float(i) for i, v in enumerate(VOCABULARIES["seniority"])}
DEPARTMENT = {v: float(i) for i, v in enumerate(VOCABULARIES["department"])}
UNSEEN_SENIORITY = float(len(VOCABULARIES["seniority"]))
UNSEEN_DEPARTMENT = float(len(VOCABULARIES["department"]))


def _points_score(
    touch_points: dict[str, float] | None = None,
    attribute_points: dict[str, dict[str, float]] | None = None,
) -> PointsScore:
    return PointsScore(
        NAMES,
        VOCABULARIES,
        TOUCH_POINTS if touch_points is None else touch_points,
        ATTRIBUTE_POINTS if attribute_points is None else attribute_points,
    )


# ------------------------------------------------------------------ points by hand


def test_points_add_the_configured_points_per_rule() -> None:
    s, d = SENIORITY, DEPARTMENT
    X = np.array(
        [
            # demo_all, open_all, demo_7d, unsub_all, seniority, department, account_size
            [1, 3, 5, 0, s["c_level"], d["it"], 100],  # 30 + 3 + 20 + 5 (7d count ignored)
            [0, 0, 0, 0, s["manager"], d["sales"], 0],  # in vocabulary, no rule: 0
            [2, 10, 0, 1, s["student"], d["hr"], 7],  # 60 + 10 − 40 − 20 − 5
            [0, 0, 9, 0, s["vp"], d["it"], 5],  # 15 + 5
            [NAN, NAN, NAN, NAN, NAN, NAN, NAN],  # missing everything: 0
            [0, 0, 0, 0, UNSEEN_SENIORITY, UNSEEN_DEPARTMENT, 1],  # unseen categories: 0
        ],
        dtype=np.float64,
    )
    np.testing.assert_array_equal(_points_score().points(X), [58.0, 0.0, 5.0, 20.0, 0.0, 0.0])


def test_points_are_linear_in_touch_counts() -> None:
    X = np.zeros((4, len(NAMES)))
    X[:, NAMES.index("demo_request_all")] = [0, 1, 2, 7]
    X[:, NAMES.index("seniority")] = NAN
    X[:, NAMES.index("department")] = NAN
    np.testing.assert_array_equal(_points_score().points(X), [0.0, 30.0, 60.0, 210.0])


def test_points_with_no_matching_rules_are_zero() -> None:
    score = PointsScore(["x", "y"], {}, {"demo_request": 30.0}, {"seniority": {"vp": 5.0}})
    np.testing.assert_array_equal(score.points(np.ones((3, 2))), np.zeros(3))


def test_repo_rules_reach_the_engine_feature_names(repo_params: Params) -> None:
    """Each rule in params.yaml scores its own column, with exactly the configured points."""
    rules = repo_params.rules
    assert rules.touch_points
    assert rules.attribute_points
    # Every touch rule names a contract touch type, so the engine emits its `{touch}_all`.
    assert set(rules.touch_points) <= set(contract.TOUCH_TYPES)

    touches = list(rules.touch_points)
    attributes = {a: tuple(sorted(table)) for a, table in rules.attribute_points.items()}
    names = [f"{t}_all" for t in touches] + list(attributes)
    score = PointsScore(names, attributes, rules.touch_points, rules.attribute_points)
    for i, touch in enumerate(touches):
        x = np.full((1, len(names)), NAN)  # attributes missing: 0 points
        x[0, : len(touches)] = 0.0
        x[0, i] = 1.0
        assert score.points(x)[0] == rules.touch_points[touch], touch
    for j, (attribute, vocabulary) in enumerate(attributes.items()):
        for code, value in enumerate(vocabulary):
            x = np.full((1, len(names)), NAN)
            x[0, len(touches) + j] = code
            assert score.points(x)[0] == rules.attribute_points[attribute][value], value


# ------------------------------------------------------------------ monotone in behaviour

positive_touches = [t for t, p in TOUCH_POINTS.items() if p > 0 and f"{t}_all" in NAMES]
counts = st.integers(0, 50).map(float) | st.just(NAN)


@st.composite
def feature_rows(draw: st.DrawFn) -> np.ndarray:
    n = draw(st.integers(1, 20))
    X = np.empty((n, len(NAMES)))
    for j, name in enumerate(NAMES):
        if name == "seniority":
            X[:, j] = draw(arrays(np.float64, n, elements=st.sampled_from([*range(6), NAN])))
        elif name == "department":
            X[:, j] = draw(arrays(np.float64, n, elements=st.sampled_from([*range(4), NAN])))
        else:
            X[:, j] = draw(arrays(np.float64, n, elements=counts))
    return X


@settings(max_examples=80, deadline=None)
@given(
    X=feature_rows(),
    touch=st.sampled_from(positive_touches),
    extra=st.integers(1, 20),
)
def test_more_of_a_positive_behaviour_never_lowers_the_score(
    X: np.ndarray, touch: str, extra: int
) -> None:
    score = _fitted_points_score()
    column = NAMES.index(f"{touch}_all")
    more = X.copy()
    more[:, column] = np.nan_to_num(more[:, column]) + extra

    before, after = score.points(X), score.points(more)
    np.testing.assert_allclose(after - before, extra * TOUCH_POINTS[touch])
    assert np.all(after >= before)
    p_before, p_after = score.predict_proba(X)[:, 1], score.predict_proba(more)[:, 1]
    assert np.all(p_after >= p_before)


@cache
def _points_data(n: int = 3_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Leads whose conversion odds rise with their points (plus noise)."""
    rng = np.random.default_rng(seed)
    X = np.empty((n, len(NAMES)))
    for j, name in enumerate(NAMES):
        if name in VOCABULARIES:
            X[:, j] = rng.integers(0, len(VOCABULARIES[name]) + 1, n)
        else:
            X[:, j] = rng.poisson(0.3 if name == "unsubscribe_all" else 1.5, n)
    X[rng.uniform(size=X.shape) < 0.05] = NAN
    points = _points_score().points(X)
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-(points - 40) / 15))).astype(np.float64)
    return X, y


@cache
def _fitted_points_score() -> PointsScore:
    return _points_score().fit(*_points_data())


def test_points_probability_is_a_probability_and_monotone_in_points() -> None:
    X, _ = _points_data()
    score = _fitted_points_score()
    assert score.link_.coef_[0, 0] > 0  # points predict conversion here
    proba = score.predict_proba(X)
    assert proba.shape == (len(X), 2)
    assert np.all((proba >= 0) & (proba <= 1))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    order = np.argsort(score.points(X), kind="stable")
    assert np.all(np.diff(proba[order, 1]) >= 0)
    # Equal points, equal probability.
    points = score.points(X)
    for value in np.unique(points)[:10]:
        assert np.ptp(proba[points == value, 1]) == 0


def test_points_score_scikit_learn_shape() -> None:
    X, y = _points_data()
    unfitted = _points_score()
    assert set(vars(unfitted)) == {
        "feature_names",
        "vocabularies",
        "touch_points",
        "attribute_points",
    }  # __init__ only stores its parameters
    fitted = unfitted.fit(X, y)
    assert fitted is unfitted
    assert all(k.endswith("_") for k in set(vars(fitted)) - set(vars(_points_score())))
    # Column 1 is the positive class (the link's classes are sorted labels).
    np.testing.assert_array_equal(fitted.link_.classes_, [0.0, 1.0])
    assert fitted.predict_proba(X[:1]).shape == (1, 2)
    assert roc_auc_score(y, fitted.predict_proba(X)[:, 1]) > 0.7


def test_points_score_is_deterministic() -> None:
    X, y = _points_data()
    a = _points_score().fit(X, y).predict_proba(X)
    b = _points_score().fit(X.copy(), y.copy()).predict_proba(X)
    np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------ logistic regression baseline

LOGISTIC_NAMES = ["visits", "noise", "spend", "channel", "region"]
LOGISTIC_CATEGORICAL = ["channel", "region"]


def _logistic_data(n: int = 2_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Separable-ish: heavy-tailed visits and the channel decide conversion."""
    rng = np.random.default_rng(seed)
    visits = rng.lognormal(1.0, 1.2, n)
    noise = rng.normal(size=n)
    spend = rng.normal(0, 1000, n)  # signed: exercises the signed log1p
    channel = rng.integers(0, 4, n).astype(np.float64)
    region = rng.integers(0, 3, n).astype(np.float64)
    z = 2.5 * (np.log1p(visits) - 1.3) + 1.5 * (channel == 2) - 1.5 * (channel == 0)
    y = (z > 0).astype(np.float64)
    return np.column_stack([visits, noise, spend, channel, region]), y


def _logistic(seed: int = 0) -> LinearModel:
    return LinearModel(LOGISTIC_NAMES, LOGISTIC_CATEGORICAL, c=1.0, seed=seed)


def test_logistic_beats_a_constant_on_separable_data() -> None:
    X, y = _logistic_data()
    X_test, y_test = _logistic_data(seed=1)
    proba = _logistic().fit(X, y).predict_proba(X_test)[:, 1]
    constant = np.full(len(y_test), y.mean())
    assert roc_auc_score(y_test, proba) > 0.97
    assert log_loss(y_test, proba) < 0.5 * log_loss(y_test, constant)


def test_logistic_scikit_learn_shape() -> None:
    X, y = _logistic_data()
    model = _logistic().fit(X, y)
    proba = model.predict_proba(X[:7])
    assert proba.shape == (7, 2)
    assert np.all((proba >= 0) & (proba <= 1))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def test_logistic_imputes_missing_numerics_with_the_train_median() -> None:
    X, y = _logistic_data()
    X[::7, 0] = NAN  # missing visits in train too
    model = _logistic().fit(X, y)
    query = _logistic_data(n=20, seed=2)[0]
    missing, filled = query.copy(), query.copy()
    missing[:, 0] = NAN
    filled[:, 0] = np.nanmedian(X[:, 0])
    np.testing.assert_allclose(
        model.predict_proba(missing), model.predict_proba(filled), rtol=0, atol=1e-15
    )


def test_logistic_missing_category_unseen_in_train_acts_as_an_unknown_code() -> None:
    X, y = _logistic_data()
    model = _logistic().fit(X, y)
    query = _logistic_data(n=20, seed=3)[0]
    missing, unknown = query.copy(), query.copy()
    missing[:, 3] = NAN
    unknown[:, 3] = 99.0
    np.testing.assert_allclose(
        model.predict_proba(missing), model.predict_proba(unknown), rtol=0, atol=1e-15
    )


def test_logistic_missing_category_seen_in_train_is_its_own_level() -> None:
    X, y = _logistic_data()
    rng = np.random.default_rng(4)
    missing_rows = rng.choice(len(X), 200, replace=False)
    X[missing_rows, 4] = NAN  # region missing: always converts
    y[missing_rows] = 1.0
    model = _logistic().fit(X, y)
    query = _logistic_data(n=50, seed=5)[0]
    with_region, without = query.copy(), query.copy()
    without[:, 4] = NAN
    assert np.all(model.predict_proba(without)[:, 1] > model.predict_proba(with_region)[:, 1])


def test_logistic_survives_all_missing_and_all_nan_rows() -> None:
    X, y = _logistic_data()
    X[:, 1] = NAN  # a numeric column with no value at all in train
    model = _logistic().fit(X, y)
    proba = model.predict_proba(np.full((3, len(LOGISTIC_NAMES)), NAN))
    assert np.all(np.isfinite(proba))
    assert np.all((proba > 0) & (proba < 1))


def test_logistic_is_deterministic() -> None:
    X, y = _logistic_data()
    a = _logistic(seed=0).fit(X, y).predict_proba(X)
    b = _logistic(seed=0).fit(X.copy(), y.copy()).predict_proba(X)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("categorical", [[], ["channel", "region", "not_a_feature"]])
def test_logistic_categorical_selection_by_name(categorical: list[str]) -> None:
    X, y = _logistic_data(n=500)
    model = LinearModel(LOGISTIC_NAMES, categorical, c=1.0, seed=0).fit(X, y)
    assert model.predict_proba(X).shape == (500, 2)
