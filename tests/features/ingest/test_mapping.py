"""The YAML mapping: one-line errors for bad mapping files, YAML 1.2 booleans, and the strict
parsers of the value formats a mapping declares."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pandas as pd
import pytest

from features.errors import UserError
from features.ingest.mapping import (
    FlatMapping,
    ReadOptions,
    load_mapping,
    match_values,
    strict_numbers,
    strict_timestamps,
)


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding=encoding)
    return path


# ----------------------------------------------------------------------------- mapping file
@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "format: flat\norder: file\noutcome: {converted: {column: y, positive: [1]}}\n"
            "categorical: [a]\nnumerics: [b]\n",
            "unknown key 'numerics' (misspelled?)",
        ),
        (
            "format: flat\norder: file\noutcome: {converted: {column: y, positve: [1]}}\n",
            "unknown key 'outcome.converted.positve' (misspelled?)",
        ),
        ("format: flatfile\n", "unknown format 'flatfile'; use 'flat' or 'tables'"),
        ("categorical: [a]\n", "'format' is required"),
        ("- a\n- b\n", "must be a YAML mapping"),
        (
            "format: flat\noutcome: {converted: {column: y, positive: [1]}}\n",
            "say how rows are ordered",
        ),
        (
            "format: flat\norder: file\noutcome: {converted: {column: y}}\n",
            "needs `positive` values",
        ),
        (
            "format: flat\norder: file\noutcome: {converted: {column: null}}\n",
            "nothing to learn from",
        ),
        (
            "format: flat\norder: file\noutcome: {converted: {column: y, positive: [1]}}\n"
            "categorical: [a]\nnumeric: [a]\n",
            "column 'a' is both categorical and numeric",
        ),
        (
            "format: flat\norder: file\noutcome: {converted: {column: y, positive: [1]}}\n"
            "categorical: [y]\n",
            "column 'y' is both an outcome and categorical",
        ),
        (
            "format: flat\norder: file\noutcome: {converted: {column: y, positive: [1]}}\n"
            "numeric: [country]\n",
            "declare it categorical",
        ),
        (
            "format: flat\norder: file\noutcome: {converted: {column: y, positive: [1]}}\n"
            "categorical: [campaign_id]\n",
            "a flat import cannot fill",
        ),
        (
            "format: flat\norder: file\nread: {sepp: ';'}\n"
            "outcome: {c: {column: y, positive: [1]}}\n",
            "unknown key 'read.sepp'",
        ),
        (
            "format: tables\ntables: {leads: {file: a.csv, colums: {lead_id: id}}}\n",
            "unknown key 'tables.leads.colums' (misspelled?)",
        ),
        (
            "format: tables\ntables: {leads: [{file: a.csv}, {file: b.csv, x: 1}]}\n",
            "unknown key 'tables.leads[1].x'",
        ),
        (
            "format: tables\ntables: {leads: {file: a.csv, columns: {lead_idd: id}}}\n",
            "'lead_idd' is not a column of the canonical table leads",
        ),
        ("format: tables\ntables: {deals: {file: a.csv}}\n", "tables.deals: unknown table"),
        ("format: flat\norder: [file\n", "not valid YAML at line"),
    ],
)
def test_bad_mappings_are_one_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(text)
    with pytest.raises(UserError) as error:
        load_mapping(path)
    assert "\n" not in str(error.value)
    assert str(error.value).startswith(f"{path}: ")
    assert message in str(error.value)


def test_yaml_yes_no_stay_text(tmp_path: Path) -> None:
    path = write(
        tmp_path / "m.yaml",
        "format: flat\norder: file\noutcome: {converted: {column: on, positive: [yes], "
        "negative: [no, false]}}\n",
    )
    mapping = load_mapping(path)
    assert isinstance(mapping, FlatMapping)
    outcome = mapping.outcome["converted"]
    assert outcome.column == "on"
    assert outcome.positive == ("yes",)
    assert outcome.negative == ("no", False)


def test_missing_mapping_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"nope.yaml: mapping file not found$"):
        load_mapping(tmp_path / "nope.yaml")


# ----------------------------------------------------------------------------- values
def test_parse_numbers_accepts_thousands_separators() -> None:
    values = pd.Series(["1,234", "1,234,567.5", "-2,000", " 12 ", "1e3", "0.5", None, "1 234"])
    assert strict_numbers(values, ".", "x").tolist()[:6] == [1234, 1234567.5, -2000, 12, 1000, 0.5]
    assert strict_numbers(values, ".", "x").iloc[7] == 1234
    comma = pd.Series(["1.234,5", "12,25", "7"])
    assert strict_numbers(comma, ",", "x").tolist() == [1234.5, 12.25, 7]


@pytest.mark.parametrize("bad", ["1,23", "12,3456", "1.234.5", "inf", "€5", "1,5"])
def test_parse_numbers_rejects_ambiguous_text(bad: str) -> None:
    with pytest.raises(UserError, match="not a number in 1 of 1 rows"):
        strict_numbers(pd.Series([bad]), ".", "f: column 'n'")


def test_parse_timestamps_formats_and_zones() -> None:
    where = "f: column 't'"
    iso = strict_timestamps(
        pd.Series(["2024-03-01T10:00:00+01:00", "2024-03-01"]), ReadOptions(), where
    )
    assert iso.tolist() == [
        pd.Timestamp("2024-03-01 09:00", tz="UTC"),
        pd.Timestamp("2024-03-01 00:00", tz="UTC"),
    ]
    european = ReadOptions(timestamp_format="%d/%m/%Y %H:%M", timezone="Europe/Lisbon")
    local = strict_timestamps(pd.Series(["03/07/2024 10:00", None]), european, where)
    assert local.iloc[0] == pd.Timestamp("2024-07-03 09:00", tz="UTC")  # WEST is UTC+1
    assert pd.isna(local.iloc[1])
    with pytest.raises(
        UserError,
        match=r"not an ISO 8601 time in 1 of 2 rows, e.g. '03/07/2024' \(set read.timestamp_format",
    ):
        strict_timestamps(pd.Series(["2024-01-01", "03/07/2024"]), ReadOptions(), where)


def test_match_values() -> None:
    values = pd.Series([" Yes", "yes", "1", "1.0", "no", None, "TRUE"])
    assert match_values(values, ["yes"]).tolist() == [True, True, False, False, False, False, False]
    assert match_values(values, [1]).tolist() == [False, False, True, True, False, False, False]
    assert match_values(values, [True]).tolist() == [False] * 6 + [True]
