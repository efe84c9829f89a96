"""The validation stage applies the contract's one canonical-name rule (issue 11): an export
header equal to a canonical column up to case and surrounding spaces is that column, as the
importers and the feature engine read it; an exactly canonical header wins over a look-alike."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd

from features import contract
from features.params import parse_params
from features.validation.coercion import CoercionNotes, coerce
from features.validation.validate import validate_directory

NOW = dt.datetime(2024, 6, 1, tzinfo=dt.UTC)


def test_capitalised_attribute_headers_become_canonical_columns(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    pd.DataFrame(
        {
            "Lead_ID": ["L1", "L2"],
            "Created_At": ["2024-01-01", "2024-01-02"],
            "Country": ["PT", "ES"],
            "SOURCE": ["Web", "ads"],
            "Origin": ["a", "b"],
        }
    ).to_parquet(raw / "leads.parquet")
    out = tmp_path / "validated"
    params = parse_params({})
    summary = validate_directory(raw, out, tmp_path / "report", params, now=NOW)
    assert summary.passed
    leads = pd.read_parquet(out / "leads.parquet")
    assert leads["country"].tolist() == ["PT", "ES"]
    assert leads["source"].tolist() == ["web", "ads"]  # lowercase per the contract
    assert "Country" not in leads
    assert "SOURCE" not in leads
    assert leads["Origin"].tolist() == ["a", "b"]  # not canonical: an extra column, kept


def test_an_exact_header_wins_over_a_look_alike() -> None:
    frame = pd.DataFrame(
        {"lead_id": ["L1"], "created_at": ["2024-01-01"], "Country": ["PT"], "country": ["pt"]},
        dtype="str",
    )
    notes = CoercionNotes()
    typed, failures = coerce(contract.LEADS, frame, notes=notes)
    assert not failures
    assert notes.renamed == {}
    assert typed["country"].tolist() == ["pt"]
    assert typed["Country"].tolist() == ["PT"]
