"""``leadscore score`` records every score of a finished output in the score store (source
``batch``), and nothing of a run that failed (real SQLite store)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest

from features.errors import UserError
from models.store import ScoreStore
from pipelines import score as batch_score
from tests.pipelines.test_score_cli import AS_OF, inputs  # noqa: F401  (the module's fixture)
from tests.serving.world import World

EVER = (dt.datetime(2000, 1, 1, tzinfo=dt.UTC), dt.datetime(2100, 1, 1, tzinfo=dt.UTC))


@pytest.mark.parametrize("kind", ["parquet", "csv"])
def test_a_finished_output_is_recorded(
    world: World,
    inputs: dict[str, Path],  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
) -> None:
    url = f"sqlite:///{tmp_path / 'scores.db'}"
    monkeypatch.setenv("LEADSCORE_STORE_URL", url)
    out = tmp_path / f"scores.{kind}"
    scored = batch_score.run(
        model=str(world.bundle),
        input=inputs["parquet"],
        output=out,
        touches=inputs["touches"],
        sales_events=inputs["sales"],
        as_of=AS_OF,
        chunk=256,
    )
    written = (
        pd.read_parquet(out) if kind == "parquet" else pd.read_csv(out, dtype={"lead_id": str})
    )
    with ScoreStore(url) as store:
        stored = store.scores_between(*EVER)
    assert len(stored) == scored == len(written)
    assert set(stored["source"]) == {"batch"}
    merged = written.merge(stored, on="lead_id", suffixes=("", "_stored"))
    assert len(merged) == scored
    assert (merged["score"] == merged["score_stored"]).all()
    assert (merged["p_converted"] - merged["probability"]).abs().max() < 1e-12
    assert {pd.Timestamp(t) for t in stored["as_of"]} == {pd.Timestamp(AS_OF)}
    first = merged.iloc[0]
    assert first["reasons"]["positive"] == [
        first[c] for c in ("reason_1", "reason_2", "reason_3") if isinstance(first[c], str)
    ]


def test_a_failed_run_records_nothing(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'scores.db'}"
    monkeypatch.setenv("LEADSCORE_STORE_URL", url)
    leads = world.tables["leads"].head(300)
    doubled = pd.concat([leads, leads.head(1)], ignore_index=True)  # a lead id twice
    doubled.to_csv(tmp_path / "leads.csv", index=False)
    with pytest.raises(UserError):
        batch_score.run(
            model=str(world.bundle),
            input=tmp_path / "leads.csv",
            output=tmp_path / "out.csv",
            as_of=AS_OF,
            chunk=100,
        )
    with ScoreStore(url) as store:
        assert len(store.scores_between(*EVER)) == 0
    assert not (tmp_path / "out.csv").exists()
