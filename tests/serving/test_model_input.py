"""Request → model input: a lead sent to the API gets the answer the batch path gives the same
lead at the same as_of (one-lead features == batch features), alone or in a batch."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd
import pytest

from features import contract
from features.engine.engine import FeatureEngine
from models.scorer import Definition, LeadScorer
from serving.holder import LoadedModel, load_model, read_scorer, warm_up
from serving.model_input import LeadInputError, ModelInput, answers, unseen_fields
from tests.serving.world import World, batch_answers, open_lead_ids, request_for, requests_for


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
        assert answer.pop("unseen") == []  # the model's own data: every value has a code
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


# ------------------------------------------------- what depends on the served model
def _request(world: World, seed: int = 7) -> dict[str, Any]:
    """A lead created before as_of, as the API takes it."""
    as_of = pd.Timestamp("2025-02-01", tz="UTC")
    created = world.tables["leads"].set_index("lead_id")["created_at"]
    lead_id = next(i for i in open_lead_ids(world.tables, 20, seed=seed) if created[i] < as_of)
    return request_for(world.tables, lead_id, as_of)


def _prepare(inputs: ModelInput, body: dict[str, Any]) -> Any:
    as_of = pd.Timestamp(body["as_of"]).to_pydatetime()
    return inputs.prepare(body["lead"], body["touches"], body["sales_events"], as_of)


def test_unknown_lead_fields_are_refused_with_the_closest(
    world: World, loaded: LoadedModel
) -> None:
    body = _request(world)
    body["lead"]["senority"] = body["lead"].pop("seniority", "director")
    with pytest.raises(LeadInputError) as error:
        _prepare(loaded.inputs, body)
    assert error.value.loc == ("senority",)
    assert "did you mean 'seniority'?" in error.value.message
    assert "no other attribute" in error.value.message  # this model declares no extras


@pytest.fixture(scope="module")
def flat_inputs() -> ModelInput:
    """The input side of a model trained on a flat export: its own categorical and numeric
    columns besides the contract's (a real fitted engine; ModelInput reads only that)."""
    leads = pd.DataFrame(
        {
            "lead_id": [f"row-{i}" for i in range(40)],
            "created_at": pd.date_range("2020-01-01", periods=40, freq="min", tz="UTC"),
            "country": ["DE", "FR"] * 20,
            "marital": ["married", "single"] * 20,
            "age": np.arange(40, dtype=float),
        }
    )
    engine = FeatureEngine(
        min_category_count=1, extra_categorical=("marital",), extra_numeric=("age",)
    ).fit({"leads": leads}, leads["created_at"].max())
    definition = Definition("converted", 90, {"converted": ("won",)}, {"A": 0.5}, "A")
    return ModelInput(LeadScorer(engine, {}, definition))


def test_a_flat_models_own_fields_are_accepted_others_refused(flat_inputs: ModelInput) -> None:
    lead: dict[str, Any] = {"lead_id": "x", "created_at": "2020-02-01T00:00:00Z"}
    lead |= {"marital": "single", "age": 3}
    prepared = flat_inputs.prepare(lead, [], [], dt.datetime(2020, 2, 2, tzinfo=dt.UTC))
    assert prepared.unseen == ()
    with pytest.raises(LeadInputError) as error:
        flat_inputs.prepare({**lead, "maritl": "single"}, [], [], None)
    assert error.value.loc == ("maritl",)
    assert "did you mean 'marital'?" in error.value.message
    assert "its own: age, marital" in error.value.message


def test_contract_lead_fields_the_model_does_not_use_are_accepted(
    flat_inputs: ModelInput,
) -> None:
    lead = {"lead_id": "x", "created_at": "2020-02-01T00:00:00Z", "country": "DE"}
    unused = [c for c in contract.LEADS.column_names if c not in lead]
    assert "seniority" in unused
    assert "seniority" not in flat_inputs.categoricals
    prepared = flat_inputs.prepare(lead | {c: "x" for c in unused}, [], [], None)
    assert prepared.unseen == ()  # nor listed: the model has no vocabulary for them


def test_unseen_values_are_listed_as_the_engine_reads_them(flat_inputs: ModelInput) -> None:
    lead: dict[str, Any] = {"lead_id": "x", "created_at": "2020-02-01T00:00:00Z"}
    lead |= {"country": " Narnia ", "marital": "widowed", "age": 3}
    prepared = flat_inputs.prepare(lead, [], [], None)
    assert prepared.unseen == (
        {"field": "country", "value": "Narnia"},
        {"field": "marital", "value": "widowed"},
    )
    known = flat_inputs.prepare({**lead, "country": " DE", "marital": ""}, [], [], None)
    assert known.unseen == ()  # stripped like the engine does; empty is missing, not unseen
    assert unseen_fields([prepared, prepared, known]) == ["country", "marital"] * 2


def test_unseen_campaigns_accounts_and_countries_reach_the_answer(
    world: World, loaded: LoadedModel
) -> None:
    body = _request(world)
    body["lead"] |= {"country": "Narnia", "campaign_id": "C-NEW", "account_id": "A-NEW"}
    touch = {"occurred_at": body["lead"]["created_at"], "touch_type": "web_visit"}
    body["touches"] = [touch | {"campaign_id": "C-GONE"}] * 2
    answer = answers(loaded.scorer, [_prepare(loaded.inputs, body)], loaded.ref)[0]
    assert answer["unseen"] == [
        {"field": "country", "value": "Narnia"},
        {"field": "campaign_id", "value": "C-NEW"},
        {"field": "account_id", "value": "A-NEW"},
        {"field": "touches.campaign_id", "value": "C-GONE"},  # once, however many touches
    ]
    assert 0 <= answer["score"] <= 100  # still scored


def test_many_requests_at_once_equal_one_request_each(world: World) -> None:
    """The tests' batch builder of API requests (the weekly loop's) is :func:`request_for`
    point by point, its first snapshots moved to the lead's created_at."""
    tables = world.tables
    points = world.snapshots.sample(150, random_state=3)[["lead_id", "as_of"]]
    created = tables["leads"].set_index(tables["leads"]["lead_id"].astype(str))["created_at"]
    many = requests_for(tables, points)
    for body, (lead_id, as_of) in zip(many, points.itertuples(index=False), strict=True):
        when = max(pd.Timestamp(as_of), pd.Timestamp(created[str(lead_id)]))
        one = request_for(tables, str(lead_id), when)
        assert body["lead"] == one["lead"]
        assert pd.Timestamp(body["as_of"]) == pd.Timestamp(one["as_of"])
        for name in ("touches", "sales_events"):
            assert body[name] == one[name], name
