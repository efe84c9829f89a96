"""The serving path answers exactly like ``LeadScorer.score_lead``, alone or in batches."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd
import pytest

from models.reasons import top_reasons
from serving.holder import LoadedModel, load_model, read_scorer, warm_up
from serving.scoring import FastScorer, LeadInputError
from tests.serving.world import World, open_lead_ids, request_for


@pytest.fixture(scope="module")
def loaded(world: World) -> LoadedModel:
    return load_model(str(world.bundle))


def _expected(world: World, body: dict[str, Any]) -> Any:
    return world.scorer.score_lead(
        body["lead"], body["touches"], body["sales_events"], as_of=body.get("as_of")
    )


def test_answers_equal_score_lead(world: World, loaded: LoadedModel) -> None:
    tables = world.tables
    created = pd.to_datetime(tables["leads"]["created_at"], utc=True)
    fast = loaded.fast
    for i, lead_id in enumerate(open_lead_ids(tables, 60, seed=1)):
        as_of = created.quantile(0.3 + 0.01 * i).floor("min")
        body = request_for(tables, lead_id, as_of)
        prepared = fast.prepare(body["lead"], body["touches"], body["sales_events"], as_of)
        got = fast.answers([prepared], loaded.ref)[0]
        expected = _expected(world, body)
        assert {t: got[f"p_{t}"] for t in fast.targets} == expected.probabilities
        assert (got["score"], got["grade"], got["handoff"]) == (
            expected.score,
            expected.grade,
            expected.handoff,
        )
        assert [r["text"] for r in got["reasons_positive"]] == [
            r.text for r in expected.positive_reasons
        ]
        assert [r["contribution"] for r in got["reasons_negative"]] == [
            r.contribution for r in expected.negative_reasons
        ]


def test_batch_answers_equal_single_answers(world: World, loaded: LoadedModel) -> None:
    tables = world.tables
    fast = loaded.fast
    as_of = pd.Timestamp("2025-01-15", tz="UTC")
    bodies = [request_for(tables, i, as_of) for i in open_lead_ids(tables, 30, seed=2)]
    prepared = [fast.prepare(b["lead"], b["touches"], b["sales_events"], as_of) for b in bodies]
    together = fast.answers(prepared, loaded.ref)
    alone = [fast.answers([p], loaded.ref)[0] for p in prepared]
    assert together == alone


def test_reason_table_equals_top_reasons(world: World, loaded: LoadedModel) -> None:
    scorer = world.scorer
    X = scorer.engine.matrix_from_frame(world.snapshots.iloc[::7])
    model = scorer.models[scorer.definition.target]
    contributions = np.asarray(
        model.booster.predict(X, num_iteration=model.best_iteration, pred_contrib=True)
    )[:, :-1]
    spec = scorer.engine.features_
    categories = {n: scorer.engine.vocabulary(n) for n in scorer.engine.categorical_features_}
    for count in (1, 3, 5):
        for i in range(len(X)):
            expected = top_reasons(
                contributions[i],
                X[i],
                scorer.engine.feature_names_,
                [f.business_field for f in spec],
                [f.description for f in spec],
                categories,
                count,
            )
            assert loaded.fast.reasons.top(contributions[i], X[i], count) == expected


def test_as_of_defaults_to_now(world: World, loaded: LoadedModel) -> None:
    body = request_for(world.tables, open_lead_ids(world.tables, 1)[0])
    before = dt.datetime.now(dt.UTC)
    prepared = loaded.fast.prepare(body["lead"], body["touches"], body["sales_events"], None)
    assert before <= prepared.as_of <= dt.datetime.now(dt.UTC)


def test_numeric_features_of_flat_models_must_be_numbers(loaded: LoadedModel) -> None:
    fast = FastScorer(loaded.scorer)
    fast.numerics = frozenset({"age"})  # as a flat-export model would declare
    assert fast.coerce_lead({"age": " 41 "})["age"] == 41.0
    assert fast.coerce_lead({"age": True})["age"] == 1.0
    assert fast.coerce_lead({"age": None})["age"] is None
    for bad in ("forty", "nan", "inf"):
        with pytest.raises(LeadInputError) as error:
            fast.coerce_lead({"age": bad})
        assert error.value.loc == ("age",)


def test_ranking_is_by_primary_probability_then_id(world: World, loaded: LoadedModel) -> None:
    tables = world.tables
    fast = loaded.fast
    as_of = pd.Timestamp("2025-02-01", tz="UTC")
    bodies = [request_for(tables, i, as_of) for i in open_lead_ids(tables, 20, seed=4)]
    prepared = [fast.prepare(b["lead"], b["touches"], b["sales_events"], as_of) for b in bodies]
    prepared.append(prepared[0])  # a tie: same probability, same id
    order, summary = fast.ranking(prepared)
    p = summary.probabilities[fast.primary][order]
    assert (np.diff(p) <= 0).all()


def test_loading(world: World, tmp_path: Any) -> None:
    scorer, info = read_scorer(str(world.train))
    assert info.source == "pickle"
    assert info.name == "train"
    scorer, info = read_scorer(str(world.bundle))
    assert info.source == "bundle"
    assert len(info.version) == 32
    warm_up(FastScorer(scorer))
    from serving.holder import ModelLoadError

    with pytest.raises(ModelLoadError, match="not a registry URI"):
        read_scorer(str(tmp_path))
    with pytest.raises(ModelLoadError, match="expected models"):
        read_scorer("models:/only-a-name")
