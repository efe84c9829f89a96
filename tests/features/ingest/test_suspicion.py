"""Feature columns whose names sound post-outcome: a warning unless declared post_outcome."""

from __future__ import annotations

import logging

import pytest

from features.ingest.suspicion import (
    POST_OUTCOME_WORDS,
    matched_words,
    name_words,
    suspicious_names,
    warn_suspicious_names,
)
from features.params import LeakageParams


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("Lead Quality", ["lead", "quality"]),
        ("lead_quality", ["lead", "quality"]),
        ("LeadQuality", ["lead", "quality"]),
        ("HTTPStatus", ["http", "status"]),
        ("emp.var.rate", ["emp", "var", "rate"]),
        ("Tags", ["tags"]),
    ],
)
def test_name_words(name: str, words: list[str]) -> None:
    assert name_words(name) == words


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Tags", ("tag",)),  # a plural of a vocabulary word
        ("Lead Quality", ("quality",)),
        ("Lead Stage", ("stage",)),
        ("Lost Reason", ("reason", "lost")),
        ("Asymmetrique Activity Score", ("score",)),
        ("deal_closed_at", ("closed",)),
        ("LeadStatus", ("status",)),
        ("scored_by_rep", ("score",)),
        # Whole words only: no match inside other words.
        ("operating_revenue", ()),
        ("wonder_count", ()),
        ("underscore", ()),
        ("job", ()),
        ("Lead Source", ()),
    ],
)
def test_matched_words(name: str, expected: tuple[str, ...]) -> None:
    assert matched_words(name, POST_OUTCOME_WORDS) == expected


def test_declared_post_outcome_columns_are_not_warned() -> None:
    columns = ["Tags", "Lead Quality", "Lead Source", "TotalVisits"]
    warnings = suspicious_names(columns, post_outcome=["Tags"])
    assert [w.column for w in warnings] == ["Lead Quality"]
    assert warnings[0].words == ("quality",)
    assert "post_outcome" in warnings[0].text


def test_the_vocabulary_is_configurable() -> None:
    assert suspicious_names(["Lead Quality", "Tags"], vocabulary=["tag"])[0].column == "Tags"
    assert suspicious_names(["Lead Quality"], vocabulary=[]) == []
    # A vocabulary entry of several words needs all of them.
    assert [
        w.column for w in suspicious_names(["sales owner", "owner"], vocabulary=["sales owner"])
    ] == ["sales owner"]


def test_warnings_reach_the_console(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="features.ingest.suspicion"):
        warn_suspicious_names(["Tags", "age"], where="leads.csv")
    assert len(caplog.records) == 1
    assert "leads.csv: " in caplog.text
    assert "'Tags'" in caplog.text
    assert "'tag'" in caplog.text


def test_params_default_is_the_module_vocabulary() -> None:
    # Two copies (params may not import the ingest package): they must not drift apart.
    assert LeakageParams().suspicious_names == POST_OUTCOME_WORDS
