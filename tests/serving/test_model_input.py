"""Request → model input: a lead sent to the API gets the answer the batch path gives the same
lead at the same as_of (one-lead features == batch features), alone or in a batch."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd
import pytest

from serving.holder import LoadedModel, load_model, read_scorer, warm_up
from serving.model_input import LeadInputError, ModelInput, answers
from tests.serving.world import World, batch_answers, open_lead_ids, request_for


@pytest.fixture(scope="module")
def loaded(world: World) -> LoadedModel:
    return load_model(str(world.bundle))


def test_api_answers_equal_the_batch_path(world: World, loaded: LoadedModel) -> None:
    tables = world.tables
    created = pd.to_datetime(tables["leads"]["created_at"], utc=True)
    ids = open_lead_ids(tables, 60, seed=1)
    stamps = [created.quantile(0.3 + 0.01 * i).floor("min") for i in range(len(ids))]
    got = []
    for lead_id, as_of in zip(ids, stamps, strict=True):
        body = request_for(tables, lead_id, as_of)
        prepared = loaded.inputs.prepare(body["lead"], body["touches"], body["sales_events"], as_of)
        answer = answers(loaded.scorer, [prepared], loaded.ref)[0]
        assert pd.Timestamp(answer.pop("as_of")) == as_of
        assert answer.pop("model") == loaded.ref
        got.append(answer)
    assert got == batch_answers(loaded.scorer, tables, ids, stamps)


def test_batch_answers_equal_single_answers(world: World, loaded: LoadedModel) -> None:
    tables = world.tables
    as_of = pd.Timestamp("2025-01-15", tz="UTC")
    bodies = [request_for(tables, i, as_of) for i in open_lead_ids(tables, 30, seed=2)]
    prepared = [
        loaded.inputs.prepare(b["lead"], b["touches"], b["sales_events"], as_of) for b in bodies
    ]
    together = answers(loaded.scorer, prepared, loaded.ref)
    alone = [answers(loaded.scorer, [p], loaded.ref)[0] for p in prepared]
    assert together == alone


def test_as_of_defaults_to_now(world: World, loaded: LoadedModel) -> None:
    body = request_for(world.tables, open_lead_ids(world.tables, 1)[0])
    before = dt.datetime.now(dt.UTC)
    prepared = loaded.inputs.prepare(body["lead"], body["touches"], body["sales_events"], None)
    assert before <= prepared.as_of <= dt.datetime.now(dt.UTC)


def test_numeric_features_of_flat_models_must_be_numbers(loaded: LoadedModel) -> None:
    inputs = ModelInput(loaded.scorer)
    inputs.numerics = frozenset({"age"})  # as a flat-export model would declare
    assert inputs.coerce_lead({"age": " 41 "})["age"] == 41.0
    assert inputs.coerce_lead({"age": True})["age"] == 1.0
    assert inputs.coerce_lead({"age": None})["age"] is None
    for bad in ("forty", "nan", "inf"):
        with pytest.raises(LeadInputError) as error:
            inputs.coerce_lead({"age": bad})
        assert error.value.loc == ("age",)


def test_ranked_answers_follow_the_scorer_rank(world: World, loaded: LoadedModel) -> None:
    tables = world.tables
    scorer = loaded.scorer
    as_of = pd.Timestamp("2025-02-01", tz="UTC")
    bodies = [request_for(tables, i, as_of) for i in open_lead_ids(tables, 20, seed=4)]
    prepared = [
        loaded.inputs.prepare(b["lead"], b["touches"], b["sales_events"], as_of) for b in bodies
    ]
    ranked = answers(scorer, prepared, loaded.ref, ranked=True)
    p = np.array([a[f"p_{scorer.primary}"] for a in ranked])
    assert (np.diff(p) <= 0).all()
    assert sorted(a["lead_id"] for a in ranked) == sorted(p.lead_id for p in prepared)
    kept = answers(scorer, prepared, loaded.ref, ranked=True, capacity=5)
    assert kept == ranked[:5]


def test_loading(world: World, tmp_path: Any) -> None:
    scorer, info = read_scorer(str(world.train))
    assert info.source == "pickle"
    assert info.name == "train"
    scorer, info = read_scorer(str(world.bundle))
    assert info.source == "bundle"
    assert len(info.version) == 32
    warm_up(scorer, ModelInput(scorer))
    from models.packaging.loading import ModelLoadError

    with pytest.raises(ModelLoadError, match="not a registry URI"):
        read_scorer(str(tmp_path))
    with pytest.raises(ModelLoadError, match="expected models"):
        read_scorer("models:/only-a-name")
