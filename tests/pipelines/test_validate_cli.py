"""`leadscore validate` on bad inputs: one clear line (file, column, rule, count), exit 2, no
traceback; inputs that real exports legitimately look like pass."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from tests.features.validation.test_validation import Tables, tiny_tables, write_tables

Prepare = Callable[[Path, Tables], None]
"""Writes the raw directory (given the tiny valid tables to start from)."""


def _tables(change: Callable[[Tables], None]) -> Prepare:
    def prepare(raw: Path, tables: Tables) -> None:
        change(tables)
        write_tables(tables, raw)

    return prepare


def _file(name: str, content: bytes) -> Prepare:
    def prepare(raw: Path, tables: Tables) -> None:
        write_tables(tables, raw)
        (raw / name).write_bytes(content)

    return prepare


def _set(table: str, row: int, column: str, value: str | None) -> Callable[[Tables], None]:
    def change(tables: Tables) -> None:
        tables[table].loc[row, column] = value

    return change


def _duplicate_lead(tables: Tables) -> None:
    tables["leads"] = pd.concat([tables["leads"], tables["leads"].iloc[[0]]], ignore_index=True)


def _drop_column(tables: Tables) -> None:
    tables["touches"] = tables["touches"].drop(columns="occurred_at")


def _colon_file(raw: Path, tables: Tables) -> None:
    write_tables(tables, raw)
    tables["leads"].to_csv(raw / "leads.csv", index=False, sep=":")


def _run(tmp_path: Path, prepare: Prepare) -> tuple[int, str, Path]:
    raw, out, report = tmp_path / "raw", tmp_path / "out", tmp_path / "report"
    raw.mkdir()
    prepare(raw, tiny_tables())
    params = tmp_path / "params.yaml"
    params.write_text("data:\n  horizon: null\n")
    result = CliRunner().invoke(
        app,
        [
            *("validate", "--raw", str(raw), "--out", str(out)),
            *("--report", str(report), "--params", str(params)),
        ],
    )
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return result.exit_code, result.output, raw


FAILURES: dict[str, tuple[Prepare, str | tuple[str, ...]]] = {
    "empty file": (_file("touches.csv", b""), "touches.csv: empty file"),
    "header only": (
        _file("touches.csv", b"lead_id,occurred_at,touch_type\r\n"),
        "touches.csv: header only, no rows",
    ),
    "missing required column": (
        _tables(_drop_column),
        "touches.csv: missing required column 'occurred_at' (columns: lead_id, touch_type, "
        "campaign_id)",
    ),
    "unknown table file": (
        _file("contacts.csv", b"id\n1\n"),
        "contacts.csv: unknown table file; canonical tables are campaigns, accounts, leads, "
        "touches, sales_events",
    ),
    "wrong delimiter": (
        _colon_file,
        (
            "leads.csv: missing required column 'lead_id' (the header is one column "
            "'lead_id:created_at:campaign_id:",
            "': wrong delimiter?)",
        ),
    ),
    "unparseable timestamps": (
        _tables(_set("touches", 1, "occurred_at", "yesterday-ish")),
        "touches.csv: 1 of 5 rows (20.0%) quarantined > 1.0% allowed "
        "(top rule: unparseable timestamp in occurred_at, 1 row)",
    ),
    "mistyped column": (
        _tables(lambda t: t["campaigns"].__setitem__("spend", ["lots", "some", "many"])),
        "campaigns.csv: column 'spend' is mistyped: none of its 3 values is a number (e.g. 'lots')",
    ),
    "future timestamps": (
        _tables(_set("sales_events", 4, "occurred_at", "2999-04-12T00:00:00Z")),
        "sales_events.csv: 1 of 5 rows (20.0%) quarantined > 1.0% allowed "
        "(top rule: future timestamp in occurred_at, 1 row)",
    ),
    "duplicate lead ids": (
        _tables(_duplicate_lead),
        "leads.csv: 2 of 5 rows (40.0%) quarantined > 1.0% allowed "
        "(top rule: duplicate id, 2 rows)",
    ),
    "orphan touches": (
        _tables(_set("touches", 3, "lead_id", "L404")),
        "touches.csv: 1 of 5 rows (20.0%) quarantined > 1.0% allowed "
        "(top rule: lead_id not in leads, 1 row)",
    ),
    "events before lead creation": (
        _tables(_set("sales_events", 2, "occurred_at", "2024-03-05T09:59:59Z")),
        "sales_events.csv: 1 of 5 rows (20.0%) quarantined > 1.0% allowed "
        "(top rule: occurred_at before lead created_at, 1 row)",
    ),
    "unknown sales stage": (
        _tables(_set("sales_events", 4, "stage", "qualified")),
        "(top rule: unknown stage, 1 row)",
    ),
    "negative spend": (
        _tables(_set("campaigns", 2, "spend", "-100")),
        "campaigns.csv: 1 of 3 rows (33.3%) quarantined > 1.0% allowed "
        "(top rule: negative spend, 1 row)",
    ),
    "ended_at before started_at": (
        _tables(_set("campaigns", 2, "ended_at", "2024-04-30T00:00:00Z")),
        "(top rule: ended_at before started_at, 1 row)",
    ),
}


@pytest.mark.parametrize("case", list(FAILURES))
def test_bad_input_is_one_clear_line(tmp_path: Path, case: str) -> None:
    prepare, expected = FAILURES[case]

    code, output, raw = _run(tmp_path, prepare)

    assert code == 2, output
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, output
    for fragment in (expected,) if isinstance(expected, str) else expected:
        assert fragment in errors[0]
    assert str(raw) in errors[0]
    assert not (tmp_path / "out").exists()


def _latin1_leads(raw: Path, tables: Tables) -> None:
    tables["leads"].loc[0, "job_title"] = "Directeur général"
    write_tables(tables, raw)
    text = tables["leads"].to_csv(index=False)
    (raw / "leads.csv").write_bytes(text.encode("latin-1"))


def _bom_crlf(raw: Path, tables: Tables) -> None:
    write_tables(tables, raw)
    for path in raw.glob("*.csv"):
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes().replace(b"\n", b"\r\n"))


def _semicolons(raw: Path, tables: Tables) -> None:
    write_tables(tables, raw)
    tables["touches"].to_csv(raw / "touches.csv", index=False, sep=";")


def _mixed_zones(tables: Tables) -> None:
    tables["leads"]["created_at"] = [
        "2024-03-01 09:00:00",
        "2024-03-05T12:00:00+02:00",
        "2024-04-01",
        "2024-04-10T00:00:00Z",
    ]


def _thousands(tables: Tables) -> None:
    tables["campaigns"]["spend"] = ["1,000.00", "0", "2 500"]
    tables["sales_events"].loc[1, "amount"] = "5,000"


def _huge_field(tables: Tables) -> None:
    tables["leads"].loc[0, "job_title"] = "x" * 10_000_000


SUCCESSES: dict[str, tuple[Prepare, Callable[[Path], None]]] = {
    "utf-8 with BOM and CRLF": (
        _bom_crlf,
        lambda out: _check(out, "leads", "lead_id", ["L1", "L2", "L3", "L4"]),
    ),
    "latin-1 bytes": (
        _latin1_leads,
        lambda out: _check(out, "leads", "job_title", "Directeur général", row=0),
    ),
    "semicolon delimiter": (
        _semicolons,
        lambda out: _check(out, "touches", "touch_type", "email_open", row=0),
    ),
    "naive and aware timestamps mixed": (
        _tables(_mixed_zones),
        lambda out: _check(out, "leads", "created_at", pd.Timestamp("2024-03-05T10:00Z"), row=1),
    ),
    "thousands separators": (
        _tables(_thousands),
        lambda out: _check(out, "campaigns", "spend", [1000.0, 0.0, 2500.0]),
    ),
    "10 MB single field": (
        _tables(_huge_field),
        lambda out: _check(out, "leads", "job_title", "x" * 10_000_000, row=0),
    ),
}


def _check(out: Path, table: str, column: str, expected: object, row: int | None = None) -> None:
    values = pd.read_parquet(out / f"{table}.parquet")[column]
    assert (values.tolist() if row is None else values[row]) == expected


@pytest.mark.parametrize("case", list(SUCCESSES))
def test_real_world_shapes_pass(tmp_path: Path, case: str) -> None:
    prepare, check = SUCCESSES[case]

    code, output, _ = _run(tmp_path, prepare)

    assert code == 0, output
    check(tmp_path / "out")
    assert (tmp_path / "report" / "summary.json").exists()


def test_installed_command_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    write_tables(tiny_tables(), raw)
    (raw / "leads.csv").write_text("lead_id,created_at\n")
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    command = Path(sys.executable).parent / "leadscore"

    result = subprocess.run(
        [
            *(str(command), "validate", "--raw", str(raw)),
            *("--out", str(tmp_path / "out"), "--report", str(tmp_path / "report")),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parents[2],
        check=False,
    )

    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {raw / 'leads.csv'}: header only, no rows"
    ]
    assert "Traceback" not in result.stdout + result.stderr
