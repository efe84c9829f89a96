"""``leadscore rescore``: open leads scored by the champion, stored with their trend, written
back as a CRM import file; ``--changed-only`` writes only what changed (real CLI, real SQLite
store)."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from features import contract
from models.queue import open_leads
from models.rescoring import CRM_COLUMNS
from models.store import ScoreStore
from pipelines import queue as queue_stage
from pipelines.cli import app
from tests.serving.world import World

EVER = (dt.datetime(2000, 1, 1, tzinfo=dt.UTC), dt.datetime(2100, 1, 1, tzinfo=dt.UTC))


def _rescore(world: World, out: Path, *extra: str) -> list[dict[str, str]]:
    result = CliRunner().invoke(
        app,
        [
            "rescore",
            "--validated",
            str(world.raw),
            "--out",
            str(out),
            "--model",
            str(world.bundle),
            "--params",
            str(world.params_path),
            *extra,
        ],
    )
    assert result.exit_code == 0, result.output
    with out.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_rescore_stores_and_writes_back(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'scores.db'}"
    monkeypatch.setenv("LEADSCORE_STORE_URL", url)
    horizon = contract.data_horizon(world.tables)
    expected, _ = open_leads(world.tables, horizon, flat=False)
    first = _rescore(world, tmp_path / "crm.csv")
    horizons = [f"p_converted_by_{d}d" for d in world.scorer.timing_.horizons_days]
    assert list(first[0]) == [*CRM_COLUMNS, *horizons]
    assert {r["segment"] for r in first} == {"pooled"}
    for row in first:  # when and how much: a non-decreasing curve, a value, a date or none
        curve = [float(row[h]) for h in horizons]
        assert curve == sorted(curve)
        assert float(row["expected_value"]) >= 0
        date = row["expected_conversion_date"]
        assert date == "" or dt.date.fromisoformat(date) >= horizon.date()
    assert sorted(r["lead_id"] for r in first) == sorted(expected["lead_id"].astype(str))
    assert {r["trend"] for r in first} == {"not enough history"}
    assert all(r["grade"] in "ABCD" and 0 <= int(r["score"]) <= 100 for r in first)
    assert any(r["reasons"].count("; ") == 2 for r in first)  # three reasons in one text
    with ScoreStore(url) as store:
        stored = store.scores_between(*EVER)
    assert len(stored) == len(first)
    assert set(stored["source"]) == {"rescore"}
    assert {pd.Timestamp(t) for t in stored["as_of"]} == {horizon}

    again = _rescore(world, tmp_path / "crm.csv")
    assert {r["trend"] for r in again} == {"steady"}  # same data, same model: same scores
    assert _rescore(world, tmp_path / "changed.csv", "--changed-only") == []
    earlier = _rescore(
        world, tmp_path / "earlier.csv", "--as-of", "2025-05-01T00:00:00Z", "--changed-only"
    )
    previous = {r["lead_id"]: r for r in again}
    assert earlier
    for row in earlier:  # only leads new to the store, or whose score or grade moved
        old = previous.get(row["lead_id"])
        assert old is None or (old["score"], old["grade"]) != (row["score"], row["grade"])


def test_queue_stage_records_its_scores(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'scores.db'}"
    monkeypatch.setenv("LEADSCORE_STORE_URL", url)
    out = tmp_path / "queue.parquet"
    queue_stage.run(world.raw, out, world.params_path, model=str(world.bundle))
    queue = pd.read_parquet(out)
    with ScoreStore(url) as store:
        stored = store.scores_between(*EVER)
    assert len(stored) == len(queue)
    assert set(stored["source"]) == {"queue"}
    merged = queue.merge(stored, on="lead_id", suffixes=("", "_stored"))
    assert (merged["score"] == merged["score_stored"]).all()
    # a store that cannot be used never fails the queue
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    monkeypatch.setenv("LEADSCORE_STORE_URL", f"sqlite:///{blocked / 'scores.db'}")
    queue_stage.run(
        world.raw, tmp_path / "again.parquet", world.params_path, model=str(world.bundle)
    )
    assert len(pd.read_parquet(tmp_path / "again.parquet")) == len(queue)


def test_rescore_errors_are_one_line(world: World, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "rescore",
            "--validated",
            str(world.raw),
            "--out",
            str(tmp_path / "x.csv"),
            "--model",
            str(world.bundle),
            "--as-of",
            "next tuesday",
            "--params",
            str(world.params_path),
        ],
    )
    assert result.exit_code == 2
    assert "--as-of 'next tuesday'" in result.output
    assert not (tmp_path / "x.csv").exists()
