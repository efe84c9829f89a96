"""Real CRM exports (issue 11): the one canonical-name rule, `where` row filters, `values` maps,
one file feeding several tables and entries, and CRM date formats. Real files, real imports."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from features import contract
from features.errors import UserError
from features.ingest.importers import import_export
from features.ingest.mapping import load_mapping


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def run_import(tmp_path: Path, mapping: str, files: dict[str, str]) -> Path:
    """Write the export files and the mapping, import, return the output directory."""
    export = tmp_path / "export"
    export.mkdir(exist_ok=True)
    for name, text in files.items():
        write(export / name, text)
    mapping_path = write(tmp_path / "mapping.yaml", mapping)
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    source = export if len(files) > 1 or "format: tables" in mapping else export / next(iter(files))
    import_export(mapping_path, source, out)
    return out


def import_error(tmp_path: Path, mapping: str, files: dict[str, str]) -> str:
    with pytest.raises(UserError) as caught:
        run_import(tmp_path, mapping, files)
    message = str(caught.value)
    assert "\n" not in message
    assert not list((tmp_path / "out").iterdir())  # nothing half-written
    return message


# ----------------------------------------------------------------------------- the one rule
@pytest.mark.parametrize(
    ("header", "table", "expected"),
    [
        ("country", "leads", "country"),
        ("Country", "leads", "country"),
        ("  COUNTRY ", "leads", "country"),
        ("Job_Title", "leads", "job_title"),
        ("Lead Country", "leads", None),
        ("job title", "leads", None),
        ("Stage", "sales_events", "stage"),
        ("Stage", "leads", None),
        ("Lead_ID", "leads", "lead_id"),
    ],
)
def test_canonical_name_is_case_and_space_blind(
    header: str, table: str, expected: str | None
) -> None:
    assert contract.canonical_name(header, table) == expected


def test_lead_attribute_is_only_the_feature_attributes() -> None:
    assert contract.lead_attribute(" Country") == "country"
    assert contract.lead_attribute("Lead_ID") is None  # a key, not an attribute
    assert contract.LEAD_ATTRIBUTES == ("source", "job_title", "seniority", "department", "country")


# ----------------------------------------------------------------------------- flat: names
FLAT = """
Lead Number,Country,Source,Job_Title,Converted
0001,PT,Web,CTO,Yes
0002,ES,Ads,CEO,No
0003,pt,web,CTO,yes
"""


def test_flat_capitalised_canonical_columns_are_written_canonically(tmp_path: Path) -> None:
    out = run_import(
        tmp_path,
        """
        format: flat
        id: Lead Number
        order: file
        outcome: {converted: {column: Converted, positive: [yes], negative: [no]}}
        categorical: [Country, Source, Job_Title]
        """,
        {"leads.csv": FLAT},
    )
    leads = pd.read_parquet(out / "leads.parquet")
    assert {"country", "source", "job_title"} <= set(leads.columns)
    assert not {"Country", "Source", "Job_Title"} & set(leads.columns)
    assert leads["country"].tolist() == ["PT", "ES", "pt"]
    assert leads["lead_id"].tolist() == ["0001", "0002", "0003"]  # leading zeros kept
    manifest = json.loads((out / "import.json").read_text())
    assert manifest["canonical"] == ["country", "source", "job_title"]
    assert manifest["categorical"] == []


@pytest.mark.parametrize(
    ("categorical", "numeric", "expected"),
    [
        ("[Country, country]", "[]", "columns 'Country' and 'country' are both the canonical"),
        ("[]", "[Country]", "column 'Country' is the canonical lead column 'country', which is"),
        ("[Lead_ID]", "[]", "would overwrite the column leadscore writes"),
        ("[Campaign_Id]", "[]", "canonical lead column 'campaign_id'"),
    ],
)
def test_flat_canonical_name_clashes_are_one_line(
    tmp_path: Path, categorical: str, numeric: str, expected: str
) -> None:
    text = "Lead_ID,Country,country,Campaign_Id,Converted\n1,PT,pt,c,yes\n"
    mapping = write(
        tmp_path / "m.yaml",
        f"""
        format: flat
        order: file
        outcome: {{converted: {{column: Converted, positive: [yes]}}}}
        categorical: {categorical}
        numeric: {numeric}
        """,
    )
    write(tmp_path / "e.csv", text)
    with pytest.raises(UserError, match=expected) as caught:
        load_mapping(mapping)
    assert str(caught.value).startswith(str(mapping))


# ----------------------------------------------------------------------------- flat: where, values
DEALS = """
Id,Status,Do Not Email,Spend,Country
1,Won,Yes,"1,200",Deutschland
2,Lost,No,300,Portugal
3,Open,No,x,Portugal
4, won ,yes,"12,500.50",Spain
"""


def test_flat_where_and_values(tmp_path: Path) -> None:
    out = run_import(
        tmp_path,
        """
        format: flat
        id: Id
        order: file
        where: {Status: [Won, Lost]}
        outcome: {converted: {column: Status, positive: [won], negative: [lost]}}
        categorical: [Country]
        numeric: [Do Not Email, Spend]
        values:
          Do Not Email: {Yes: 1, No: 0}
          country: {Deutschland: DE, Portugal: PT}
        """,
        {"deals.csv": DEALS},
    )
    leads = pd.read_parquet(out / "leads.parquet")
    # The open deal (whose Spend is not even a number) is filtered out before anything is read.
    assert leads["lead_id"].tolist() == ["1", "2", "4"]
    assert leads["outcome_converted"].tolist() == [True, False, True]
    assert leads["Do Not Email"].tolist() == [1.0, 0.0, 1.0]
    assert leads["Spend"].tolist() == [1200.0, 300.0, 12500.5]
    assert leads["country"].tolist() == ["DE", "PT", "Spain"]  # unmapped kept: open vocabulary
    assert json.loads((out / "import.json").read_text())["rows"] == 3


def test_flat_yes_no_declared_numeric_says_what_to_do(tmp_path: Path) -> None:
    message = import_error(
        tmp_path,
        """
        format: flat
        id: Id
        order: file
        outcome: {converted: {column: Status, positive: [won]}}
        numeric: [Do Not Email]
        """,
        {"deals.csv": DEALS},
    )
    assert "column 'Do Not Email' (numeric): not a number in 4 of 4 rows" in message
    assert "declare it categorical or map it with `values`" in message


def test_flat_where_on_a_missing_column_lists_the_columns(tmp_path: Path) -> None:
    message = import_error(
        tmp_path,
        """
        format: flat
        order: file
        where: {Stage: [Won]}
        outcome: {converted: {column: Status, positive: [won]}}
        """,
        {"deals.csv": DEALS},
    )
    assert "column 'Stage' named in mapping" in message
    assert "(where)" in message
    assert "columns are: 'Id', 'Status'" in message


def test_values_on_an_undeclared_column_is_a_mapping_error(tmp_path: Path) -> None:
    message = import_error(
        tmp_path,
        """
        format: flat
        order: file
        outcome: {converted: {column: Status, positive: [won]}}
        categorical: [Country]
        values: {Status: {Won: 1}}
        """,
        {"deals.csv": DEALS},
    )
    assert "values: 'Status' is not a declared categorical or numeric column" in message


# ----------------------------------------------------------------------------- tables
OPPORTUNITIES = """
Id,CreatedDate,CloseDate,StageName,Amount,AccountId,OwnerId
006A,3/1/2017,4/15/2017,Closed Won,"12,500.00",001X,005R
006B,3/2/2017,3/30/2017,closed lost ,,001Y,005S
006C,3/3/2017,,Prospecting,900,001X,005R
006D,3/4/2017,,Qualification,,,005S
006E,3/5/2017,,Needs Analysis,100,001Z,005S
"""

ISSUE_MAPPING = """
format: tables
read: {timestamp_format: "%m/%d/%Y"}
tables:
  leads: {file: opportunities.csv, columns: {lead_id: Id, created_at: CreatedDate, account_id: AccountId},
          where: {StageName: [Prospecting, Qualification, Closed Won, Closed Lost]}}
  sales_events:
    - {file: opportunities.csv, columns: {lead_id: Id, occurred_at: CloseDate, stage: StageName, amount: Amount, owner_id: OwnerId},
       values: {stage: {Closed Won: won, Closed Lost: lost}}, where: {StageName: [Closed Won, Closed Lost]}}
"""  # noqa: E501 (the issue's text, exactly as written)


def test_the_issue_mapping_works_as_written(tmp_path: Path) -> None:
    out = run_import(tmp_path, ISSUE_MAPPING, {"opportunities.csv": OPPORTUNITIES})
    leads = pd.read_parquet(out / "leads.parquet")
    assert leads["lead_id"].tolist() == ["006A", "006B", "006C", "006D"]  # 006E filtered out
    assert leads["created_at"].iloc[0] == pd.Timestamp("2017-03-01", tz="UTC")
    assert leads["account_id"].tolist()[:2] == ["001X", "001Y"]
    events = pd.read_parquet(out / "sales_events.parquet")
    assert events["lead_id"].tolist() == ["006A", "006B"]
    assert events["stage"].tolist() == ["won", "lost"]  # " closed lost " trimmed, any case
    assert events["occurred_at"].tolist() == [
        pd.Timestamp("2017-04-15", tz="UTC"),
        pd.Timestamp("2017-03-30", tz="UTC"),
    ]
    assert events["amount"].iloc[0] == 12500.0
    assert pd.isna(events["amount"].iloc[1])
    assert events["owner_id"].tolist() == ["005R", "005S"]


def test_one_file_feeds_several_entries_of_one_table(tmp_path: Path) -> None:
    """One opportunity row → an `accepted` event at its creation and a won/lost at its close."""
    mapping = ISSUE_MAPPING.replace(
        "  sales_events:\n",
        "  sales_events:\n"
        "    - {file: opportunities.csv, columns: {lead_id: Id, occurred_at: CreatedDate},\n"
        "       constants: {stage: accepted},\n"
        "       where: {StageName: [Prospecting, Qualification, Closed Won, Closed Lost]}}\n",
    )
    out = run_import(tmp_path, mapping, {"opportunities.csv": OPPORTUNITIES})
    events = pd.read_parquet(out / "sales_events.parquet")
    assert events["stage"].tolist() == ["accepted"] * 4 + ["won", "lost"]
    assert events["lead_id"].tolist() == ["006A", "006B", "006C", "006D", "006A", "006B"]
    accepted = events[events["stage"] == "accepted"].set_index("lead_id")["occurred_at"]
    leads = pd.read_parquet(out / "leads.parquet").set_index("lead_id")["created_at"]
    assert (accepted == leads).all()
    # `Amount` is named like the canonical `amount`: the accepted entry takes it as it is.
    assert events["amount"].iloc[0] == 12500.0


def test_an_unmapped_stage_value_is_one_error_with_count_and_examples(tmp_path: Path) -> None:
    mapping = ISSUE_MAPPING.replace(
        "where: {StageName: [Closed Won, Closed Lost]}", "where: {CloseDate: [4/15/2017]}"
    ).replace("{Closed Won: won, Closed Lost: lost}", "{Closed Lost: lost}")
    opportunities = OPPORTUNITIES + "006F,3/6/2017,4/15/2017,Closed Won,1,001X,005R\n"
    message = import_error(tmp_path, mapping, {"opportunities.csv": opportunities})
    assert "opportunities.csv: column 'StageName' (sales_events.stage)" in message
    assert "neither mapped in `values` nor one of ['assigned'" in message
    assert "in 2 of 2 rows, e.g. 'Closed Won'" in message


def test_values_already_canonical_are_kept_in_canonical_spelling(tmp_path: Path) -> None:
    opportunities = OPPORTUNITIES.replace("Closed Won", "WON")
    out = run_import(
        tmp_path,
        ISSUE_MAPPING.replace("[Closed Won, Closed Lost]}}", "[won, Closed Lost]}}"),
        {"opportunities.csv": opportunities},
    )
    assert pd.read_parquet(out / "sales_events.parquet")["stage"].tolist() == ["won", "lost"]


def test_a_value_map_onto_a_non_canonical_stage_is_a_mapping_error(tmp_path: Path) -> None:
    message = import_error(
        tmp_path,
        ISSUE_MAPPING.replace("Closed Won: won", "Closed Won: closed"),
        {"opportunities.csv": OPPORTUNITIES},
    )
    assert "tables.sales_events[0].values.stage" in message or "values.stage" in message
    assert "'closed' is not a canonical stage" in message


def test_where_that_keeps_no_row_is_an_error(tmp_path: Path) -> None:
    message = import_error(
        tmp_path,
        ISSUE_MAPPING.replace("[Closed Won, Closed Lost]}}", "[Won, Lost]}}"),
        {"opportunities.csv": OPPORTUNITIES},
    )
    assert "no row has one of ['Won', 'Lost'] in column 'StageName' (where)" in message
    assert "'Closed Won'" in message


@pytest.mark.parametrize(
    ("text", "fmt", "expected"),
    [
        ("2017-03-01", None, "2017-03-01 00:00"),
        ("3/1/2017", "%m/%d/%Y", "2017-03-01 00:00"),
        ("01/03/2017 14:05", "%d/%m/%Y %H:%M", "2017-03-01 14:05"),
    ],
)
def test_common_crm_date_formats(tmp_path: Path, text: str, fmt: str | None, expected: str) -> None:
    read = f'read: {{timestamp_format: "{fmt}"}}' if fmt else ""
    out = run_import(
        tmp_path,
        f"""
        format: tables
        {read}
        tables:
          leads: {{file: l.csv, columns: {{lead_id: Id, created_at: Created}}}}
        """,
        {"l.csv": f"Id,Created\n1,{text}\n"},
    )
    created = pd.read_parquet(out / "leads.parquet")["created_at"]
    assert created.iloc[0] == pd.Timestamp(expected, tz="UTC")


def test_tables_export_columns_named_canonically_in_any_case(tmp_path: Path) -> None:
    out = run_import(
        tmp_path,
        """
        format: tables
        tables:
          leads: {file: l.csv, columns: {lead_id: Id}}
        """,
        {"l.csv": "Id,Created_At,Country, SOURCE \n1,2024-01-01,PT,Web\n"},
    )
    leads = pd.read_parquet(out / "leads.parquet")
    assert leads["country"].tolist() == ["PT"]
    assert leads["source"].tolist() == ["Web"]
    assert leads["created_at"].iloc[0] == pd.Timestamp("2024-01-01", tz="UTC")
    assert "Country" not in leads
