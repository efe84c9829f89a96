"""Sales' verdicts flow back: the store's feedback → ``leadscore feedback`` → sales events that
``leadscore ingest`` adds to the CRM's, validated like any other (real SQLite store, real CLI)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from features import contract
from features.ingest.feedback import as_sales_events, merge_feedback, write_feedback_events
from models.store import FeedbackRecord, ScoreStore
from pipelines.cli import app


def _verdicts() -> pd.DataFrame:
    at = pd.Timestamp("2025-03-01T10:00:00Z")
    return pd.DataFrame(
        {
            "id": [1, 2, 3, 4],
            "lead_id": ["L1", "L2", "L3", "GHOST"],
            "verdict": ["accepted", "rejected", "contacted", "accepted"],
            "reason": [None, "no budget", None, None],
            "note": [None, "frozen", "voicemail", None],
            "actor": ["R007", "R008", None, None],
            "occurred_at": [at, at + pd.Timedelta(hours=1), at, at],
            "recorded_at": [at] * 4,
        }
    )


def test_only_accepted_and_rejected_become_sales_events() -> None:
    events = as_sales_events(_verdicts())
    assert list(events.columns) == list(contract.SALES_EVENTS.column_names)
    assert events["stage"].tolist() == ["accepted", "accepted", "rejected"]
    assert events["owner_id"].fillna("-").tolist() == ["-", "R007", "R008"]  # GHOST, L1, L2
    assert events.loc[events["lead_id"] == "L2", "reason"].item() == "no budget"
    assert events["amount"].isna().all()


def test_merge_adds_known_leads_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    tables, feedback = tmp_path / "tables", tmp_path / "feedback"
    tables.mkdir()
    created = pd.Timestamp("2025-01-01T00:00:00Z")
    leads = pd.DataFrame({"lead_id": ["L1", "L2", "L3"], "created_at": [created] * 3})
    leads.to_parquet(tables / "leads.parquet")
    crm = as_sales_events(_verdicts().iloc[[1]])  # the CRM holds L2's rejection already
    crm.to_parquet(tables / "sales_events.parquet")
    assert write_feedback_events(_verdicts(), feedback) == 3
    assert merge_feedback(tables, feedback) == 1  # L1's acceptance; GHOST unknown, L2 held
    merged = pd.read_parquet(tables / "sales_events.parquet")
    assert sorted(zip(merged["lead_id"], merged["stage"], strict=True)) == [
        ("L1", "accepted"),
        ("L2", "rejected"),
    ]
    assert "1 verdicts on leads the data does not have and 1 the CRM already holds" in caplog.text
    assert merge_feedback(tables, tmp_path / "nowhere") == 0
    assert merge_feedback(tables, None) == 0


def test_feedback_command_then_ingest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A store with verdicts → ``leadscore feedback`` → ``leadscore ingest`` (simulator) →
    ``leadscore validate``: the verdicts are validated sales events of the next training."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LEADSCORE_STORE_URL", f"sqlite:///{tmp_path / 'scores.db'}")
    params = tmp_path / "params.yaml"
    params.write_text("generate: {leads: 300, seed: 3}\nsource: {feedback: data/feedback}\n")
    runner = CliRunner()
    first = runner.invoke(app, ["ingest", "--out", "data/raw", "--params", str(params)])
    assert first.exit_code == 0, first.output
    leads = pd.read_parquet(tmp_path / "data/raw/leads.parquet")
    sales = pd.read_parquet(tmp_path / "data/raw/sales_events.parquet")
    decided = set(sales.loc[sales["stage"] != "assigned", "lead_id"])
    open_ids = sorted(set(leads["lead_id"]) - decided)[:3]
    assert len(open_ids) == 3
    when = pd.to_datetime(leads.set_index("lead_id").loc[open_ids, "created_at"], utc=True)
    with ScoreStore(f"sqlite:///{tmp_path / 'scores.db'}") as store:
        for i, lead in enumerate(open_ids):
            store.add_feedback(
                FeedbackRecord(
                    lead_id=lead,
                    verdict=("accepted", "rejected", "contacted")[i],
                    reason="no budget" if i == 1 else None,
                    occurred_at=(when[lead] + pd.Timedelta(days=2)).to_pydatetime(),
                    actor="R001",
                )
            )
    exported = runner.invoke(app, ["feedback", "--params", str(params)])
    assert exported.exit_code == 0, exported.output
    assert len(pd.read_parquet(tmp_path / "data/feedback/sales_events.parquet")) == 2
    second = runner.invoke(app, ["ingest", "--out", "data/raw", "--params", str(params)])
    assert second.exit_code == 0, second.output
    merged = pd.read_parquet(tmp_path / "data/raw/sales_events.parquet")
    assert len(merged) == len(sales) + 2
    mine = merged[merged["lead_id"].isin(open_ids) & (merged["stage"] != "assigned")]
    assert sorted(zip(mine["lead_id"], mine["stage"], strict=True)) == [
        (open_ids[0], "accepted"),
        (open_ids[1], "rejected"),
    ]
    validated = runner.invoke(
        app,
        [
            "validate",
            "--raw",
            "data/raw",
            "--out",
            "data/validated",
            "--report",
            "report",
            "--params",
            str(params),
        ],
    )
    assert validated.exit_code == 0, validated.output
    checked = pd.read_parquet(tmp_path / "data/validated/sales_events.parquet")
    assert set(open_ids[:2]) <= set(checked["lead_id"].astype(str))


def test_feedback_command_errors_are_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    params = tmp_path / "params.yaml"
    params.write_text("source: {feedback: null}\n")
    monkeypatch.setenv("LEADSCORE_STORE_URL", "off")
    result = CliRunner().invoke(app, ["feedback", "--params", str(params)])
    assert result.exit_code == 2
    assert "source.feedback is null" in result.output
    result = CliRunner().invoke(app, ["feedback", "--params", str(params), "--out", "fb"])
    assert result.exit_code == 2
    assert "nothing to export" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "fb").exists()
