"""Real CRM exports through every stage (issue 11).

An export with awkward but legal shapes — capitalised canonical names (``Country``, ``Source``,
``Job_Title``), a numeric column with thousands separators, ``Yes``/``No`` columns (one
categorical, one numeric through a ``values`` map), ids with leading zeros, a categorical and a
numeric column that are all missing, categories seen once, day-first times — goes through
import, validation and the feature stage in-process (fast), and through the whole pipeline
with real ``dvc repro`` in a copy of the project whose ``source`` is the export and its mapping
(slow). A genuinely invalid export then fails ``dvc repro`` with one clear line, no traceback,
the previous data kept.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from features.engine.table import build_feature_table
from features.ingest.importers import import_export
from features.params import load_params
from features.storage import read_manifest, read_validated
from features.validation.validate import validate_directory
from tests.project import BIN, REPO, commit_all, copy_project, pipeline_env, run_ok

MAPPING = """
format: flat
read: {timestamp_format: "%d/%m/%Y %H:%M", na_values: ["-"]}
id: Lead Number
created_at: Created On
outcome:
  converted: {column: Converted, positive: [yes], negative: [no]}
categorical: [Country, Source, Job_Title, Industry Vertical, Do Not Email, Fax]
numeric: [Annual Spend, Opted Out, Legacy Score]
values:
  Opted Out: {Yes: 1, No: 0}
post_outcome: [Call Minutes]
"""


def awkward_export(rows: int, seed: int = 0) -> pd.DataFrame:
    """A flat CRM export, as text cells, whose outcome depends on source, spend and opt-out."""
    rng = np.random.default_rng(seed)
    source = rng.choice(["Web", "Ads", "Partner", "Event"], rows)
    spend = rng.gamma(2.0, 4000.0, rows)
    opted = rng.random(rows) < 0.3
    logit = -1.6 + 1.2 * (source == "Partner") - 0.8 * (source == "Ads") + spend / 12000
    logit -= 1.0 * opted
    converted = rng.random(rows) < 1 / (1 + np.exp(-logit))
    created = pd.Timestamp("2023-01-02 08:00") + pd.to_timedelta(
        np.sort(rng.integers(0, 400 * 24 * 60, rows)), unit="min"
    )
    country = rng.choice(["DE", "FR", "PT", "ES"], rows).astype(object)
    country[rows // 2] = "IS"  # seen once
    industry = rng.choice(["Retail", "Banking", "Software"], rows).astype(object)
    industry[rows // 3] = "Mining"  # seen once
    return pd.DataFrame(
        {
            "Lead Number": [f"{i:06d}" for i in range(1, rows + 1)],  # leading zeros
            "Created On": created.strftime("%d/%m/%Y %H:%M"),
            "Country": country,
            "Source": source,
            "Job_Title": rng.choice(["CTO", "Buyer", "Analyst"], rows),
            "Industry Vertical": industry,
            "Annual Spend": [f"{value:,.2f}" for value in spend],  # 12,345.67
            "Do Not Email": np.where(rng.random(rows) < 0.2, "Yes", "No"),
            "Opted Out": np.where(opted, "Yes", "No"),
            "Fax": "",  # all missing
            "Legacy Score": "-",  # all missing (na_values)
            "Converted": np.where(converted, "Yes", "No"),
            "Call Minutes": rng.integers(0, 30, rows).astype(str),
        }
    )


def test_awkward_export_through_import_validate_and_features(tmp_path: Path) -> None:
    """The three stages that read the export's columns by name, in-process (the `Country`
    defect ended in a KeyError in the third)."""
    awkward_export(300).to_csv(tmp_path / "export.csv", index=False)
    (tmp_path / "m.yaml").write_text(textwrap.dedent(MAPPING))
    raw, validated = tmp_path / "raw", tmp_path / "validated"
    raw.mkdir()
    import_export(tmp_path / "m.yaml", tmp_path / "export.csv", raw)
    params = load_params(REPO / "params.yaml")
    summary = validate_directory(raw, validated, tmp_path / "report", params)
    assert summary.passed
    manifest = read_manifest(validated)
    assert manifest is not None
    assert manifest["canonical"] == ["country", "source", "job_title"]
    engine, snapshots = build_feature_table(read_validated(validated), params, manifest)
    assert {"country", "source", "job_title", "Industry Vertical", "Fax"} <= set(
        engine.feature_names_
    )
    assert {"Annual Spend", "Opted Out", "Legacy Score"} <= set(engine.feature_names_)
    assert "Call Minutes" not in engine.feature_names_
    assert snapshots["lead_id"].str.startswith("0").all()
    assert len(snapshots) == 300
    assert snapshots["Annual Spend"].notna().all()
    assert set(snapshots["Opted Out"].unique()) == {0.0, 1.0}


# ----------------------------------------------------------------------------- dvc repro
def _project(target: Path) -> dict[str, str]:
    """The working tree copied into a fresh git repository, its source switched to the
    awkward export and its mapping, with quick training."""
    env = pipeline_env(target)
    copy_project(target)
    awkward_export(1500).to_csv(target / "data" / "samples" / "awkward.csv", index=False)
    (target / "mappings" / "awkward.yaml").write_text(textwrap.dedent(MAPPING))
    params = yaml.safe_load((target / "params.yaml").read_text())
    params["source"] = {
        "kind": "flat",
        "path": "data/samples/awkward.csv",
        "mapping": "mappings/awkward.yaml",
    }
    params["train"].update(
        num_threads=1,
        learning_rate=0.1,
        max_rounds=150,
        early_stopping_rounds=20,
        min_data_in_leaf=20,
    )
    params["mlflow"]["model_name"] = "lead-scoring-awkward"
    (target / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    commit_all(target, env, "crm")
    return env


@pytest.mark.slow
def test_dvc_repro_on_an_awkward_export_then_an_invalid_one(tmp_path: Path) -> None:
    if not (REPO / ".git").exists() or shutil.which("git") is None:
        pytest.fail("this test needs the git checkout")
    repo = tmp_path / "repo"
    env = _project(repo)
    run_ok([str(BIN / "dvc"), "repro"], repo, env)  # every stage, exit 0

    spec = json.loads((repo / "data" / "features" / "feature_spec.json").read_text())
    names = {feature["name"] for feature in spec["features"]}
    assert {"country", "source", "job_title", "Annual Spend", "Opted Out", "Fax"} <= names
    assert "Call Minutes" not in names
    metrics = json.loads((repo / "artifacts" / "metrics.json").read_text())
    assert metrics["converted"]["model"]["roc_auc"] > 0.6
    queue = pd.read_parquet(repo / "artifacts" / "queue.parquet")
    assert queue["lead_id"].str.fullmatch(r"0\d{5}").all()  # leading zeros kept to the end
    assert "Call Minutes" in (repo / "artifacts" / "model_card.md").read_text()
    raw_before = (repo / "data" / "raw" / "leads.parquet").read_bytes()

    # A genuinely invalid shape: a spend grouped wrongly is not a number, one line, exit ≠ 0.
    export = pd.read_csv(repo / "data" / "samples" / "awkward.csv", dtype=str)
    export.loc[[4, 9], "Annual Spend"] = "1,23"
    export.to_csv(repo / "data" / "samples" / "awkward.csv", index=False)
    failed = subprocess.run(
        [str(BIN / "dvc"), "repro"], cwd=repo, env=env, capture_output=True, text=True, timeout=600
    )
    output = failed.stdout + failed.stderr
    assert failed.returncode != 0
    assert "Traceback" not in output
    assert (
        "data/samples/awkward.csv: column 'Annual Spend' (numeric): not a number in 2 of "
        "1,500 rows, e.g. '1,23'" in output
    )
    assert (repo / "data" / "raw" / "leads.parquet").read_bytes() == raw_before
