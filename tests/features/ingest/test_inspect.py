"""`leadscore inspect`: profiles, roles and drafts that `leadscore import` accepts.

The shipped samples go all the way: inspect → (the outcome chosen as the draft's comments say)
→ the real importer → the real validation stage, which must pass.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from features.errors import UserError
from features.ingest.importers import import_export
from features.ingest.inspect import inspect_export, profile_file, profile_frame
from features.ingest.mapping import load_mapping
from features.params import load_params
from features.validation.validate import validate_directory
from pipelines.cli import app

REPO = Path(__file__).resolve().parents[3]
SAMPLES = REPO / "data" / "samples"


def _choose_outcome(draft: str, column: str | None = None) -> str:
    """What the draft's comments ask of a person: keep one `converted` line; to pick another
    candidate, comment out the active one and uncomment that one."""
    if column is None:
        return draft
    lines = draft.splitlines()
    active = [i for i, line in enumerate(lines) if line.startswith("  converted:")]
    chosen = [
        i for i, line in enumerate(lines) if line.startswith(f'  # converted: {{column: "{column}"')
    ]
    assert len(active) == 1, draft
    assert len(chosen) == 1, draft
    lines[active[0]] = "  # " + lines[active[0]].strip()
    lines[chosen[0]] = "  " + lines[chosen[0]].removeprefix("  # ")
    return "\n".join(lines) + "\n"


def _import_and_validate(draft: str, source: Path, tmp_path: Path) -> tuple[Path, dict[str, int]]:
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(draft, encoding="utf-8")
    load_mapping(mapping)  # the draft is a valid mapping
    raw = tmp_path / "raw"
    raw.mkdir()
    import_export(mapping, source, raw)
    summary = validate_directory(
        raw, tmp_path / "validated", tmp_path / "report", load_params(REPO / "params.yaml")
    )
    assert summary.passed, summary.failure
    quarantined = {name: table.rows_quarantined for name, table in summary.tables.items()}
    assert not any(quarantined.values()), quarantined
    return raw, {name: table.rows_in for name, table in summary.tables.items()}


# ------------------------------------------------------------------ shipped samples
@pytest.mark.parametrize(
    ("sample", "tables"),
    [
        ("salesforce", {"campaigns", "accounts", "leads", "touches", "sales_events"}),
        ("hubspot", {"leads", "sales_events"}),
    ],
)
def test_directory_samples_draft_a_tables_mapping_import_accepts(
    tmp_path: Path, sample: str, tables: set[str]
) -> None:
    inspection = inspect_export(SAMPLES / sample)
    assert inspection.format == "tables"
    raw, rows = _import_and_validate(inspection.draft, SAMPLES / sample, tmp_path)
    assert set(rows) == tables
    events = pd.read_parquet(raw / "sales_events.parquet")
    # The outcome of a tables export is its events: won and lost only from closed records.
    assert {"accepted", "won", "lost"} <= set(events["stage"])
    shipped = load_mapping(
        REPO / "mappings" / f"{sample}{'_leads' if sample == 'salesforce' else ''}.yaml"
    )
    assert shipped.format == "tables"
    # Post-outcome columns never become lead attributes.
    leads = pd.read_parquet(raw / "leads.parquet")
    for column in ("Status", "Rating", "Lead Status", "Lifecycle Stage", "IsConverted"):
        assert column not in leads.columns


def test_salesforce_draft_finds_what_the_shipped_mapping_declares() -> None:
    draft = yaml.safe_load(inspect_export(SAMPLES / "salesforce").draft)
    tables = draft["tables"]
    (leads,) = tables["leads"]
    assert leads["columns"] == {
        "lead_id": "Id",
        "created_at": "CreatedDate",
        "account_id": "Id",
        "source": "LeadSource",
        "job_title": "Title",
        "country": "Country",
    }
    events = {entry["columns"]["occurred_at"]: entry for entry in tables["sales_events"]}
    assert events["ConvertedDate"]["where"] == {"IsConverted": ["true"]}
    close = events["ConvertedOpportunity.CloseDate"]
    assert close["values"] == {"stage": {"Closed Lost": "lost", "Closed Won": "won"}}
    (touches,) = tables["touches"]
    assert touches["columns"]["lead_id"] == "LeadId"
    assert touches["where"] == {"HasResponded": ["true"]}
    assert tables["campaigns"][0]["columns"]["spend"] == "ActualCost"


def test_hubspot_contacts_flat_draft_needs_only_the_outcome_choice(tmp_path: Path) -> None:
    source = SAMPLES / "hubspot" / "contacts.csv"
    inspection = inspect_export(source)
    profile = inspection.profiles[0]
    assert profile.column("Record ID").role == "id"
    assert profile.column("Create Date").role == "created_at"
    for column in ("Lead Status", "Number of Sessions", "Became a Customer Date"):
        assert profile.column(column).role == "post_outcome", column
    assert profile.column("Lifecycle Stage").positive == ("Customer", "Evangelist")
    raw, rows = _import_and_validate(_choose_outcome(inspection.draft), source, tmp_path)
    assert rows == {"leads": 560}
    leads = pd.read_parquet(raw / "leads.parquet")
    assert {"Original Source", "Job Title", "Country/Region"} <= set(leads.columns)
    assert "Number of Sessions" not in leads.columns
    assert leads["outcome_converted"].sum() == 98


def test_bank_marketing_duration_is_post_outcome_and_y_the_outcome(tmp_path: Path) -> None:
    source = SAMPLES / "bank-additional-full.csv.gz"
    inspection = inspect_export(source)
    profile = inspection.profiles[0]
    assert profile.sep == ";"
    assert profile.na_values == ("unknown",)
    assert profile.column("duration").role == "post_outcome"
    assert profile.column("y").role == "outcome"
    assert profile.column("y").positive == ("yes",)
    assert profile.column("poutcome").role == "feature"  # the previous campaign's outcome
    assert profile.column("euribor3m").role == "feature"
    raw, rows = _import_and_validate(inspection.draft, source, tmp_path)
    assert rows == {"leads": 41188}
    assert int(pd.read_parquet(raw / "leads.parquet")["outcome_converted"].sum()) == 4640


# ------------------------------------------------------------------ profiles and roles
def test_types_ids_and_missing_values_are_guessed(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text(
        "Lead ID;Signup Date;Visits;Plan;Subscribed;Notes\n"
        + "".join(
            f"L{i};{10 + i % 18:02d}/03/2024 09:{i % 60:02d};{1000 + i:,};"
            f"{['basic', 'pro', 'N/A'][i % 3]};{'yes' if i % 4 == 0 else 'no'};note {i}\n"
            for i in range(120)
        ),
        encoding="cp1252",
    )
    profile = profile_file(path)
    assert profile.sep == ";"
    assert profile.na_values == ("N/A",)
    kinds = {column.name: column.kind for column in profile.columns}
    assert kinds == {
        "Lead ID": "text",
        "Signup Date": "timestamp",
        "Visits": "number",
        "Plan": "text",
        "Subscribed": "text",
        "Notes": "text",
    }
    assert profile.column("Signup Date").timestamp_format == "%d/%m/%Y %H:%M"
    assert profile.column("Plan").missing_share == pytest.approx(40 / 120, abs=1e-4)
    roles = {column.name: column.role for column in profile.columns}
    assert roles["Lead ID"] == "id"
    assert roles["Signup Date"] == "created_at"
    assert roles["Subscribed"] == "outcome"
    assert roles["Notes"] == "ignore"  # free text: every row differs
    draft = inspect_export(path).draft
    assert 'timestamp_format: "%d/%m/%Y %H:%M"' in draft
    mapping = tmp_path / "m.yaml"
    mapping.write_text(draft)
    out = tmp_path / "raw"
    out.mkdir()
    import_export(mapping, path, out)
    leads = pd.read_parquet(out / "leads.parquet")
    assert leads["outcome_converted"].sum() == 30
    assert leads["created_at"].iloc[0] == pd.Timestamp("2024-03-10T09:00Z")


def test_a_feature_that_alone_gives_the_outcome_away_is_post_outcome() -> None:
    rng = np.random.default_rng(0)
    won = rng.random(400) < 0.3
    frame = pd.DataFrame(
        {
            "Converted": np.where(won, "1", "0"),
            "Deal Size": np.where(won, rng.uniform(5e3, 9e3, 400), rng.uniform(0, 100, 400)),
            "Pages": rng.integers(0, 20, 400),
            "Employees": (rng.lognormal(4, 1, 400) + 5 * won).round(),
        }
    ).astype(str)
    columns = {column.name: column for column in profile_frame(frame)}
    assert columns["Converted"].role == "outcome"
    assert columns["Converted"].positive == ("1",)
    assert columns["Deal Size"].role == "post_outcome"
    assert "ROC AUC 1.00" in columns["Deal Size"].reason
    assert columns["Pages"].role == "feature"
    assert "SUSPICIOUS" not in columns["Pages"].reason


def test_counters_are_post_outcome_only_in_exports_with_creation_times() -> None:
    counts = [str(i % 7) for i in range(60)]
    plain = pd.DataFrame({"Number of Sessions": counts, "y": ["yes", "no"] * 30})
    assert profile_frame(plain)[0].role == "feature"  # no dates: may be frozen at capture
    dated = plain.assign(**{"Create Date": [f"2024-01-{1 + i % 28:02d}" for i in range(60)]})
    by_name = {column.name: column for column in profile_frame(dated)}
    assert by_name["Number of Sessions"].role == "post_outcome"
    assert "export date" in by_name["Number of Sessions"].reason


def test_positive_values_skip_negations() -> None:
    frame = pd.DataFrame(
        {"Status": ["Closed - Converted", "Closed - Not Converted", "Working - Contacted"] * 20}
    )
    (status,) = profile_frame(frame)
    assert status.role == "post_outcome"
    assert status.positive == ("Closed - Converted",)


def test_without_an_outcome_the_draft_says_choose_and_import_refuses(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text(
        "email,city\n" + "".join(f"a{i}@x.org,{['Oslo', 'Rome'][i % 2]}\n" for i in range(20))
    )
    draft = inspect_export(path).draft
    assert "converted: {column: null}  # CHOOSE" in draft
    mapping = tmp_path / "m.yaml"
    mapping.write_text(draft)
    with pytest.raises(UserError, match="no outcome has a column"):
        load_mapping(mapping)


def test_draft_values_stay_text_under_yaml_1_2(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text("won,n\n" + "".join(f"{['yes', 'no'][i % 2]},{i % 5}\n" for i in range(30)))
    draft = inspect_export(path).draft
    mapping = tmp_path / "m.yaml"
    mapping.write_text(draft)
    loaded = load_mapping(mapping)
    assert loaded.format == "flat"
    assert loaded.outcome["converted"].positive == ("yes",)  # type: ignore[union-attr]
    assert re.search(r'positive: \["yes"\]', draft)


# ------------------------------------------------------------------ the command
def test_cli_writes_the_draft_to_stdout_or_a_file(tmp_path: Path) -> None:
    source = str(SAMPLES / "hubspot" / "contacts.csv")
    shown = CliRunner().invoke(app, ["inspect", source])
    assert shown.exit_code == 0, shown.output
    assert shown.stdout.startswith("# Draft mapping by `leadscore inspect`")
    out = tmp_path / "drafts" / "contacts.yaml"
    written = CliRunner().invoke(app, ["inspect", source, "--out", str(out)])
    assert written.exit_code == 0
    assert written.stdout == ""
    assert out.read_text() == shown.stdout
    assert load_mapping(out).format == "flat"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "not found"),
        (b"PK\x03\x04\x00\x00binary", "not CSV text (looks like an Excel workbook)"),
        (b"a,b\n", "header only, no rows"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    path = tmp_path / "export.csv"
    if content is not None:
        path.write_bytes(content)
    result = CliRunner().invoke(app, ["inspect", str(path)])
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0
    assert message in result.stderr
    assert "Traceback" not in result.output
