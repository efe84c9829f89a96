"""Reading and typing the lead tables on a real two-process Dask cluster, a chunk of each file at
a time: the same typed rows, quarantine, report and errors as typing each file in one piece,
on files built so that chunks typed on their own would decide otherwise (a day-first column
whose first chunk is ambiguous, a chunk whose first non-ISO time has another format, ids read
as floats with one fraction in a late chunk, numbers with digit groups and garbage)."""

from __future__ import annotations

import datetime as dt
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from distributed import Client

from features import contract
from features.cluster import cluster
from features.errors import UserError
from features.ingest.simulate import simulate
from features.params import EngineParams, GenerateParams, load_params
from features.storage import read_validated
from features.validation import chunked
from features.validation.coercion import coerce
from features.validation.validate import validate_directory

REPO = Path(__file__).resolve().parents[3]
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
LEAD_GROUP = 100
"""Rows per row group of leads.parquet (each a chunk in these tests)."""


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    with cluster(EngineParams(kind="dask", workers=2, threads_per_worker=1)) as shared:
        yield shared


def _day_first(stamp: pd.Timestamp) -> str:
    return stamp.strftime("%d/%m/%Y %H:%M")


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("chunked-raw")
    simulate(GenerateParams(leads=800, seed=3), out)
    leads = pd.read_parquet(out / "leads.parquet")
    created = pd.to_datetime(leads["created_at"], utc=True)
    text = created.map(lambda stamp: stamp.isoformat()).astype(object)
    # rows 400-499 (one chunk): day first, every day <= 12, so month first parses them as well
    # (alone, that chunk would read them month first); the later chunks' days > 12 decide
    for row in range(400, len(leads)):
        stamp = created.iloc[row]
        if row < 500:
            stamp = stamp.replace(day=(stamp.day - 1) % 12 + 1)
        text.iloc[row] = _day_first(stamp)
    text.iloc[600] = created.iloc[600].strftime("%Y.%m.%d %H:%M")  # another format, first
    leads["created_at"] = text.astype("str")
    phones = pd.Series(5_550_000_000.0 + leads.index.to_numpy(), dtype="float64")
    phones.iloc[750] = 12.5  # one fraction, in the last chunk: every phone stays "….0"
    leads["phone"] = phones
    leads.to_parquet(out / "leads.parquet", index=False, row_group_size=LEAD_GROUP)
    touches = pd.read_parquet(out / "touches.parquet")
    occurred = pd.to_datetime(touches["occurred_at"], utc=True).map(lambda s: s.isoformat())
    occurred = occurred.astype(object)
    occurred.iloc[[17, 5_000, len(touches) - 3]] = "not a date"
    touches["occurred_at"] = occurred.astype("str")
    touches.to_parquet(out / "touches.parquet", index=False, row_group_size=1_000)
    sales = pd.read_parquet(out / "sales_events.parquet")
    amounts = sales["amount"].map(lambda value: "" if pd.isna(value) else f"{value:,.2f}")
    amounts = amounts.astype(object)
    amounts.iloc[len(sales) // 2] = "lots"
    sales["amount"] = amounts.astype("str")
    sales.to_parquet(out / "sales_events.parquet", index=False, row_group_size=300)
    return out


def _params(path: Path, **engine: Any) -> Any:
    raw_params = yaml.safe_load((REPO / "params.yaml").read_text())
    raw_params["engine"] = {**raw_params["engine"], "partitions": 3, **engine}
    raw_params["validate"]["max_quarantine_share"] = 0.9  # the rewritten times quarantine some
    path.write_text(yaml.safe_dump(raw_params))
    return load_params(path)


def _validate_both(
    raw: Path, client: Client, work: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, dict[str, Any]]:
    monkeypatch.setattr(chunked, "CHUNK_ROWS", 1)  # every row group a chunk
    address = client.scheduler_info()["address"]
    runs: dict[str, dict[str, Any]] = {}
    for kind, engine in (("local", {}), ("dask", {"kind": "dask", "scheduler": address})):
        params = _params(work / f"{kind}.yaml", **engine)
        out = work / f"validated-{kind}"
        summary = validate_directory(raw, out, work / f"report-{kind}", params, now=NOW)
        runs[kind] = {"summary": summary.to_dict(), "out": out}
    return runs


def _assert_same(runs: dict[str, dict[str, Any]]) -> None:
    local, dask = runs["local"], runs["dask"]
    for summary in (local["summary"], dask["summary"]):
        del summary["seconds"], summary["ge_seconds"]
    assert dask["summary"] == local["summary"]
    valid_local, valid_dask = read_validated(local["out"]), read_validated(dask["out"])
    assert set(valid_dask) == set(valid_local)
    for name in valid_local:
        pd.testing.assert_frame_equal(valid_dask[name], valid_local[name], check_exact=True)
        quarantine = f"quarantine/{name}.parquet"
        pd.testing.assert_frame_equal(
            pd.read_parquet(dask["out"] / quarantine),
            pd.read_parquet(local["out"] / quarantine),
            check_exact=True,
        )


def test_chunks_typed_on_the_workers_equal_the_file_typed_whole(
    raw: Path,
    client: Client,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # the traps bite: typed alone, the ambiguous chunk reads its times month first, and the
    # early chunks write phones without ".0"
    whole = pd.read_parquet(raw / "leads.parquet")
    typed_whole, _ = coerce(contract.LEADS, whole)
    alone = whole.iloc[400:500].reset_index(drop=True)
    typed_alone, _ = coerce(contract.LEADS, alone)
    assert not typed_alone["created_at"].equals(
        typed_whole["created_at"].iloc[400:500].reset_index(drop=True)
    )
    first, _ = coerce(contract.LEADS, whole.iloc[:100].reset_index(drop=True))
    assert first["phone"].iloc[0] == "5550000000"
    assert typed_whole["phone"].iloc[0] == "5550000000.0"
    assert len(chunked.plan_chunks("leads", raw / "leads.parquet", 1)) == 8

    with caplog.at_level(logging.INFO, logger="features.validation.chunked"):
        runs = _validate_both(raw, client, tmp_path, monkeypatch)
    _assert_same(runs)
    [typed] = [r.getMessage() for r in caplog.records if "chunks of 3 files" in r.getMessage()]
    planned = sum(
        len(chunked.plan_chunks(name, raw / f"{name}.parquet", 1))
        for name in ("leads", "touches", "sales_events")
    )
    # every row group a task; the leads' first value, then their day-first choice, took a
    # round each
    assert typed.startswith(f"typed {planned} chunks of 3 files on the cluster in 3 rounds")
    tables = runs["local"]["summary"]["tables"]
    assert tables["touches"]["rules"]["unparseable timestamp in occurred_at"] == 3
    assert tables["sales_events"]["rules"]["not a number in amount"] == 1
    # the shards and the tasks' files are gone
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".validate")]


def test_a_lead_table_in_csv_is_read_by_the_stage_and_cut_into_the_same_partitions(
    raw: Path, client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mixed = tmp_path / "raw"
    shutil.copytree(raw, mixed)
    pd.read_parquet(mixed / "leads.parquet").to_csv(mixed / "leads.csv", index=False)
    (mixed / "leads.parquet").unlink()
    _assert_same(_validate_both(mixed, client, tmp_path, monkeypatch))


def test_a_column_no_chunk_can_type_is_refused_with_the_local_words(
    raw: Path, client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = tmp_path / "raw"
    shutil.copytree(raw, broken)
    touches = pd.read_parquet(broken / "touches.parquet")
    touches["occurred_at"] = [f"soon {i % 7}" for i in range(len(touches))]
    touches.to_parquet(broken / "touches.parquet", index=False, row_group_size=1_000)
    messages = []
    with pytest.raises(UserError) as local_error:
        _validate_both(broken, client, tmp_path, monkeypatch)
    messages.append(str(local_error.value))
    monkeypatch.setattr(chunked, "CHUNK_ROWS", 1)
    params = _params(
        tmp_path / "dask.yaml", kind="dask", scheduler=client.scheduler_info()["address"]
    )
    with pytest.raises(UserError) as dask_error:
        validate_directory(broken, tmp_path / "out", tmp_path / "report", params, now=NOW)
    messages.append(str(dask_error.value))
    assert messages[0] == messages[1]
    assert "column 'occurred_at' is mistyped" in messages[0]
    assert f"none of its {len(touches):,} values" in messages[0]
    assert not (tmp_path / "out").exists()


def test_fewer_leads_than_partitions_leave_empty_partitions_that_read_as_nothing(
    raw: Path, client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tiny = tmp_path / "raw"
    shutil.copytree(raw, tiny)
    leads = pd.read_parquet(tiny / "leads.parquet").iloc[:2]
    leads.to_parquet(tiny / "leads.parquet", index=False)
    for name in ("touches", "sales_events"):
        rows = pd.read_parquet(tiny / f"{name}.parquet")
        rows[rows["lead_id"].isin(leads["lead_id"])].to_parquet(tiny / f"{name}.parquet")
    runs = _validate_both(tiny, client, tmp_path, monkeypatch)  # 3 partitions, 2 leads
    _assert_same(runs)
    files = sorted((runs["dask"]["out"] / "leads").glob("part-*.parquet"))
    assert len(files) == 3
    assert sorted(len(pd.read_parquet(path)) for path in files)[0] == 0
