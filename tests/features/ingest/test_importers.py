"""Importers: flat exports and multi-table exports onto the canonical tables, real files."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from features import contract
from features.errors import UserError
from features.ingest.importers import copy_tables, import_export

REPO = Path(__file__).resolve().parents[3]
BANK_SAMPLE = REPO / "data" / "samples" / "bank-additional-full.csv.gz"
BANK_MAPPING = REPO / "mappings" / "bank_marketing.yaml"


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding=encoding)
    return path


CRM_EXPORT = """
Prospect ID;Created;Lead Source;country;Total Visits;Revenue;Converted;Tags;Notes
p-1;2024-01-03 10:00:00;Google;PT;3;"1,200.50";Yes;Will revert;a
p-2;2024-01-01T08:30:00Z;Select;ES;;"12,000";no;Ringing;b
p-3;2024-01-02;Direct;;7;950;YES;;c
p-4;2024-01-04 12:00:00+02:00;Google;PT;1;0;No;Closed;d
"""

CRM_MAPPING = """
format: flat
read: {sep: ";", na_values: [Select]}
id: Prospect ID
created_at: Created
outcome:
  converted: {column: Converted, positive: [yes], negative: [no]}
  accepted: {column: null}
categorical: [Lead Source, country]
numeric: [Total Visits, Revenue]
post_outcome: [Tags]
"""


@pytest.fixture
def crm(tmp_path: Path) -> tuple[Path, Path]:
    return write(tmp_path / "mapping.yaml", CRM_MAPPING), write(tmp_path / "export.csv", CRM_EXPORT)


# ----------------------------------------------------------------------------- flat
def test_flat_import_writes_leads_and_manifest(tmp_path: Path, crm: tuple[Path, Path]) -> None:
    mapping, export = crm
    out = tmp_path / "out"
    out.mkdir()
    import_export(mapping, export, out)

    leads = pd.read_parquet(out / "leads.parquet")
    assert list(leads.columns) == [
        "lead_id",
        "created_at",
        "Lead Source",
        "country",
        "Total Visits",
        "Revenue",
        "outcome_converted",
    ]
    assert leads["lead_id"].tolist() == ["p-1", "p-2", "p-3", "p-4"]
    assert str(leads["created_at"].dt.tz) == "UTC"
    assert leads["created_at"].tolist() == [
        pd.Timestamp("2024-01-03 10:00", tz="UTC"),
        pd.Timestamp("2024-01-01 08:30", tz="UTC"),
        pd.Timestamp("2024-01-02 00:00", tz="UTC"),
        pd.Timestamp("2024-01-04 10:00", tz="UTC"),
    ]
    assert leads["Lead Source"][0] == "Google"
    assert pd.isna(leads["Lead Source"][1])  # `Select` is in na_values
    assert leads["country"].tolist()[:2] == ["PT", "ES"]
    assert leads["Revenue"].tolist() == [1200.5, 12000.0, 950.0, 0.0]
    assert leads["Total Visits"].dtype == "float64"
    assert pd.isna(leads["Total Visits"][1])
    assert leads["outcome_converted"].tolist() == [True, False, True, False]
    assert "Tags" not in leads
    assert "Notes" not in leads

    manifest = json.loads((out / "import.json").read_text())
    assert manifest["format"] == "flat"
    assert manifest["source_file"] == "export.csv"
    assert manifest["order"] == "time"
    assert manifest["has_timestamps"] is True
    assert manifest["id"] == "Prospect ID"
    assert manifest["categorical"] == ["Lead Source"]
    assert manifest["canonical"] == ["country"]
    assert manifest["numeric"] == ["Total Visits", "Revenue"]
    assert manifest["post_outcome"] == ["Tags"]
    assert manifest["outcomes"]["converted"]["column"] == "Converted"
    assert manifest["outcomes"]["converted"]["positive"] == ["yes"]
    assert manifest["outcomes"]["converted"]["positives"] == 2
    assert "accepted" not in manifest["outcomes"]
    assert manifest["rows"] == 4


def test_flat_without_id_or_time_numbers_rows_in_file_order(tmp_path: Path) -> None:
    export = write(tmp_path / "e.csv", "a,b,won\nx,1,1\ny,2,0\nz,3,1.0\n")
    mapping = write(
        tmp_path / "m.yaml",
        """
        format: flat
        order: random
        outcome: {converted: {column: won, positive: [1]}}
        categorical: [a]
        numeric: [b]
        """,
    )
    out = tmp_path / "out"
    out.mkdir()
    import_export(mapping, export, out)
    leads = pd.read_parquet(out / "leads.parquet")
    assert leads["lead_id"].tolist() == ["row-1", "row-2", "row-3"]
    start = pd.Timestamp("2000-01-01", tz="UTC")
    assert leads["created_at"].tolist() == [start + pd.Timedelta(minutes=m) for m in (1, 2, 3)]
    assert leads["outcome_converted"].tolist() == [True, False, True]  # 1.0 matches 1
    manifest = json.loads((out / "import.json").read_text())
    assert manifest["order"] == "random"
    assert manifest["has_timestamps"] is False
    assert manifest["id"] is None


def test_bank_marketing_for_real(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    import_export(BANK_MAPPING, BANK_SAMPLE, out)
    leads = pd.read_parquet(out / "leads.parquet")
    manifest = json.loads((out / "import.json").read_text())

    assert len(leads) == 41_188 == manifest["rows"]
    assert "duration" not in leads
    assert "y" not in leads
    assert manifest["post_outcome"] == ["duration"]
    assert int(leads["outcome_converted"].sum()) == 4_640
    assert round(leads["outcome_converted"].mean(), 3) == 0.113
    assert manifest["outcomes"]["converted"]["positives"] == 4_640
    assert manifest["order"] == "random"
    assert manifest["has_timestamps"] is False
    assert leads["lead_id"].is_unique
    assert leads["created_at"].is_monotonic_increasing
    assert manifest["categorical"] == [
        "job",
        "marital",
        "education",
        "default",
        "housing",
        "loan",
        "contact",
        "month",
        "day_of_week",
        "poutcome",
    ]
    for name in manifest["numeric"]:
        assert leads[name].dtype == "float64"
        assert leads[name].notna().all()
    assert "unknown" not in set(leads["job"].dropna())  # `unknown` is missing
    assert leads["job"].isna().sum() == 330
    assert leads["euribor3m"].iloc[0] == pytest.approx(4.857)


def test_bank_marketing_sample_is_the_uci_file_unchanged() -> None:
    """The committed sample decompresses to the UCI file byte for byte (its SHA-256 is the one
    of ../shared/data/bank-marketing/bank-additional-full.csv, recorded in
    data/samples/README.md)."""
    import gzip
    import hashlib

    readme = (REPO / "data" / "samples" / "README.md").read_text()
    recorded = readme.split("SHA-256 of the uncompressed file: `")[1].split("`")[0]
    digest = hashlib.sha256(gzip.decompress(BANK_SAMPLE.read_bytes())).hexdigest()
    assert digest == recorded


def test_flat_parquet_export(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {"id": [10, 11, 12], "stage": ["won", "lost", "open"], "visits": [1, 2, None]}
    )
    frame.to_parquet(tmp_path / "e.parquet")
    mapping = write(
        tmp_path / "m.yaml",
        """
        format: flat
        id: id
        order: file
        outcome: {converted: {column: stage, positive: [won]}}
        numeric: [visits]
        """,
    )
    out = tmp_path / "out"
    out.mkdir()
    import_export(mapping, tmp_path / "e.parquet", out)
    leads = pd.read_parquet(out / "leads.parquet")
    assert leads["lead_id"].tolist() == ["10", "11", "12"]
    assert leads["outcome_converted"].tolist() == [True, False, False]
    assert leads["visits"].tolist()[:2] == [1.0, 2.0]


def test_one_outcome_column_defines_several_targets(tmp_path: Path) -> None:
    export = write(tmp_path / "e.csv", "stage,x\nwon,1\naccepted,2\nrejected,3\n")
    mapping = write(
        tmp_path / "m.yaml",
        """
        format: flat
        order: file
        outcome:
          converted: {column: stage, positive: [won]}
          accepted: {column: stage, positive: [accepted, won], negative: [rejected]}
        numeric: [x]
        """,
    )
    out = tmp_path / "out"
    out.mkdir()
    import_export(mapping, export, out)
    leads = pd.read_parquet(out / "leads.parquet")
    assert leads["outcome_converted"].tolist() == [True, False, False]
    assert leads["outcome_accepted"].tolist() == [True, True, False]


@pytest.mark.parametrize(
    ("export", "mapping", "message"),
    [
        (
            "id,won\n1,yes\n2,maybe\n3,Perhaps\n4,maybe\n",
            "outcome: {converted: {column: won, positive: [yes], negative: [no]}}",
            "column 'won' (outcome converted): neither positive ['yes'] nor negative ['no'] "
            "in 3 of 4 rows, e.g. 'maybe', 'Perhaps'",
        ),
        (
            "id,won\n1,yes\n2,\n",
            "outcome: {converted: {column: won, positive: [yes]}}",
            "column 'won' (outcome converted): no value (empty or in read.na_values) "
            "in 1 of 2 rows",
        ),
        (
            "id,won,visits\n1,yes,3\n2,no,three\n3,no,n/a\n",
            "outcome: {converted: {column: won, positive: [yes]}}\nnumeric: [visits]",
            "column 'visits' (numeric): not a number in 2 of 3 rows, e.g. 'three', 'n/a'",
        ),
        (
            'id,won,visits\n1,yes,"1,5"\n',
            "outcome: {converted: {column: won, positive: [yes]}}\nnumeric: [visits]",
            "set read.decimal: ','",
        ),
        (
            "id,won,Source\n1,yes,a\n",
            "outcome: {converted: {column: won, positive: [yes]}}\ncategorical: [source]",
            "column 'source' named in mapping",
        ),
    ],
)
def test_flat_bad_values_are_one_line(
    tmp_path: Path, export: str, mapping: str, message: str
) -> None:
    (tmp_path / "e.csv").write_text(export)
    (tmp_path / "m.yaml").write_text(f"format: flat\nid: id\norder: file\n{mapping}\n")
    with pytest.raises(UserError) as error:
        import_export(tmp_path / "m.yaml", tmp_path / "e.csv", tmp_path / "out")
    text = str(error.value)
    assert "\n" not in text
    assert text.startswith(str(tmp_path / "e.csv"))
    assert message in text


def test_missing_column_lists_the_file_columns(tmp_path: Path) -> None:
    columns = [f"c{i}" for i in range(30)]
    (tmp_path / "e.csv").write_text(",".join([*columns, "won"]) + "\n" + "1," * 30 + "yes\n")
    mapping = write(
        tmp_path / "m.yaml",
        "format: flat\norder: file\noutcome: {converted: {column: won, positive: [yes]}}\n"
        "categorical: [Lead Origin]\n",
    )
    with pytest.raises(UserError) as error:
        import_export(mapping, tmp_path / "e.csv", tmp_path / "out")
    assert str(error.value) == (
        f"{tmp_path / 'e.csv'}: column 'Lead Origin' named in mapping {mapping} (categorical) is "
        "not in the file; columns are: "
        + ", ".join(repr(c) for c in columns[:12])
        + ", … (19 more)"
    )


# ----------------------------------------------------------------------------- tables
TABLES_MAPPING = """
format: tables
tables:
  leads:
    file: mqls.csv
    columns: {lead_id: mql_id, created_at: first_contact_date, campaign_id: landing_page_id,
              source: origin}
    extra: [segment]
  sales_events:
    - {file: deals.csv, columns: {lead_id: mql_id, occurred_at: won_date, owner_id: sr_id,
                                  amount: revenue}, constants: {stage: won}}
    - {file: lost.csv, read: {sep: ";", decimal: ","}, columns: {lead_id: mql_id,
       occurred_at: lost_at}, constants: {stage: lost, amount: 0}}
"""


def test_tables_import_renames_and_fills_constants(tmp_path: Path) -> None:
    source = tmp_path / "export"
    source.mkdir()
    write(
        source / "mqls.csv",
        """
        mql_id,first_contact_date,landing_page_id,origin,segment,ignored
        m1,2018-01-02,lp1,paid_search,a,x
        m2,2018-01-03,lp2,organic,b,y
        m3,2018-01-05,,email,,z
        """,
    )
    write(
        source / "deals.csv",
        """
        mql_id,won_date,sr_id,revenue
        m1,2018-02-01 10:00:00,rep-1,"1,500.00"
        """,
    )
    write(source / "lost.csv", "mql_id;lost_at\nm2;2018-03-01 09:00:00\n")
    write(
        source / "touches.csv",
        "lead_id,occurred_at,touch_type,campaign_id\nm1,2018-01-03,web_visit,\n",
    )
    write(source / "notes.csv", "whatever\n1\n")
    mapping = write(tmp_path / "m.yaml", TABLES_MAPPING)
    out = tmp_path / "out"
    out.mkdir()
    import_export(mapping, source, out)

    assert sorted(p.name for p in out.iterdir()) == [
        "leads.parquet",
        "sales_events.parquet",
        "touches.parquet",
    ]
    leads = pd.read_parquet(out / "leads.parquet")
    assert list(leads.columns) == ["lead_id", "created_at", "campaign_id", "source", "segment"]
    assert leads["lead_id"].tolist() == ["m1", "m2", "m3"]
    assert str(leads["created_at"].dt.tz) == "UTC"
    assert pd.isna(leads["campaign_id"][2])
    events = pd.read_parquet(out / "sales_events.parquet")
    assert list(events.columns) == ["lead_id", "occurred_at", "stage", "owner_id", "amount"]
    assert events["stage"].tolist() == ["won", "lost"]
    assert events["amount"].tolist() == [1500.0, 0.0]
    assert events["occurred_at"].tolist() == [
        pd.Timestamp("2018-02-01 10:00", tz="UTC"),
        pd.Timestamp("2018-03-01 09:00", tz="UTC"),
    ]
    touches = pd.read_parquet(out / "touches.parquet")
    assert list(touches.columns) == list(contract.TOUCHES.column_names)
    assert touches["occurred_at"].iloc[0] == pd.Timestamp("2018-01-03", tz="UTC")
    assert not (out / "import.json").exists()


def test_tables_mapping_errors_name_file_and_column(tmp_path: Path) -> None:
    source = tmp_path / "export"
    source.mkdir()
    write(source / "mqls.csv", "mql_id,first_contact_date\nm1,yesterday\n")
    mapping = write(
        tmp_path / "m.yaml",
        "format: tables\ntables: {leads: {file: mqls.csv, columns: {lead_id: mql_id, "
        "created_at: first_contact_date}}}\n",
    )
    with pytest.raises(UserError) as error:
        import_export(mapping, source, tmp_path / "out")
    assert str(error.value).startswith(
        f"{source / 'mqls.csv'}: column 'created_at' (leads.created_at): not an ISO 8601 time "
        "in 1 of 1 rows, e.g. 'yesterday'"
    )
    write(
        tmp_path / "m.yaml",
        "format: tables\ntables: {sales_events: {file: mqls.csv, columns: {lead_id: mql_id}}}\n",
    )
    with pytest.raises(UserError, match=r"table sales_events needs the columns \['occurred_at', "):
        import_export(mapping, source, tmp_path / "out")
    write(tmp_path / "m.yaml", "format: tables\ntables: {leads: {file: nope.csv}}\n")
    with pytest.raises(UserError, match=r"nope.csv: file named in mapping .* not found"):
        import_export(mapping, source, tmp_path / "out")


def test_copy_tables_types_canonical_files(tmp_path: Path) -> None:
    source = tmp_path / "tables"
    source.mkdir()
    write(source / "leads.csv", "lead_id,created_at,country,score_hint\n1,2024-01-01,PT,x\n")
    pd.DataFrame(
        {
            "campaign_id": ["c1"],
            "name": ["Spring"],
            "channel": ["email"],
            "started_at": pd.to_datetime(["2024-01-01"]),  # naive: UTC
            "ended_at": [pd.NaT],
            "spend": [100],
            "junk": [1],
        }
    ).to_parquet(source / "campaigns.parquet")
    out = tmp_path / "out"
    out.mkdir()
    copy_tables(source, out, None)
    leads = pd.read_parquet(out / "leads.parquet")
    assert list(leads.columns) == ["lead_id", "created_at", "country", "score_hint"]
    assert leads["lead_id"].tolist() == ["1"]
    campaigns = pd.read_parquet(out / "campaigns.parquet")
    assert "junk" not in campaigns
    assert campaigns["spend"].dtype == "float64"
    assert campaigns["started_at"].iloc[0] == pd.Timestamp("2024-01-01", tz="UTC")


def test_copy_tables_errors(tmp_path: Path, crm: tuple[Path, Path]) -> None:
    mapping, _ = crm
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="needs a mapping with `format: tables`"):
        copy_tables(empty, tmp_path / "out", mapping)
    with pytest.raises(UserError, match=r"empty: no leads table"):
        copy_tables(empty, tmp_path / "out", None)
    with pytest.raises(UserError, match="input directory not found"):
        copy_tables(tmp_path / "nowhere", tmp_path / "out", None)


def test_compressed_exports_are_read_and_errors_name_the_users_file(tmp_path: Path) -> None:
    import gzip

    mapping = write(
        tmp_path / "m.yaml",
        "format: flat\norder: file\noutcome: {converted: {column: y, positive: [yes]}}\n",
    )
    export = tmp_path / "e.csv.gz"
    export.write_bytes(gzip.compress(b"y\nyes\nno\n"))
    out = tmp_path / "out"
    out.mkdir()
    import_export(mapping, export, out)
    assert pd.read_parquet(out / "leads.parquet")["outcome_converted"].tolist() == [True, False]

    export.write_bytes(gzip.compress(b"y\n"))
    with pytest.raises(UserError, match=rf"^{export}: header only, no rows$"):
        import_export(mapping, export, out)
    export.write_bytes(b"not gzip")
    with pytest.raises(UserError, match=rf"^{export}: "):
        import_export(mapping, export, out)


def test_flat_identity_columns_are_carried_never_features(tmp_path: Path) -> None:
    """`identity:` maps an export's name, e-mail, phone and company columns onto the contract's
    identity fields: written (trimmed) for the queue, listed in the manifest, never features."""
    write(
        tmp_path / "e.csv",
        """
        id,First Name,E-mail,Company,visits,won
        1, Ada ,ada@x.example,Acme,3,yes
        2,Alan,,Initech,,no
        """,
    )
    mapping = write(
        tmp_path / "m.yaml",
        """
        format: flat
        id: id
        order: file
        outcome: {converted: {column: won, positive: [yes]}}
        numeric: [visits]
        identity: {first_name: First Name, email: E-mail, company_name: Company}
        """,
    )
    out = tmp_path / "out"
    out.mkdir()
    import_export(mapping, tmp_path / "e.csv", out)
    leads = pd.read_parquet(out / "leads.parquet")
    assert leads["first_name"].tolist() == ["Ada", "Alan"]
    assert leads["email"].tolist()[0] == "ada@x.example"
    assert pd.isna(leads["email"].iloc[1])
    assert leads["company_name"].tolist() == ["Acme", "Initech"]
    manifest = json.loads((out / "import.json").read_text())
    assert manifest["identity"] == ["company_name", "email", "first_name"]
    assert "First Name" not in manifest["categorical"]
    assert manifest["numeric"] == ["visits"]


@pytest.mark.parametrize(
    ("identity", "message"),
    [
        ("{fax: Fax}", "identity"),
        ("{email: visits}", "'visits' is both numeric and identity email"),
        ("{email: Nope}", "'Nope' named in mapping"),
    ],
)
def test_flat_identity_errors_are_one_line(tmp_path: Path, identity: str, message: str) -> None:
    write(tmp_path / "e.csv", "id,visits,won\n1,3,yes\n")
    mapping = write(
        tmp_path / "m.yaml",
        "format: flat\nid: id\norder: file\noutcome: {converted: {column: won, positive: [yes]}}\n"
        f"numeric: [visits]\nidentity: {identity}\n",
    )
    with pytest.raises(UserError, match=message) as error:
        import_export(mapping, tmp_path / "e.csv", tmp_path / "out")
    assert "\n" not in str(error.value)
