"""Stages `evaluate` and `queue` through the CLI, on simulated CRM tables and
on a flat export."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features import contract
from models.reports.evaluation import METRICS
from models.reports.kpis import ALL
from pipelines import evaluate, features, ingest, train
from pipelines import queue as queue_stage

REPO = Path(__file__).resolve().parents[2]
LEADSCORE = str(Path(sys.executable).with_name("leadscore"))
PARAMS = str(REPO / "params.yaml")
PLOT_COLUMNS = {
    "roc": ["fpr", "model", "rules", "logistic"],
    "precision_recall": ["recall", "model", "rules", "logistic"],
    "gains": ["share_contacted", "model", "rules", "logistic", "random"],
    "calibration_model": ["bin", "lower", "upper", "count", "mean_predicted", "observed"],
    "calibration_rules": ["bin", "lower", "upper", "count", "mean_predicted", "observed"],
    "calibration_logistic": ["bin", "lower", "upper", "count", "mean_predicted", "observed"],
    "grades": ["grade", "snapshots", "share", "mean_predicted", "observed"],
    "score_histogram": ["score", "snapshots", "positives", "grade"],
}


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [LEADSCORE, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "120"},
    )
    return result


def _ok(*args: str, cwd: Path) -> None:
    result = _run(*args, "--params", PARAMS, cwd=cwd)
    assert result.returncode == 0, result.stderr


def _upstream(work: Path, validated: str) -> None:
    """The features and train stages, in-process (their CLI has its own tests)."""
    features.run(validated=work / validated, out=work / "feat", params_path=Path(PARAMS))
    train.run(
        features_dir=work / "feat",
        validated=work / validated,
        out=work / "train",
        params_path=Path(PARAMS),
        model=work / "model",
    )


@pytest.fixture(scope="module")
def crm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """generate → features → train, then the CLI's evaluate and queue, on 2,500 simulated
    leads."""
    work = tmp_path_factory.mktemp("stage")
    ingest.generate(out=work / "raw", params_path=Path(PARAMS), leads=2500, seed=11)
    _upstream(work, "raw")
    _ok(
        "evaluate",
        *("--features", "feat", "--validated", "raw", "--train", "train", "--out", "art"),
        cwd=work,
    )
    _ok("queue", "--validated", "raw", "--model", "model", "--out", "art/queue.parquet", cwd=work)
    return work


@pytest.mark.parametrize("command", ["evaluate", "queue"])
def test_help(command: str) -> None:
    result = _run(command, "--help", cwd=REPO)
    assert result.returncode == 0
    assert "Usage" in result.stdout


def test_metrics_json_shape(crm: Path) -> None:
    metrics = json.loads((crm / "art" / "metrics.json").read_text())
    assert metrics["primary_target"] == "converted"
    assert metrics["leakage_suspected"] is False
    with (crm / "train" / "scorer.pkl").open("rb") as handle:
        fingerprint = pickle.load(handle).fingerprint()
    assert metrics["model_fingerprint"] == fingerprint  # which model these reports describe
    kpis = json.loads((crm / "art" / "kpis.json").read_text())
    assert kpis["model_fingerprint"] == fingerprint
    for target in ("accepted", "converted"):
        entry = metrics[target]
        assert set(entry) == {
            "model",
            "rules",
            "logistic",
            "truth",
            "model_truth_auc_ratio",
            "n_test",
            "positives_test",
            "leakage",  # the per-column guard's verdict (the simulator leaks nothing)
            "selection",  # every candidate's validation figure and the chosen one
        }
        assert entry["leakage"]["flagged"] == []
        chosen = [c for c in entry["selection"]["candidates"] if c["chosen"]]
        assert [c["name"] for c in chosen] == [entry["selection"]["chosen"]]
        for model in ("model", "rules", "logistic"):
            assert list(entry[model]) == list(METRICS)
            assert 0.5 < entry[model]["roc_auc"] < 1.0
        assert entry["model_truth_auc_ratio"] == pytest.approx(
            entry["model"]["roc_auc"] / entry["truth"]["roc_auc"], abs=1e-3
        )
        snapshots = pd.read_parquet(crm / "feat" / "snapshots.parquet")
        test = snapshots[(snapshots["split"] == "test") & snapshots[f"label_{target}"].notna()]
        assert entry["n_test"] == len(test)
        assert entry["positives_test"] == int(test[f"label_{target}"].sum())


def test_metrics_by_group(crm: Path) -> None:
    groups = json.loads((crm / "art" / "metrics_by_group.json").read_text())
    channels = groups["converted"]["by_channel"]
    months = groups["converted"]["by_month"]
    assert channels
    assert months
    assert all(len(name) == 7 and name[4] == "-" for name in months)
    for entry in [*channels.values(), *months.values()]:
        assert entry["n"] >= 50
        assert set(entry) == {"n", "positives", "model", "rules", "logistic"}


def test_plots_for_dvc(crm: Path) -> None:
    plots = crm / "art" / "plots"
    assert sorted(p.stem for p in plots.iterdir()) == sorted(PLOT_COLUMNS)
    for name, columns in PLOT_COLUMNS.items():
        frame = pd.read_csv(plots / f"{name}.csv")
        assert list(frame.columns) == columns, name
        assert len(frame) > 0
    roc = pd.read_csv(plots / "roc.csv")
    assert roc["fpr"].iloc[0] == 0.0
    assert roc["model"].iloc[-1] == pytest.approx(1.0)
    grades = pd.read_csv(plots / "grades.csv")
    assert set(grades["grade"]) <= {"A", "B", "C", "D"}
    assert grades["share"].sum() == pytest.approx(1.0)


def test_model_card(crm: Path) -> None:
    card = (crm / "art" / "model_card.md").read_text()
    for heading in (
        "## Quality-lead definition",
        "## Data",
        "## Test metrics beside the baselines",
        "## What drives the score",
        "## Columns excluded as known only after the outcome",
        "## Leakage check",
        "## Limitations",
        "## Shared KPIs",
    ):
        assert heading in card
    assert "within 90 days of being scored" in card
    assert "| train |" in card
    assert "**Censoring**" in card
    assert "**Simulated data**" in card
    assert "simulator truth" in card
    assert "| all |" in card
    assert "EUR" in card


def test_kpis_json(crm: Path) -> None:
    kpis = json.loads((crm / "art" / "kpis.json").read_text())
    leads = pd.read_parquet(crm / "raw" / "leads.parquet")
    assert kpis["currency"] == "EUR"
    for table, key in (
        ("by_channel", "channel"),
        ("by_campaign", "campaign_id"),
        ("by_month", "month"),
    ):
        rows = kpis[table]
        assert rows[-1][key] == ALL
        assert rows[-1]["leads"] == len(leads)
        assert sum(row["leads"] for row in rows[:-1]) == len(leads)
    everything = kpis["by_channel"][-1]
    assert everything["predicted_conversion"] == pytest.approx(
        everything["actual_conversion"], abs=0.03
    )
    spend = pd.read_parquet(crm / "raw" / "campaigns.parquet")["spend"].sum()
    month_spend = sum(row["spend"] for row in kpis["by_month"][:-1])
    assert month_spend == pytest.approx(spend, rel=1e-6)


def test_queue_holds_every_open_lead_best_first(crm: Path) -> None:
    queue = pd.read_parquet(crm / "art" / "queue.parquet")
    leads = pd.read_parquet(crm / "raw" / "leads.parquet")
    sales = pd.read_parquet(crm / "raw" / "sales_events.parquet").sort_values(
        "occurred_at", kind="stable"
    )
    last = sales.groupby("lead_id")["stage"].last()
    closed = set(last[last.isin(contract.CLOSED_STAGES)].index)
    assert set(queue["lead_id"]) == set(leads["lead_id"]) - closed
    assert queue["rank"].tolist() == list(range(1, len(queue) + 1))
    assert (np.diff(queue["p_converted"].to_numpy()) <= 0).all()
    owners = sales.dropna(subset=["owner_id"]).groupby("lead_id")["owner_id"].last()
    expected_owner = queue["lead_id"].map(owners)
    assert (queue["owner_id"].fillna("-") == expected_owner.fillna("-")).all()
    assert queue["channel"].notna().any()
    for positive, negative in zip(
        queue["reasons_positive"], queue["reasons_negative"], strict=True
    ):
        assert len(positive) <= 3
        assert len(negative) <= 3
        assert all(isinstance(text, str) and text for text in [*positive, *negative])
    assert queue["as_of"].nunique() == 1
    assert set(queue["model_name"]) == {"model"}  # a bundle directory: its name and uuid
    assert queue["model_version"].nunique() == 1
    assert len(queue["model_version"].iloc[0]) == 32
    assert set(queue["grade"]) <= {"A", "B", "C", "D"}
    identity = queue[["first_name", "last_name", "email", "phone", "company_name", "job_title"]]
    assert identity.notna().all().all()  # who each lead is, for sales (simulated names)


def test_missing_train_output_is_one_clear_line(crm: Path, tmp_path: Path) -> None:
    result = _run(
        *("evaluate", "--features", str(crm / "feat"), "--validated", str(crm / "raw")),
        *("--train", str(tmp_path / "nothing"), "--out", str(tmp_path / "art")),
        "--params",
        PARAMS,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [
        f"error: {tmp_path / 'nothing' / 'scorer.pkl'}: missing; run the train stage first"
    ]
    assert not (tmp_path / "art").exists()


# ------------------------------------------------------------------------- flat export


def _write_flat(directory: Path, n: int, positives: int | None = None, seed: int = 4) -> None:
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True)
    job = rng.choice(["admin", "technician", "manager", "student"], n)
    balance = rng.lognormal(7, 1, n)
    logit = -2.0 + np.where(job == "manager", 1.2, 0.0) + 0.4 * (np.log(balance) - 7)
    outcome = (rng.uniform(size=n) < 1 / (1 + np.exp(-logit))).astype(float)
    if positives is not None:
        outcome[:] = 0.0
        outcome[rng.choice(n, positives, replace=False)] = 1.0
    leads = pd.DataFrame(
        {
            "lead_id": [f"B{i:05d}" for i in range(n)],
            "created_at": pd.date_range("2022-01-01", periods=n, freq="2h", tz="UTC"),
            "job": job,
            "balance": balance,
            "duration": rng.uniform(0, 600, n),
            "outcome_converted": outcome,
        }
    )
    leads.drop(columns=["duration"]).to_parquet(directory / "leads.parquet")
    manifest = {
        "categorical": ["job"],
        "numeric": ["balance"],
        "post_outcome": ["duration"],
        "order": "time",
    }
    (directory / "import.json").write_text(json.dumps(manifest))


def test_flat_export_end_to_end(tmp_path: Path) -> None:
    _write_flat(tmp_path / "validated", 3000)
    _upstream(tmp_path, "validated")
    evaluate.run(
        features_dir=tmp_path / "feat",
        validated=tmp_path / "validated",
        train=tmp_path / "train",
        out=tmp_path / "art",
        params_path=Path(PARAMS),
    )
    queue_stage.run(
        validated=tmp_path / "validated",
        out=tmp_path / "queue.parquet",
        params_path=Path(PARAMS),
        model=str(tmp_path / "model"),
    )
    metrics = json.loads((tmp_path / "art" / "metrics.json").read_text())
    assert set(metrics) == {
        "engine",
        "converted",
        "leakage_suspected",
        "primary_target",
        "model_fingerprint",
    }
    assert metrics["engine"] == "local"  # params engine.kind's default
    assert "truth" not in metrics["converted"]
    assert metrics["converted"]["model"]["roc_auc"] > 0.6
    card = (tmp_path / "art" / "model_card.md").read_text()
    assert "- `duration`" in card
    assert "**Flat export**" in card
    kpis = json.loads((tmp_path / "art" / "kpis.json").read_text())
    assert kpis["by_month"][-1]["leads"] == 3000
    assert "cost_per_lead" in kpis["unavailable"]
    queue = pd.read_parquet(tmp_path / "queue.parquet")
    assert len(queue) == 3000  # a flat export has no pipeline state: every lead is queued
    assert queue["owner_id"].isna().all()
    assert (np.diff(queue["p_converted"].to_numpy()) <= 0).all()


def test_too_few_positives_refuses_to_train_with_one_line(tmp_path: Path) -> None:
    _write_flat(tmp_path / "validated", 1000, positives=12)
    features.run(validated=tmp_path / "validated", out=tmp_path / "feat", params_path=Path(PARAMS))
    result = _run(
        *("train", "--features", "feat", "--validated", "validated", "--out", "train"),
        *("--params", PARAMS),
        cwd=tmp_path,
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1
    assert lines[0].startswith("error: not ready to train 'converted'")
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "train").exists()
