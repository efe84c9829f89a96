"""`leadscore import`: success on real exports; one clear line, exit ≠ 0 and the previous output
kept on every bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from pipelines.cli import app

REPO = Path(__file__).resolve().parents[2]
LEADSCORE = str(Path(sys.executable).with_name("leadscore"))

EXPORT = """Lead ID,Origin,Visits,Converted,Tags
L1,API,"1,250",1,Will revert
L2,Landing Page,3,0,
L3,API,"12,000",1,Closed
"""

GOOD = """format: flat
id: Lead ID
order: file
outcome:
  converted: {column: Converted, positive: [1], negative: [0]}
categorical: [Origin]
numeric: [Visits]
post_outcome: [Tags]
"""


def _invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["import", *args])
    assert not isinstance(result.exception, Exception) or isinstance(
        result.exception, SystemExit
    ), result.exception
    return result.exit_code, result.stderr


@pytest.fixture
def previous(tmp_path: Path) -> Path:
    """An earlier good output that a failed import must leave as it was."""
    out = tmp_path / "raw"
    out.mkdir()
    (out / "leads.parquet").write_bytes(b"previous")
    return out


def test_import_succeeds_and_replaces_output(tmp_path: Path, previous: Path) -> None:
    (tmp_path / "export.csv").write_text(EXPORT)
    (tmp_path / "m.yaml").write_text(GOOD)
    code, _ = _invoke(
        "--mapping",
        str(tmp_path / "m.yaml"),
        "--input",
        str(tmp_path / "export.csv"),
        "--out",
        str(previous),
    )
    assert code == 0
    leads = pd.read_parquet(previous / "leads.parquet")
    assert leads["Visits"].tolist() == [1250.0, 3.0, 12000.0]  # thousands separators
    assert leads["outcome_converted"].tolist() == [True, False, True]
    assert "Tags" not in leads
    manifest = json.loads((previous / "import.json").read_text())
    assert manifest["post_outcome"] == ["Tags"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export.csv", "m.yaml", "raw"]


BAD_CASES = {
    "column the file lacks": (
        GOOD.replace("[Origin]", "[Lead Origin]"),
        EXPORT,
        "export.csv: column 'Lead Origin' named in mapping {mapping} (categorical) is not in the "
        "file; columns are: 'Lead ID', 'Origin', 'Visits', 'Converted', 'Tags'",
    ),
    "unknown key": (
        GOOD.replace("post_outcome", "post_outcomes"),
        EXPORT,
        "m.yaml: unknown key 'post_outcomes' (misspelled?)",
    ),
    "outcome outside positive and negative": (
        GOOD,
        EXPORT.replace("L2,Landing Page,3,0", "L2,Landing Page,3,maybe"),
        "export.csv: column 'Converted' (outcome converted): neither positive [1] nor negative "
        "[0] in 1 of 3 rows, e.g. 'maybe'",
    ),
    "non-numeric numeric column": (
        GOOD,
        EXPORT.replace('"12,000"', "lots").replace('"1,250"', "many"),
        "export.csv: column 'Visits' (numeric): not a number in 2 of 3 rows, e.g. 'many', 'lots'",
    ),
    "missing mapping file": (None, EXPORT, "m.yaml: mapping file not found"),
    "not valid YAML": (
        "format: flat\ncategorical: [Origin\n",
        EXPORT,
        "m.yaml: not valid YAML at line 3, column 1",
    ),
    "unknown format": (
        GOOD.replace("format: flat", "format: salesforce"),
        EXPORT,
        "m.yaml: unknown format 'salesforce'; use 'flat' or 'tables'",
    ),
    "missing input": (GOOD, None, "export.csv: input not found"),
    # Issue 11: shapes of real CRM exports that are genuinely invalid.
    "yes/no column declared numeric": (
        GOOD,
        EXPORT.replace('"1,250"', "Yes").replace(",3,", ",No,").replace('"12,000"', "Yes"),
        "export.csv: column 'Visits' (numeric): not a number in 3 of 3 rows, e.g. 'Yes', 'No' "
        "(a yes/no column: declare it categorical or map it with `values`",
    ),
    "number wrongly grouped": (
        GOOD,
        EXPORT.replace('"12,000"', '"12,00"'),
        "export.csv: column 'Visits' (numeric): not a number in 1 of 3 rows, e.g. '12,00'",
    ),
    "two columns that are one canonical column": (
        GOOD.replace("[Origin]", "[Country, ' country']"),
        "Lead ID,Country, country,Visits,Converted,Tags\nL1,PT,pt,1,1,\n",
        "m.yaml: columns 'Country' and ' country' are both the canonical lead column 'country'",
    ),
    "where keeps no row": (
        GOOD + "where: {Origin: [Webinar]}\n",
        EXPORT,
        "export.csv (mapping {mapping}): no row has one of ['Webinar'] in column 'Origin' "
        "(where); its values are e.g. 'API', 'Landing Page'",
    ),
}


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_bad_input_is_one_line_and_keeps_output(tmp_path: Path, previous: Path, case: str) -> None:
    mapping_text, export_text, message = BAD_CASES[case]
    mapping, export = tmp_path / "m.yaml", tmp_path / "export.csv"
    if mapping_text is not None:
        mapping.write_text(mapping_text)
    if export_text is not None:
        export.write_text(export_text)
    code, stderr = _invoke(
        "--mapping", str(mapping), "--input", str(export), "--out", str(previous)
    )
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ")
    assert message.format(mapping=mapping) in lines[0]
    assert "Traceback" not in stderr
    assert sorted(p.name for p in previous.iterdir()) == ["leads.parquet"]
    assert (previous / "leads.parquet").read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_real_process_bank_marketing_and_a_bad_mapping(tmp_path: Path) -> None:
    """The installed `leadscore` executable, as a user runs it, on the committed sample."""
    env = {**os.environ, "COLUMNS": "120"}
    out = tmp_path / "raw"
    ok = subprocess.run(
        [
            LEADSCORE, "import",
            "--mapping", "mappings/bank_marketing.yaml",
            "--input", "data/samples/bank-additional-full.csv.gz",
            "--out", str(out),
        ],
        cwd=REPO, capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert "imported 41,188 rows" in ok.stderr
    manifest = json.loads((out / "import.json").read_text())
    assert manifest["outcomes"]["converted"]["positives"] == 4640

    bad = tmp_path / "bad.yaml"
    bad.write_text(
        (REPO / "mappings/bank_marketing.yaml").read_text().replace("[duration]", "[durations]")
    )
    failed = subprocess.run(
        [LEADSCORE, "import", "--mapping", str(bad),
         "--input", "data/samples/bank-additional-full.csv.gz", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert failed.returncode == 2
    assert failed.stderr.count("\n") == 1
    assert "column 'durations' named in mapping" in failed.stderr
    assert "(post_outcome) is not in the file (did you mean 'duration'?)" in failed.stderr
    assert "Traceback" not in failed.stderr
    assert json.loads((out / "import.json").read_text()) == manifest
