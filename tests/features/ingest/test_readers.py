"""Reading canonical-table files: CSV in the shapes real exports come in, Parquet with types."""

from __future__ import annotations

import gzip
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from features.errors import UserError
from features.ingest.readers import (
    find_table_files,
    read_csv_file,
    read_table_file,
    sniff_delimiter,
)


def _write(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


# ----------------------------------------------------------------------------- find_table_files
def test_find_table_files_maps_tables_in_contract_order(tmp_path: Path) -> None:
    _write(tmp_path / "touches.csv", b"a\n1\n")
    _write(tmp_path / "leads.parquet", b"")
    _write(tmp_path / "campaigns.csv.gz", b"")
    for side in ("truth.parquet", "defects.parquet", "import.json", ".DS_Store"):
        _write(tmp_path / side, b"")
    (tmp_path / "quarantine").mkdir()

    found = find_table_files(tmp_path)

    assert list(found) == ["campaigns", "leads", "touches"]
    assert found["campaigns"].name == "campaigns.csv.gz"


@pytest.mark.parametrize("name", ["lead.csv", "Leads.xlsx", "touches.json", "notes.txt"])
def test_unknown_file_is_an_error_naming_it(tmp_path: Path, name: str) -> None:
    _write(tmp_path / "leads.csv", b"lead_id\nL1\n")
    _write(tmp_path / name, b"x")

    with pytest.raises(UserError) as error:
        find_table_files(tmp_path)

    message = str(error.value)
    assert message.startswith(f"{tmp_path / name}: unknown table file; canonical tables are ")
    assert "campaigns, accounts, leads, touches, sales_events" in message
    assert "\n" not in message


def test_one_table_in_two_files_is_an_error(tmp_path: Path) -> None:
    _write(tmp_path / "leads.csv", b"lead_id\nL1\n")
    _write(tmp_path / "leads.parquet", b"")

    with pytest.raises(UserError, match="table 'leads' is given twice"):
        find_table_files(tmp_path)


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="directory not found"):
        find_table_files(tmp_path / "nope")


# ----------------------------------------------------------------------------- CSV
def test_every_column_is_text_and_na_is_not_null(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.csv", b"id,country,amount\n001,NA,1.50\n002,,\n")

    frame = read_csv_file(path)

    assert all(pd.api.types.is_string_dtype(frame[c]) for c in frame.columns)
    assert frame["id"].tolist() == ["001", "002"]  # leading zeros kept
    assert frame.loc[0, "country"] == "NA"  # Namibia, not a null
    assert frame["country"].isna().tolist() == [False, True]
    assert frame.loc[0, "amount"] == "1.50"


def test_caller_na_values_are_nulls(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.csv", b"id,x\n1,n/a\n2,y\n")
    assert read_csv_file(path, na_values=["n/a"])["x"].isna().tolist() == [True, False]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param(b"\xef\xbb\xbfid,name\r\n1,Zo\xc3\xab\r\n", "Zoë", id="utf8-bom-crlf"),
        pytest.param("id,name\n1,Zoë\n".encode("latin-1"), "Zoë", id="latin-1"),
        pytest.param("id;name\n1;‘Zoë’ €\n".encode("cp1252"), "‘Zoë’ €", id="cp1252"),
        pytest.param("id\tname\n1\tZoë\n".encode("utf-16"), "Zoë", id="utf-16-bom"),
        pytest.param(b"id|name\r\n1|Zo\xc3\xab\r\n", "Zoë", id="pipe-crlf"),
    ],
)
def test_encodings_delimiters_and_line_ends(tmp_path: Path, content: bytes, expected: str) -> None:
    frame = read_csv_file(_write(tmp_path / "t.csv", content))

    assert list(frame.columns) == ["id", "name"]
    assert frame.loc[0, "name"] == expected


def test_explicit_encoding_and_separator(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.csv", "a;b\nx;é\n".encode("latin-1"))
    assert read_csv_file(path, sep=";", encoding="latin-1").loc[0, "b"] == "é"


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (["a,b,c", "1,2,3"], ","),
        (["a;b;c", "1,5;2,5;3"], ";"),  # decimal commas inside a ; file
        (["a\tb", "x, y\tz"], "\t"),
        (["a|b", "1|2"], "|"),
        (['"a,x";b', '"1,2";3'], ";"),  # quoted delimiter
        (["single"], ","),
    ],
)
def test_sniff_delimiter(lines: list[str], expected: str) -> None:
    assert sniff_delimiter(lines) == expected


def test_wrong_forced_separator_reads_one_column(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.csv", b"lead_id;created_at\nL1;2024-01-01\n")
    assert list(read_csv_file(path, sep=",").columns) == ["lead_id;created_at"]


def test_gzip_csv(tmp_path: Path) -> None:
    path = _write(tmp_path / "leads.csv.gz", gzip.compress(b"lead_id;x\nL1;2\n"))
    assert read_table_file(path).to_dict("records") == [{"lead_id": "L1", "x": "2"}]


def test_huge_single_field(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "t.csv", b"id,notes,country\n1," + b"x" * 10_000_000 + b",FR\n2,short,DE\n"
    )

    frame = read_csv_file(path)

    assert len(frame.loc[0, "notes"]) == 10_000_000
    assert frame["country"].tolist() == ["FR", "DE"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty file"),
        (b"\r\n\n  \n", "empty file"),
        (b"lead_id,created_at\n", "header only, no rows"),
        (b"lead_id,created_at\r\n\r\n", "header only, no rows"),
        (b"a,b\n1,2\n1,2,3\n", "malformed CSV (Expected 2 fields in line 3, saw 3)"),
        (b"a,b,a\n1,2,3\n", "column 'a' appears more than once"),
        (b"PK\x03\x04\x14\x00\x00\x00", "not CSV text (looks like an Excel workbook)"),
        (b"\x00\x01\x02garbage", "not CSV text (looks like binary data)"),
    ],
)
def test_unreadable_csv_is_one_line_naming_the_file(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = _write(tmp_path / "leads.csv", content)

    with pytest.raises(UserError) as error:
        read_table_file(path)

    assert str(error.value).startswith(f"{path}: ")
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_undecodable_with_explicit_encoding(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.csv", "a\né\n".encode("latin-1"))
    with pytest.raises(UserError, match=r"cannot be decoded as utf-8 text"):
        read_csv_file(path, encoding="utf-8")


# ----------------------------------------------------------------------------- Parquet
def test_parquet_keeps_types(tmp_path: Path) -> None:
    path = tmp_path / "leads.parquet"
    table = pa.table(
        {
            "lead_id": pa.array(["L1"]),
            "created_at": pa.array([0], pa.timestamp("us", tz="UTC")),
            "score": pa.array([1.5]),
        }
    )
    pq.write_table(table, path)

    frame = read_table_file(path)

    assert isinstance(frame["created_at"].dtype, pd.DatetimeTZDtype)
    assert frame["score"].dtype == "float64"


def test_parquet_without_rows_or_corrupt(tmp_path: Path) -> None:
    empty = tmp_path / "leads.parquet"
    pq.write_table(pa.table({"lead_id": pa.array([], pa.string())}), empty)
    with pytest.raises(UserError, match="header only, no rows"):
        read_table_file(empty)

    corrupt = _write(tmp_path / "touches.parquet", b"PAR1 not really")
    with pytest.raises(UserError, match=r"touches.parquet: not a readable Parquet file"):
        read_table_file(corrupt)


def test_unsupported_suffix(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="unsupported file type"):
        read_table_file(_write(tmp_path / "leads.xlsx", b"x"))


def test_lenient_listing_skips_other_files(tmp_path: Path) -> None:
    _write(tmp_path / "leads.csv", b"lead_id\nL1\n")
    _write(tmp_path / "deals.csv", b"x\n1\n")
    _write(tmp_path / "leads.parquet.bak", b"")
    assert list(find_table_files(tmp_path, strict=False)) == ["leads"]
