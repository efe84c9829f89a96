"""The one scoring API (``LeadScorer.summarise`` / ``explain`` / ``rank``) on the session's
trained world: the score formula, grade floors, handoff, the queue order, and reasons that add
up to the model's own log-odds."""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.scorer import GRADES, LeadScorer, score_of
from tests.serving.world import World


@pytest.fixture(scope="module")
def scorer(world: World) -> LeadScorer:
    return world.scorer


@pytest.fixture(scope="module")
def rows(world: World, scorer: LeadScorer) -> np.ndarray:
    return scorer.engine.matrix_from_frame(world.snapshots.iloc[::11])


@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=50))
def test_the_score_is_the_probability_in_percent(p: list[float]) -> None:
    scores = score_of(np.array(p))
    assert scores.dtype == np.int64
    assert ((scores >= 0) & (scores <= 100)).all()
    assert (np.abs(scores - np.array(p) * 100) <= 0.5 + 1e-9).all()
    order = np.argsort(p, kind="stable")
    assert (np.diff(scores[order]) >= 0).all()  # monotone


def test_summary_follows_the_definition(scorer: LeadScorer, rows: np.ndarray) -> None:
    summary = scorer.summarise(rows)
    primary = summary.probabilities[scorer.primary]
    assert set(summary.probabilities) == set(scorer.targets) == {"accepted", "converted"}
    assert (summary.score == score_of(primary)).all()
    floors = scorer.definition.grades
    for grade, p in zip(summary.grade, primary, strict=True):
        expected = next((g for g in GRADES[:-1] if p >= floors[g]), "D")
        assert grade == expected
    cutoff = GRADES.index(scorer.definition.handoff_min_grade)
    assert summary.handoff.tolist() == [GRADES.index(g) <= cutoff for g in summary.grade]
    assert len(set(summary.grade)) > 1  # the test sees more than one grade
    frame = summary.frame()
    assert list(frame.columns) == [
        "p_accepted",
        "p_converted",
        "score",
        "grade",
        "handoff",
        "fit_score",
        "engagement_score",
        "grid",
        "segment",
    ]
    assert len(frame) == len(rows)
    assert set(frame["segment"]) == {"pooled"}  # a model without segments


def test_grade_floors_are_inclusive(scorer: LeadScorer) -> None:
    floors = scorer.definition.grades
    p = np.array([floors["A"], np.nextafter(floors["A"], 0), floors["C"], 0.0, 1.0])
    assert scorer.grade(p).tolist() == ["A", "B", "C", "D", "A"]


def test_one_thread_and_all_cores_agree(scorer: LeadScorer, rows: np.ndarray) -> None:
    one, many = scorer.summarise(rows, num_threads=1), scorer.summarise(rows, num_threads=0)
    for target in scorer.targets:
        np.testing.assert_array_equal(one.probabilities[target], many.probabilities[target])
    assert scorer.explain(rows[:20], num_threads=1) == scorer.explain(rows[:20], num_threads=0)


def test_empty_input(scorer: LeadScorer) -> None:
    empty = np.zeros((0, len(scorer.engine.feature_names_)))
    summary = scorer.summarise(empty)
    assert len(summary) == 0
    assert summary.frame().empty
    assert scorer.explain(empty) == []
    assert scorer.rank([], np.zeros(0)).tolist() == []


def test_rank_is_by_probability_then_lead_id(scorer: LeadScorer) -> None:
    ids = ["L3", "L1", "L2", "L0", "L9"]
    p = np.array([0.2, 0.5, 0.2, 0.7, 0.5])
    order = scorer.rank(ids, p)
    assert [ids[i] for i in order] == ["L0", "L1", "L9", "L2", "L3"]


@given(st.lists(st.tuples(st.sampled_from("abcdef"), st.floats(0, 1)), max_size=30))
def test_rank_is_a_sorted_permutation(pairs: list[tuple[str, float]]) -> None:
    ids = [i for i, _ in pairs]
    p = np.array([v for _, v in pairs])
    order = LeadScorer.rank(None, ids, p)  # type: ignore[arg-type]  # rank reads no state
    assert sorted(order.tolist()) == list(range(len(pairs)))
    keys = [(-p[i], ids[i]) for i in order]
    assert keys == sorted(keys)


def test_reasons_add_up_to_the_models_log_odds(scorer: LeadScorer, rows: np.ndarray) -> None:
    """Nothing is lost between SHAP and what sales reads: the business fields' totals plus the
    features that are never reasons (the lead's own stage counts) are the primary model's raw
    log-odds (a blend's trees and linear part together) minus its base value, and each reason
    shown carries its whole field's total."""
    model = scorer.models[scorer.primary]
    table = scorer.reason_table
    head = rows[:40]
    raw = model.margin(head)
    contributions, bias = scorer.contributions(head), model.expected_value
    totals = table.totals(contributions)
    never = contributions[:, table.field_of < 0].sum(axis=1)
    assert np.allclose(totals.sum(axis=1) + never, raw - bias, atol=1e-9)
    fields = len(table.fields)
    for i, (positive, negative) in enumerate(scorer.explain(head, count=fields)):
        for reason in positive + negative:
            assert reason.contribution == totals[i, table.fields.index(reason.field)]
        assert all(r.contribution > 0 for r in positive)
        assert all(r.contribution < 0 for r in negative)
        assert [r.contribution for r in positive] == sorted(
            (r.contribution for r in positive), reverse=True
        )
        assert len({r.field for r in positive + negative}) == len(positive + negative)


def test_fewer_reasons_are_the_strongest_ones(scorer: LeadScorer, rows: np.ndarray) -> None:
    three = scorer.explain(rows[:30], count=3)
    one = scorer.explain(rows[:30], count=1)
    assert all(a[0][:1] == b[0] and a[1][:1] == b[1] for a, b in zip(three, one, strict=True))
    assert scorer.explain(rows[:5], count=0) == [([], [])] * 5


def test_the_reason_table_is_rebuilt_after_unpickling(scorer: LeadScorer, rows: np.ndarray) -> None:
    before = scorer.explain(rows[:10])
    assert "reason_table" in scorer.__dict__  # built once per scorer, then reused
    copy = pickle.loads(pickle.dumps(scorer))
    assert "reason_table" not in copy.__dict__  # derived state does not travel
    assert copy.explain(rows[:10]) == before


def test_the_definition_travels_and_reads_for_people(scorer: LeadScorer) -> None:
    definition = scorer.definition
    assert dataclasses.asdict(definition)["target"] == scorer.primary == "converted"
    assert "within 90 days" in definition.text
    assert definition.as_dict()["text"] == definition.text
