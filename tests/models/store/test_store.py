"""Recording and reading scores and feedback, the same tests on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.exc import IntegrityError

from models.store import FeedbackRecord, ScoreRecord, ScoreStore
from tests.models.store.samples import T0, score

HOUR = dt.timedelta(hours=1)


def test_a_record_comes_back_as_it_went_in(store: ScoreStore) -> None:
    record = score("L1", probability=0.42, source="batch")
    assert store.record([record]) == 1
    [stored] = store.history("L1")
    assert stored.id >= 1
    assert {f.name: getattr(stored, f.name) for f in dataclasses.fields(record)} == {
        f.name: getattr(record, f.name) for f in dataclasses.fields(record)
    }
    assert stored.positive_reasons == ("attended a webinar 3 days ago", "seniority: vp")
    assert stored.negative_reasons == ("no demo requests",)
    assert stored.probabilities == {"converted": 0.42, "accepted": 0.84}


def test_timestamps_come_back_utc_aware_whatever_zone_went_in(store: ScoreStore) -> None:
    kolkata = dt.timezone(dt.timedelta(hours=5, minutes=30))
    los_angeles = dt.timezone(dt.timedelta(hours=-8))
    scored_at = dt.datetime(2026, 3, 1, 15, 0, 0, 123456, tzinfo=kolkata)
    as_of = dt.datetime(2026, 2, 28, 16, 0, tzinfo=los_angeles)
    store.record([score("L1", at=scored_at, as_of=as_of)])
    [stored] = store.history("L1")
    assert stored.scored_at.tzinfo == dt.UTC
    assert stored.scored_at == scored_at
    assert stored.scored_at.hour == 9
    assert stored.scored_at.minute == 30
    assert stored.scored_at.microsecond == 123456
    assert stored.as_of == as_of
    assert stored.as_of.tzinfo == dt.UTC
    frame = store.scores_between(T0 - HOUR, T0 + HOUR)
    assert str(frame["scored_at"].dtype) == "datetime64[us, UTC]"
    assert frame["scored_at"].iloc[0] == pd.Timestamp(scored_at)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    moment=st.datetimes(
        min_value=dt.datetime(1990, 1, 1),
        max_value=dt.datetime(2100, 1, 1),
        timezones=st.sampled_from(
            [dt.UTC, *(dt.timezone(dt.timedelta(minutes=m)) for m in (-720, -210, 330, 840))]
        ),
    )
)
def test_any_aware_instant_round_trips(store: ScoreStore, moment: dt.datetime) -> None:
    lead = f"tz-{moment.isoformat()}"
    store.record([score(lead, at=moment, as_of=moment)])
    [stored] = store.history(lead)
    assert stored.scored_at == moment
    assert stored.scored_at.utcoffset() == dt.timedelta(0)
    assert stored.as_of == moment


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        score("L1", at=dt.datetime(2026, 3, 1, 9, 30))


def test_invalid_records_are_refused_when_made() -> None:
    with pytest.raises(ValueError, match="score must be within"):
        score("L1", score_value=101)
    with pytest.raises(ValueError, match="source must be one of"):
        score("L1", source="csv")
    with pytest.raises(ValueError, match="probability must be within"):
        score("L1", probability=float("nan"), score_value=0)


def test_record_is_one_transaction(store: ScoreStore) -> None:
    good = score("L1")
    bad = score("L2")
    object.__setattr__(bad, "score", 150)  # past the dataclass check: the CHECK must refuse it
    with pytest.raises(IntegrityError):
        store.record([good, bad])
    assert store.history("L1") == []
    assert store.record([]) == 0


def test_history_is_newest_first_and_pages(store: ScoreStore) -> None:
    # inserted out of order, with two scores at the same instant (insertion order breaks ties)
    times = [T0 + 3 * HOUR, T0, T0 + HOUR, T0 + HOUR, T0 + 2 * HOUR]
    store.record([score("L1", at=t, probability=i / 10) for i, t in enumerate(times)])
    store.record([score("L2", at=T0 + 5 * HOUR)])
    history = store.history("L1")
    assert [s.scored_at for s in history] == sorted(times, reverse=True)
    assert [s.probability for s in history] == [0.0, 0.4, 0.3, 0.2, 0.1]
    assert [s.id for s in store.history("L1", limit=2, offset=1)] == [s.id for s in history[1:3]]
    assert store.history("L1", limit=10, offset=5) == []
    assert store.history("L1", limit=0) == []
    assert store.history("nobody") == []
    with pytest.raises(ValueError, match="≥ 0"):
        store.history("L1", limit=-1)


def test_latest_gives_each_leads_latest_score(store: ScoreStore) -> None:
    store.record(
        [
            score("L1", at=T0, probability=0.1),
            score("L1", at=T0 + 2 * HOUR, probability=0.2),
            score("L1", at=T0 + HOUR, probability=0.3),
            score("L2", at=T0, probability=0.4),
            score("L2", at=T0, probability=0.5),  # same instant: the later insert wins
        ]
    )
    latest = store.latest(["L1", "L2", "L3", "L1"])
    assert set(latest) == {"L1", "L2"}
    assert latest["L1"].probability == 0.2
    assert latest["L2"].probability == 0.5
    before = store.latest(["L1", "L2"], before=T0 + 2 * HOUR)
    assert before["L1"].probability == 0.3
    assert "L2" in before
    assert store.latest(["L2"], before=T0) == {}
    assert store.latest([]) == {}


def test_latest_handles_more_leads_than_one_query_takes(store: ScoreStore) -> None:
    from models.store import store as store_module

    leads = [f"L{i}" for i in range(store_module.IN_CHUNK + 10)]
    store.record([score(lead, probability=0.25) for lead in leads])
    latest = store.latest(leads)
    assert len(latest) == len(leads)
    assert latest[leads[-1]].lead_id == leads[-1]


def test_scores_between_is_a_half_open_range_oldest_first(store: ScoreStore) -> None:
    store.record([score(f"L{i}", at=T0 + i * HOUR, probability=i / 10) for i in range(5)])
    frame = store.scores_between(T0 + HOUR, T0 + 3 * HOUR)
    assert frame["lead_id"].tolist() == ["L1", "L2"]
    assert frame["probability"].tolist() == [0.1, 0.2]
    assert frame["handoff"].dtype == bool
    assert frame["reasons"].iloc[0] == {
        "positive": ["attended a webinar 3 days ago", "seniority: vp"],
        "negative": ["no demo requests"],
    }
    assert frame["probabilities"].iloc[1] == {"converted": 0.2, "accepted": 0.4}
    empty = store.scores_between(T0 + 10 * HOUR, T0 + 11 * HOUR)
    assert empty.empty
    assert list(empty.columns) == list(frame.columns)
    assert str(empty["scored_at"].dtype) == "datetime64[us, UTC]"


def test_feedback_round_trips(store: ScoreStore) -> None:
    zone = dt.timezone(dt.timedelta(hours=-5))
    given_at = dt.datetime(2026, 3, 2, 8, 0, tzinfo=zone)
    entry = FeedbackRecord(
        lead_id="L1",
        verdict="rejected",
        occurred_at=given_at,
        reason="no budget",
        note="Budget frozen until Q3.",
        actor="ana@sales",
    )
    stored = store.add_feedback(entry)
    assert stored.id >= 1
    assert stored.recorded_at.tzinfo == dt.UTC
    store.add_feedback(FeedbackRecord(lead_id="L2", verdict="contacted", occurred_at=T0))
    store.add_feedback(FeedbackRecord(lead_id="L1", verdict="accepted", occurred_at=T0 + HOUR))
    frame = store.feedback()
    assert frame["lead_id"].tolist() == ["L2", "L1", "L1"]
    assert frame["verdict"].tolist() == ["contacted", "accepted", "rejected"]
    last = frame.iloc[-1]
    assert last["occurred_at"] == pd.Timestamp(given_at)
    assert str(frame["occurred_at"].dtype) == "datetime64[us, UTC]"
    assert (last["reason"], last["note"], last["actor"]) == (
        "no budget",
        "Budget frozen until Q3.",
        "ana@sales",
    )
    assert last["id"] == stored.id
    assert pd.isna(frame.iloc[0]["note"])
    assert store.feedback(since=T0 + HOUR)["verdict"].tolist() == ["accepted", "rejected"]


def test_feedback_is_checked_when_made() -> None:
    with pytest.raises(ValueError, match="verdict must be one of"):
        FeedbackRecord(lead_id="L1", verdict="maybe", occurred_at=T0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="note is 2001 characters"):
        FeedbackRecord(lead_id="L1", verdict="accepted", occurred_at=T0, note="x" * 2001)


def test_the_database_bounds_a_note_too(store: ScoreStore) -> None:
    entry = FeedbackRecord(lead_id="L1", verdict="accepted", occurred_at=T0)
    object.__setattr__(entry, "note", "x" * 2001)
    with pytest.raises(IntegrityError):
        store.add_feedback(entry)


def test_a_store_is_reopened_with_its_data(store_url: str) -> None:
    with ScoreStore(store_url) as first:
        first.record([score("L1")])
    with ScoreStore(store_url) as second:
        assert len(second.history("L1")) == 1


def test_scores_record_the_models_name_and_version(store: ScoreStore) -> None:
    record = dataclasses.replace(score("L1"), model_name="other", model_version="12")
    assert isinstance(record, ScoreRecord)
    store.record([record])
    [stored] = store.history("L1")
    assert (stored.model_name, stored.model_version) == ("other", "12")
