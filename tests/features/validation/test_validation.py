"""The validation stage with real Great Expectations: every contract rule, quarantine, cascades,
the quarantine threshold, coercion of real-world values, and the report."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from features import contract
from features.errors import UserError
from features.ingest.simulate import simulate
from features.params import GenerateParams, Params, parse_params
from features.validation.coercion import CoercionNotes, coerce, lenient_numbers, lenient_timestamps
from features.validation.outputs import REASON_COLUMN, ROW_COLUMN
from features.validation.report import ValidationSummary
from features.validation.rules import (
    AFTER_CLOSE,
    DUPLICATE_ID,
    rule_after_horizon,
    rule_before_column,
    rule_before_lead_created,
    rule_below_min,
    rule_future,
    rule_missing,
    rule_not_a_number,
    rule_not_allowed,
    rule_unknown_reference,
    rule_unparseable,
)
from features.validation.suites import SuiteSettings, build_suite
from features.validation.validate import validate_directory

NOW = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)

Tables = dict[str, pd.DataFrame]


def tiny_tables() -> Tables:
    """A small, valid, canonical data set as text (what a CSV export holds)."""

    def frame(rows: list[dict[str, str | None]]) -> pd.DataFrame:
        return pd.DataFrame(rows, dtype=object)

    return {
        "campaigns": frame(
            [
                {
                    "campaign_id": "C1",
                    "name": "Search Q1",
                    "channel": "paid_search",
                    "started_at": "2024-01-01T00:00:00Z",
                    "ended_at": "2024-06-30T00:00:00Z",
                    "spend": "1000.0",
                },
                {
                    "campaign_id": "C2",
                    "name": "Newsletter",
                    "channel": "email",
                    "started_at": "2024-02-01T00:00:00Z",
                    "ended_at": None,
                    "spend": "0",
                },
                {
                    "campaign_id": "C3",
                    "name": "Trade fair",
                    "channel": "event",
                    "started_at": "2024-05-01T08:00:00Z",
                    "ended_at": "2024-05-03T18:00:00Z",
                    "spend": "2500",
                },
            ]
        ),
        "accounts": frame(
            [
                {
                    "account_id": "A1",
                    "industry": "software",
                    "country": "DE",
                    "employees": "50",
                    "annual_revenue": "1000000",
                },
                {
                    "account_id": "A2",
                    "industry": None,
                    "country": "NA",
                    "employees": "10",
                    "annual_revenue": None,
                },
                {
                    "account_id": "A3",
                    "industry": "retail",
                    "country": "FR",
                    "employees": None,
                    "annual_revenue": "0",
                },
            ]
        ),
        "leads": frame(
            [
                {
                    "lead_id": "L1",
                    "created_at": "2024-03-01T09:00:00Z",
                    "campaign_id": "C1",
                    "account_id": "A1",
                    "source": "webinar",
                    "job_title": "CTO",
                    "seniority": "c_level",
                    "department": "it",
                    "country": "DE",
                },
                {
                    "lead_id": "L2",
                    "created_at": "2024-03-05T10:00:00Z",
                    "campaign_id": "C2",
                    "account_id": "A2",
                    "source": "email",
                    "job_title": "Buyer",
                    "seniority": "manager",
                    "department": "purchasing",
                    "country": "NA",
                },
                {
                    "lead_id": "L3",
                    "created_at": "2024-04-01T00:00:00Z",
                    "campaign_id": None,
                    "account_id": None,
                    "source": None,
                    "job_title": None,
                    "seniority": None,
                    "department": None,
                    "country": None,
                },
                {
                    "lead_id": "L4",
                    "created_at": "2024-04-10T00:00:00Z",
                    "campaign_id": "C1",
                    "account_id": "A1",
                    "source": "webinar",
                    "job_title": "Engineer",
                    "seniority": "individual",
                    "department": "engineering",
                    "country": "DE",
                },
            ]
        ),
        "touches": frame(
            [
                {
                    "lead_id": "L1",
                    "occurred_at": "2024-03-02T00:00:00Z",
                    "touch_type": "email_open",
                    "campaign_id": "C1",
                },
                {
                    "lead_id": "L1",
                    "occurred_at": "2024-03-01T09:00:00Z",  # at creation: valid
                    "touch_type": "web_visit",
                    "campaign_id": None,
                },
                {
                    "lead_id": "L2",
                    "occurred_at": "2024-03-06T00:00:00Z",
                    "touch_type": "demo_request",
                    "campaign_id": "C2",
                },
                {
                    "lead_id": "L3",
                    "occurred_at": "2024-04-02T00:00:00Z",
                    "touch_type": "some_new_type",  # open vocabulary
                    "campaign_id": None,
                },
                {
                    "lead_id": "L4",
                    "occurred_at": "2024-04-11T00:00:00Z",
                    "touch_type": "email_click",
                    "campaign_id": "C1",
                },
            ]
        ),
        "sales_events": frame(
            [
                {
                    "lead_id": "L1",
                    "occurred_at": "2024-03-04T00:00:00Z",
                    "stage": "assigned",
                    "owner_id": "R1",
                    "reason": None,
                    "amount": None,
                },
                {
                    "lead_id": "L1",
                    "occurred_at": "2024-03-10T00:00:00Z",
                    "stage": "won",
                    "owner_id": "R1",
                    "reason": None,
                    "amount": "5000",
                },
                {
                    "lead_id": "L2",
                    "occurred_at": "2024-03-07T00:00:00Z",
                    "stage": "assigned",
                    "owner_id": "R2",
                    "reason": None,
                    "amount": None,
                },
                {
                    "lead_id": "L2",
                    "occurred_at": "2024-03-08T00:00:00Z",
                    "stage": "rejected",
                    "owner_id": "R2",
                    "reason": "no budget",
                    "amount": "0",
                },
                {
                    "lead_id": "L4",
                    "occurred_at": "2024-04-12T00:00:00Z",
                    "stage": "accepted",
                    "owner_id": "R1",
                    "reason": None,
                    "amount": None,
                },
            ]
        ),
    }


def write_tables(tables: Tables, directory: Path, kind: str = "csv") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, frame in tables.items():
        if kind == "csv":
            frame.to_csv(directory / f"{name}.csv", index=False)
        else:
            frame.to_parquet(directory / f"{name}.parquet", index=False)
    return directory


def lenient(**validate: float) -> Params:
    """Params whose threshold never fails the stage (rule tests look at the quarantine)."""
    return parse_params({"validate": {"max_quarantine_share": 1.0, **validate}})


def run(
    tmp_path: Path, tables: Tables, params: Params | None = None, kind: str = "csv"
) -> tuple[ValidationSummary, Path]:
    raw = write_tables(tables, tmp_path / "raw", kind)
    out = tmp_path / "validated"
    summary = validate_directory(raw, out, tmp_path / "report", params or lenient(), now=NOW)
    return summary, out


def quarantine(out: Path, table: str) -> pd.DataFrame:
    return pd.read_parquet(out / "quarantine" / f"{table}.parquet")


# ----------------------------------------------------------------------------- valid data
def test_valid_tables_pass_typed_per_contract(tmp_path: Path) -> None:
    summary, out = run(tmp_path, tiny_tables(), parse_params({}))

    assert all(table.rows_quarantined == 0 for table in summary.tables.values())
    for name, spec in contract.TABLES.items():
        table = pq.read_table(out / f"{name}.parquet")
        assert table.schema.equals(spec.arrow_schema(), check_metadata=False), name
        assert table.num_rows == len(tiny_tables()[name])
        assert quarantine(out, name).empty
    leads = pd.read_parquet(out / "leads.parquet")
    assert leads.loc[1, "country"] == "NA"  # Namibia stays a country
    assert summary.horizon == "2024-04-12T00:00:00+00:00"  # latest event time


def test_simulator_output_passes_untouched(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    simulate(GenerateParams(leads=400, seed=3), raw)

    summary = validate_directory(raw, tmp_path / "out", tmp_path / "report", parse_params({}))

    assert summary.passed
    assert {name: t.rows_quarantined for name, t in summary.tables.items()} == dict.fromkeys(
        summary.tables, 0
    )
    original = pd.read_parquet(raw / "touches.parquet")
    validated = pd.read_parquet(tmp_path / "out" / "touches.parquet")
    pd.testing.assert_frame_equal(original, validated)
    truth = (tmp_path / "out" / "truth.parquet").read_bytes()
    assert truth == (raw / "truth.parquet").read_bytes()


# ----------------------------------------------------------------------------- every rule
@dataclasses.dataclass(frozen=True)
class Violation:
    table: str
    column: str
    rule: str
    mutate: Callable[[Tables], None]
    rows: tuple[int, ...] = (0,)
    params: dict[str, object] = dataclasses.field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.table}.{self.column}: {self.rule}"


def _set(table: str, column: str, value: str | None, row: int = 0) -> Callable[[Tables], None]:
    def mutate(tables: Tables) -> None:
        tables[table].loc[row, column] = value

    return mutate


def _shifted(table: str, column: str, source: Callable[[Tables], str]) -> Callable[[Tables], None]:
    def mutate(tables: Tables) -> None:
        earlier = pd.Timestamp(source(tables)) - pd.Timedelta(days=1)
        tables[table].loc[0, column] = earlier.isoformat()

    return mutate


def _lead_created(table: str) -> Callable[[Tables], str]:
    def created(tables: Tables) -> str:
        lead = tables[table].loc[0, "lead_id"]
        leads = tables["leads"]
        return str(leads.loc[leads["lead_id"] == lead, "created_at"].iloc[0])

    return created


RULE_FIELDS = {
    "kind",
    "nullable",
    "unique",
    "allowed",
    "min_value",
    "references",
    "not_before_column",
    "not_before_lead_created",
    "not_after_horizon",
    "lowercase",
}
"""Column fields that carry a rule; each is exercised by :func:`contract_violations` (and
``lowercase`` by the normalisation test)."""
DESCRIPTIVE_FIELDS = {"name", "description", "known_values", "business_field", "identity"}
TABLE_RULES = {"no event of a lead after its won or lost"}


def contract_violations() -> Iterator[Violation]:
    """One invalid row per rule of the contract, generated from ``contract.TABLES``."""
    for table in contract.TABLES.values():
        for column in table.columns:
            name, t = column.name, table.name
            if not column.nullable:
                yield Violation(t, name, rule_missing(name), _set(t, name, None))
            if column.unique:
                first = tiny_tables()[t].loc[0, name]
                yield Violation(t, name, DUPLICATE_ID, _set(t, name, first, row=1), rows=(0, 1))
            if column.allowed is not None:
                yield Violation(t, name, rule_not_allowed(name), _set(t, name, "bogus"))
            if column.min_value is not None:
                yield Violation(
                    t,
                    name,
                    rule_below_min(name, column.min_value),
                    _set(t, name, str(column.min_value - 1)),
                )
            if column.not_before_column is not None:
                other = column.not_before_column
                yield Violation(
                    t,
                    name,
                    rule_before_column(name, other),
                    _shifted(t, name, lambda tables, t=t, o=other: tables[t].loc[0, o]),
                )
            if column.references is not None:
                ref = column.referenced_table
                assert ref is not None
                rule = rule_unknown_reference(name, ref)
                yield Violation(t, name, rule, _set(t, name, "NOPE"))
            if column.not_before_lead_created:
                yield Violation(
                    t,
                    name,
                    rule_before_lead_created(name),
                    _shifted(t, name, _lead_created(t)),
                )
            if column.not_after_horizon:
                yield Violation(t, name, rule_future(name), _set(t, name, "2099-01-01T00:00:00Z"))
                yield Violation(
                    t,
                    name,
                    rule_after_horizon(name),
                    _set(t, name, "2024-09-01T00:00:00Z"),
                    params={"data": {"horizon": "2024-08-01T00:00:00Z"}},
                )
            if column.kind is contract.Kind.TIMESTAMP:
                yield Violation(t, name, rule_unparseable(name), _set(t, name, "next tuesday"))
            if column.kind is contract.Kind.FLOAT:
                yield Violation(t, name, rule_not_a_number(name), _set(t, name, "twelve"))
        if table.name in contract.EVENT_TABLES:
            # L1 won on 2024-03-10: anything of L1 after it breaks the table rule
            yield Violation(
                table.name,
                "occurred_at",
                AFTER_CLOSE,
                _set(table.name, "occurred_at", "2024-03-11T00:00:00Z"),
            )


def test_every_column_field_is_a_known_rule_or_descriptive() -> None:
    """A new kind of rule in the contract must get a case in contract_violations()."""
    fields = {field.name for field in dataclasses.fields(contract.Column)}
    assert fields <= RULE_FIELDS | DESCRIPTIVE_FIELDS, fields - RULE_FIELDS - DESCRIPTIVE_FIELDS
    for table in contract.TABLES.values():
        assert set(table.rules) <= TABLE_RULES, table.rules


@pytest.mark.parametrize("violation", list(contract_violations()), ids=lambda v: v.id)
def test_each_contract_rule_quarantines_its_invalid_row(
    tmp_path: Path, violation: Violation
) -> None:
    tables = tiny_tables()
    violation.mutate(tables)
    params = parse_params({"validate": {"max_quarantine_share": 1.0}, **violation.params})

    summary, out = run(tmp_path, tables, params)

    bad = quarantine(out, violation.table)
    assert summary.tables[violation.table].rules.get(violation.rule) == len(violation.rows)
    for row in violation.rows:
        hit = bad[bad[ROW_COLUMN] == row + 1]
        assert len(hit) == 1, f"row {row} of {violation.table} not quarantined"
        assert violation.rule in hit[REASON_COLUMN].iloc[0].split("; ")
    valid = pd.read_parquet(out / f"{violation.table}.parquet")
    assert len(valid) + len(bad) == len(tables[violation.table])


def test_suite_is_generated_from_the_contract() -> None:
    settings = SuiteSettings(now=pd.Timestamp(NOW))
    for table in contract.TABLES.values():
        suite = build_suite(table, settings)
        rules = [e.meta["rule"] for e in suite.expectations]
        expected = sum(
            (not c.nullable)
            + c.unique
            + (c.allowed is not None)
            + (c.min_value is not None)
            + (c.not_before_column is not None)
            + c.not_after_horizon
            + (c.kind is contract.Kind.TIMESTAMP)  # not before 1970
            for c in table.columns
        )
        assert len(rules) == expected, table.name
        assert len(set(rules)) == len(rules)


# ----------------------------------------------------------------------------- boundaries
def test_boundaries_are_valid(tmp_path: Path) -> None:
    tables = tiny_tables()
    tables["campaigns"].loc[0, "ended_at"] = tables["campaigns"].loc[0, "started_at"]
    tables["sales_events"].loc[0, "amount"] = "0"
    tables["touches"].loc[0, "occurred_at"] = "2024-03-10T00:00:00Z"  # at L1's won: valid

    summary, _ = run(tmp_path, tables)

    assert sum(t.rows_quarantined for t in summary.tables.values()) == 0


def test_time_tolerance_allows_clock_skew(tmp_path: Path) -> None:
    tables = tiny_tables()
    tables["touches"].loc[0, "occurred_at"] = "2024-03-01T08:59:30Z"  # 30 s before creation

    strict, _ = run(tmp_path / "strict", tables)
    skew, _ = run(tmp_path / "skew", tables, lenient(time_tolerance_seconds=60))

    assert strict.tables["touches"].rules == {"occurred_at before lead created_at": 1}
    assert skew.tables["touches"].rows_quarantined == 0


# ----------------------------------------------------------------------------- quarantine
def test_quarantine_keeps_original_values_row_and_all_reasons(tmp_path: Path) -> None:
    tables = tiny_tables()
    tables["sales_events"].loc[3, ["stage", "amount"]] = ["Qualified", "-5"]

    _, out = run(tmp_path, tables)

    bad = quarantine(out, "sales_events")
    assert bad[ROW_COLUMN].tolist() == [4]
    assert bad.loc[0, "stage"] == "Qualified"  # a closed vocabulary: not case-normalised
    assert bad.loc[0, "amount"] == "-5"  # the value as the file had it
    assert bad.loc[0, "reason"] == "no budget"  # the table's own reason column is kept
    assert bad.loc[0, REASON_COLUMN] == "unknown stage; negative amount"


def test_duplicate_ids_quarantine_every_copy_and_their_children(tmp_path: Path) -> None:
    tables = tiny_tables()
    copy = tables["leads"].iloc[[1]].assign(country="US")
    tables["leads"] = pd.concat([tables["leads"], copy], ignore_index=True)

    summary, out = run(tmp_path, tables)

    leads = quarantine(out, "leads")
    assert leads["lead_id"].tolist() == ["L2", "L2"]
    assert set(leads[REASON_COLUMN]) == {"duplicate id"}
    touches = quarantine(out, "touches")
    assert touches["lead_id"].tolist() == ["L2"]
    assert touches[REASON_COLUMN].tolist() == ["parent lead quarantined"]
    assert summary.tables["sales_events"].rules == {"parent lead quarantined": 2}


def test_cascade_from_campaign_to_leads_to_events(tmp_path: Path) -> None:
    tables = tiny_tables()
    tables["campaigns"].loc[0, "spend"] = "-10"  # C1: L1 and L4, and touches of C1

    summary, out = run(tmp_path, tables)

    assert summary.tables["campaigns"].rules == {"negative spend": 1}
    leads = quarantine(out, "leads")
    assert leads["lead_id"].tolist() == ["L1", "L4"]
    assert set(leads[REASON_COLUMN]) == {"parent campaign quarantined"}
    touches = quarantine(out, "touches").set_index(ROW_COLUMN)[REASON_COLUMN].to_dict()
    assert touches == {
        1: "parent lead quarantined; parent campaign quarantined",
        2: "parent lead quarantined",
        5: "parent lead quarantined; parent campaign quarantined",
    }
    assert pd.read_parquet(out / "leads.parquet")["lead_id"].tolist() == ["L2", "L3"]
    events = pd.read_parquet(out / "sales_events.parquet")
    assert set(events["lead_id"]) == {"L2"}


def test_orphans_of_a_missing_parent_table_are_not_checked(tmp_path: Path) -> None:
    tables = tiny_tables()
    del tables["campaigns"], tables["accounts"]

    summary, _ = run(tmp_path, tables)

    assert sum(t.rows_quarantined for t in summary.tables.values()) == 0


def test_unknown_lead_and_parent_quarantined_are_distinct(tmp_path: Path) -> None:
    tables = tiny_tables()
    tables["touches"].loc[4, "lead_id"] = "X9"
    tables["leads"].loc[2, "created_at"] = None  # L3 quarantined

    summary, _ = run(tmp_path, tables)

    assert summary.tables["touches"].rules == {
        "lead_id not in leads": 1,
        "parent lead quarantined": 1,
    }
    assert summary.tables["touches"].examples["lead_id not in leads"] == ["X9"]


def test_won_lost_close_time_ignores_invalid_closing_events(tmp_path: Path) -> None:
    tables = tiny_tables()
    # a 'lost' dated before L4's creation is itself invalid, so it does not close L4
    extra = pd.DataFrame(
        [{"lead_id": "L4", "occurred_at": "2024-04-01T00:00:00Z", "stage": "lost"}], dtype=object
    )
    tables["sales_events"] = pd.concat([tables["sales_events"], extra], ignore_index=True)

    summary, _ = run(tmp_path, tables)

    assert summary.tables["sales_events"].rules == {"occurred_at before lead created_at": 1}
    assert summary.tables["touches"].rows_quarantined == 0


# ----------------------------------------------------------------------------- time
def test_future_timestamps_do_not_move_the_horizon(tmp_path: Path) -> None:
    tables = tiny_tables()
    tables["touches"].loc[2, "occurred_at"] = "2031-05-01T00:00:00Z"

    summary, _ = run(tmp_path, tables)

    assert summary.horizon == "2024-04-12T00:00:00+00:00"
    assert summary.tables["touches"].rules == {"future timestamp in occurred_at": 1}


def test_times_before_1970_are_quarantined_not_a_crash_later(tmp_path: Path) -> None:
    """Year 1600 (a typo for 2016) parses, but no lead predates 1970 and the feature engine's
    clock cannot hold it: quarantined here with its rule, not a traceback in features."""
    tables = tiny_tables()
    tables["leads"].loc[1, "created_at"] = "1600-03-05T12:00:00Z"
    tables["touches"].loc[0, "occurred_at"] = "0001-01-01T00:00:00Z"

    summary, out = run(tmp_path, tables)

    assert summary.tables["leads"].rules == {"timestamp before 1970-01-01 in created_at": 1}
    assert summary.tables["touches"].rules.get("timestamp before 1970-01-01 in occurred_at") == 1
    created = pd.read_parquet(out / "leads.parquet")["created_at"]
    assert (created >= pd.Timestamp("1970-01-01", tz="UTC")).all()


def test_naive_and_aware_timestamps_mixed_are_normalised_to_utc(tmp_path: Path) -> None:
    tables = tiny_tables()
    tables["leads"]["created_at"] = [
        "2024-03-01 09:00:00",  # naive: taken as UTC
        "2024-03-05T12:00:00+02:00",  # aware: converted
        "2024-04-01",
        "2024-04-10T00:00:00.000Z",
    ]

    summary, out = run(tmp_path, tables)

    assert summary.tables["leads"].rows_quarantined == 0
    created = pd.read_parquet(out / "leads.parquet")["created_at"]
    assert str(created.dtype) == "datetime64[us, UTC]"
    assert created[1] == pd.Timestamp("2024-03-05T10:00:00Z")


def test_parse_timestamps_formats() -> None:
    text = pd.Series(
        ["2024-03-05T12:00:00+02:00", "2024-03-05", "25/12/2024 10:00", None, "soon"],
        dtype="str",
    )
    parsed = lenient_timestamps(text)
    assert parsed.tolist()[:3] == [
        pd.Timestamp("2024-03-05T10:00:00Z"),
        pd.Timestamp("2024-03-05T00:00:00Z"),
        pd.Timestamp("2024-12-25T10:00:00Z"),  # day first, since month 25 does not exist
    ]
    assert parsed[3:].isna().all()


# ----------------------------------------------------------------------------- coercion
def test_parse_numbers_with_digit_grouping() -> None:
    text = pd.Series(
        ["1,234.50", "1 234", "12_000", "1\u202f000", "-3", "1e3", "1234,5", "12,34", "x"],
        dtype="str",
    )
    parsed = lenient_numbers(text).tolist()
    assert parsed[:6] == [1234.5, 1234.0, 12000.0, 1000.0, -3.0, 1000.0]
    assert all(pd.isna(value) for value in parsed[6:])  # ambiguous commas; not a number


def test_numbers_as_text_with_thousands_separators_pass(tmp_path: Path) -> None:
    tables = tiny_tables()
    tables["campaigns"]["spend"] = ["1,234.50", "12 000", "1_000"]
    tables["accounts"]["employees"] = ["1,200", "NaN", None]  # a null token, not an error

    summary, out = run(tmp_path, tables, parse_params({}))

    assert summary.passed
    spend = pd.read_parquet(out / "campaigns.parquet")["spend"].tolist()
    assert spend == [1234.5, 12000.0, 1000.0]


def test_mixed_case_categories_are_normalised_not_quarantined(tmp_path: Path) -> None:
    tables = tiny_tables()
    tables["touches"].loc[0, "touch_type"] = " Email_Open"
    tables["leads"].loc[0, "seniority"] = "C_LEVEL"
    tables["leads"].loc[1, "job_title"] = "  Buyer "

    summary, out = run(tmp_path, tables, parse_params({}))

    assert summary.tables["touches"].normalised == {"touch_type": 1}
    assert summary.tables["leads"].normalised == {"seniority": 1, "job_title": 1}
    assert pd.read_parquet(out / "touches.parquet").loc[0, "touch_type"] == "email_open"
    leads = pd.read_parquet(out / "leads.parquet")
    assert leads.loc[0, "seniority"] == "c_level"
    assert leads.loc[1, "job_title"] == "Buyer"  # stripped, case kept (not a category)
    report = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert report["tables"]["touches"]["normalised"] == {"touch_type": 1}


def test_extra_columns_kept_where_allowed_dropped_elsewhere(tmp_path: Path) -> None:
    tables = tiny_tables()
    tables["leads"]["lead_score_crm"] = ["10", "20", None, "5"]
    tables["touches"]["utm_source"] = "google"

    summary, out = run(tmp_path, tables)

    leads = pq.read_table(out / "leads.parquet")
    assert leads.column_names[-1] == "lead_score_crm"
    assert "utm_source" not in pq.read_table(out / "touches.parquet").column_names
    assert summary.tables["touches"].dropped_columns == ["utm_source"]


def test_absent_nullable_columns_are_added_as_nulls(tmp_path: Path) -> None:
    tables = tiny_tables()
    tables["leads"] = tables["leads"][["lead_id", "created_at"]]

    summary, out = run(tmp_path, tables)

    leads = pq.read_table(out / "leads.parquet")
    assert leads.schema.equals(contract.LEADS.arrow_schema(), check_metadata=False)
    assert "seniority" in summary.tables["leads"].added_columns


def test_headers_differing_in_case_are_matched() -> None:
    frame = pd.DataFrame({" Lead_ID": ["L1"], "CREATED_AT": ["2024-01-01"]}, dtype="str")
    notes = CoercionNotes()
    typed, failures = coerce(contract.LEADS, frame, notes=notes)
    assert typed.loc[0, "lead_id"] == "L1"
    assert not failures
    assert notes.renamed == {" Lead_ID": "lead_id", "CREATED_AT": "created_at"}


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (
            pd.DataFrame({"lead_id": ["L1"]}),
            "leads.csv: missing required column 'created_at' (columns: lead_id)",
        ),
        (
            pd.DataFrame({"lead_id;created_at": ["L1;2024-01-01"]}),
            "leads.csv: missing required column 'lead_id' (the header is one column "
            "'lead_id;created_at': wrong delimiter?)",
        ),
        (
            pd.DataFrame({"lead_id": ["L1", "L2"], "created_at": ["soon", "later"]}),
            "leads.csv: column 'created_at' is mistyped: none of its 2 values is a timestamp "
            "(e.g. 'soon')",
        ),
    ],
)
def test_table_level_coercion_failures(frame: pd.DataFrame, message: str) -> None:
    with pytest.raises(UserError) as error:
        coerce(contract.LEADS, frame.astype("str"), source="leads.csv")
    assert str(error.value) == message


# ----------------------------------------------------------------------------- stage failures
def test_threshold_failure_keeps_previous_output(tmp_path: Path) -> None:
    raw = write_tables(tiny_tables(), tmp_path / "raw")
    out, report = tmp_path / "validated", tmp_path / "report"
    validate_directory(raw, out, report, parse_params({}), now=NOW)
    before = {path: path.read_bytes() for path in out.rglob("*") if path.is_file()}

    tables = tiny_tables()
    tables["touches"].loc[[0, 4], "occurred_at"] = "2024-01-01T00:00:00Z"
    write_tables(tables, raw)
    with pytest.raises(UserError) as error:
        validate_directory(raw, out, report, parse_params({}), now=NOW)

    assert str(error.value) == (
        f"{raw / 'touches.csv'}: 2 of 5 rows (40.0%) quarantined > 1.0% allowed "
        "(top rule: occurred_at before lead created_at, 2 rows); "
        f"report: {report / 'index.html'}"
    )
    after = {path: path.read_bytes() for path in out.rglob("*") if path.is_file()}
    assert after == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".validated")]
    failed = json.loads((report / "summary.json").read_text())
    assert failed["passed"] is False
    assert failed["tables"]["touches"]["rules"] == {"occurred_at before lead created_at": 2}


def test_missing_leads_table(tmp_path: Path) -> None:
    tables = tiny_tables()
    del tables["leads"]
    with pytest.raises(UserError, match=r"raw: no leads table .* it is required"):
        run(tmp_path, tables)


# ----------------------------------------------------------------------------- report
def test_report_summary_and_data_docs(tmp_path: Path) -> None:
    tables = tiny_tables()
    tables["sales_events"].loc[2, "stage"] = "qualified"
    raw = write_tables(tables, tmp_path / "raw")
    (raw / "import.json").write_text('{"categorical": []}')

    validate_directory(raw, tmp_path / "out", tmp_path / "report", lenient(), now=NOW)

    report = tmp_path / "report"
    summary = json.loads((report / "summary.json").read_text())
    events = summary["tables"]["sales_events"]
    assert (events["rows_in"], events["rows_valid"], events["rows_quarantined"]) == (5, 4, 1)
    assert events["rules"] == {"unknown stage": 1}
    assert events["examples"] == {"unknown stage": ["L2"]}
    assert summary["horizon"] == "2024-04-12T00:00:00+00:00"
    assert summary["horizon_fixed"] is False
    page = (report / "data_docs" / "sales_events.html").read_text()
    assert "expect_column_values_to_be_in_set" in page or "values must belong to" in page
    assert "sales_events" in (report / "index.html").read_text()
    suite = json.loads((report / "suites" / "leads.json").read_text())
    assert suite["name"] == "leadscore.leads"
    assert (tmp_path / "out" / "import.json").read_text() == '{"categorical": []}'


def test_dirty_simulator_data_every_defect_found(tmp_path: Path, dirty_raw: Path) -> None:
    """Each injected defect is quarantined (event_after_horizon needs a fixed horizon), and
    mixed case is normalised instead."""
    horizon = pd.Timestamp(GenerateParams().start, tz="UTC") + pd.DateOffset(
        months=GenerateParams().months
    )
    params = parse_params(
        {"validate": {"max_quarantine_share": 1.0}, "data": {"horizon": horizon.isoformat()}}
    )
    summary = validate_directory(dirty_raw, tmp_path / "out", tmp_path / "report", params)
    defects = pd.read_parquet(dirty_raw / "defects.parquet")

    expected = {
        "duplicate_id": ("leads", "duplicate id"),
        "orphan_event": ("touches", "lead_id not in leads"),
        "event_before_creation": ("touches", "occurred_at before lead created_at"),
        "event_after_horizon": ("sales_events", "occurred_at after horizon"),
        "unknown_stage": ("sales_events", "unknown stage"),
        "negative_spend": ("campaigns", "negative spend"),
        "negative_amount": ("sales_events", "negative amount"),
        "missing_required_value": ("leads", "missing created_at"),
    }
    assert set(expected) | {"mixed_case_category"} == set(defects["kind"])
    for kind, (table, rule) in expected.items():
        injected = defects[defects["kind"] == kind]
        assert summary.tables[table].rules.get(rule, 0) >= len(injected) > 0, kind
        bad = quarantine(tmp_path / "out", table)
        key = contract.TABLES[table].key or "lead_id"
        flagged = set(bad.loc[bad[REASON_COLUMN].str.contains(rule, regex=False), key])
        assert set(injected["key"]) <= flagged, kind
    mixed = (defects["kind"] == "mixed_case_category").sum()
    assert summary.tables["touches"].normalised["touch_type"] == mixed


def test_unparseable_required_value_has_one_reason(tmp_path: Path) -> None:
    tables = tiny_tables()
    tables["leads"].loc[3, "created_at"] = "31/02/2024"  # no such day

    _, out = run(tmp_path, tables)

    bad = quarantine(out, "leads")
    assert bad[REASON_COLUMN].tolist() == ["unparseable timestamp in created_at"]
    assert bad["created_at"].tolist() == ["31/02/2024"]
