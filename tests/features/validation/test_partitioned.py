"""Validation per lead partition on a real two-process Dask cluster (``engine.kind: dask``):
the same verdict, counts, quarantine, valid rows and Great Expectations results as one local
run over the whole tables, with defects planted so that they are far apart in the files; and the
features stage reading the partitioned output without ever loading the touches."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from distributed import Client

from features.cluster import cluster
from features.ingest.simulate import simulate
from features.params import EngineParams, GenerateParams, load_params
from features.partitions import is_dataset, lead_partition, partition_files
from features.storage import read_validated
from features.validation import validate as validate_module
from features.validation.rules import DUPLICATE_ID, rule_unknown_reference
from features.validation.validate import validate_directory
from pipelines import features as features_stage

REPO = Path(__file__).resolve().parents[3]
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
PARTITIONS = 5
RARE_TYPE = "podcast_listen"
"""A touch type planted 6 times on 6 leads of different partitions: under the vocabulary's
minimum count (5) in every partition, above it in the whole table."""


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    with cluster(EngineParams(kind="dask", workers=2, threads_per_worker=1)) as shared:
        yield shared


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The dirty simulator world (every realistic defect) plus defects planted at both ends of
    the files: a lead repeated at the far end under its id, a touch of an unknown lead, a
    campaign id used twice, and a rare touch type spread over the partitions."""
    out = tmp_path_factory.mktemp("partitioned-raw")
    simulate(GenerateParams(leads=3000, seed=11, dirty=True), out)
    leads = pd.read_parquet(out / "leads.parquet")
    first = leads.iloc[[0]].assign(job_title="someone else")
    pd.concat([leads, first], ignore_index=True).to_parquet(out / "leads.parquet", index=False)
    touches = pd.read_parquet(out / "touches.parquet")
    orphan = touches.iloc[[len(touches) // 2]].assign(lead_id="L-nobody")
    clean_leads = leads["lead_id"].drop_duplicates(keep=False)
    parts = lead_partition(clean_leads, PARTITIONS)
    spread = [clean_leads[parts == p].iloc[3] for p in range(PARTITIONS)] + [clean_leads.iloc[10]]
    rare = pd.concat(
        [touches[touches["lead_id"] == lead].iloc[[0]] for lead in spread], ignore_index=True
    ).assign(touch_type=RARE_TYPE)
    planted = pd.concat([orphan, touches, rare], ignore_index=True)
    planted.to_parquet(out / "touches.parquet", index=False)
    campaigns = pd.read_parquet(out / "campaigns.parquet")
    twice = campaigns.iloc[[5]].assign(name="a second campaign under the same id")
    pd.concat([campaigns, twice], ignore_index=True).to_parquet(
        out / "campaigns.parquet", index=False
    )
    return out


def _params(path: Path, **engine: Any) -> Path:
    raw_params = yaml.safe_load((REPO / "params.yaml").read_text())
    raw_params["engine"] = {**raw_params["engine"], "partitions": PARTITIONS, **engine}
    raw_params["validate"]["max_quarantine_share"] = 0.5  # the dirty world quarantines a lot
    path.write_text(yaml.safe_dump(raw_params))
    return path


@pytest.fixture(scope="module")
def runs(
    raw: Path, client: Client, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, dict[str, Any]]:
    work = tmp_path_factory.mktemp("partitioned-runs")
    address = client.scheduler_info()["address"]
    out: dict[str, dict[str, Any]] = {}
    for kind, engine in (
        ("local", {"kind": "local"}),
        ("dask", {"kind": "dask", "scheduler": address}),
    ):
        params = load_params(_params(work / f"params-{kind}.yaml", **engine))
        summary = validate_directory(
            raw, work / f"validated-{kind}", work / f"report-{kind}", params, now=NOW
        )
        out[kind] = {
            "summary": summary.to_dict(),
            "validated": work / f"validated-{kind}",
            "params": work / f"params-{kind}.yaml",
        }
    return out


def _without_times(summary: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in summary.items() if key not in ("seconds", "ge_seconds")}


def test_the_cluster_finds_what_one_local_run_finds(runs: dict[str, dict[str, Any]]) -> None:
    local, dask = runs["local"], runs["dask"]
    assert _without_times(dask["summary"]) == _without_times(local["summary"])
    rules = {name: table["rules"] for name, table in local["summary"]["tables"].items()}
    # the planted defects were found (and found the same way on the cluster, above)
    assert rules["leads"][DUPLICATE_ID] >= 2  # the far-apart copies, both quarantined
    assert rules["touches"][rule_unknown_reference("lead_id", "leads")] >= 1
    assert rules["campaigns"][DUPLICATE_ID] >= 2
    valid_local = read_validated(local["validated"])
    valid_dask = read_validated(dask["validated"])
    assert set(valid_dask) == set(valid_local)
    for name in valid_local:
        pd.testing.assert_frame_equal(valid_dask[name], valid_local[name], check_exact=True)
        quarantine = f"quarantine/{name}.parquet"
        pd.testing.assert_frame_equal(
            pd.read_parquet(dask["validated"] / quarantine),
            pd.read_parquet(local["validated"] / quarantine),
            check_exact=True,
        )


def test_lead_tables_are_written_as_lead_partitions(runs: dict[str, dict[str, Any]]) -> None:
    validated = runs["dask"]["validated"]
    assert not is_dataset(runs["local"]["validated"] / "touches")  # local: one file each
    assert not is_dataset(validated / "campaigns")  # small tables stay single files
    assert (validated / "campaigns.parquet").is_file()
    for name in ("leads", "touches", "sales_events"):
        assert is_dataset(validated / name)
        assert not (validated / f"{name}.parquet").exists()
        files = partition_files(validated / name)
        assert len(files) == PARTITIONS
        for p, path in enumerate(files):
            assert (lead_partition(pd.read_parquet(path)["lead_id"], PARTITIONS) == p).all()


def test_merged_great_expectations_results_equal_one_run(
    raw: Path, client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Per expectation of every table: success and counts as one run over the whole table,
    the sample of failing rows numbered as in the whole table (the results the report is
    written from, caught on their way to it)."""
    address = client.scheduler_info()["address"]
    results: dict[str, dict[str, Any]] = {}
    original = validate_module.write_report

    def spy(report: Path, summary: Any, found: dict[str, Any]) -> None:
        results[report.name] = found
        original(report, summary, found)

    monkeypatch.setattr(validate_module, "write_report", spy)
    quarantined: dict[str, pd.DataFrame] = {}
    for kind, engine in (("local", {"kind": "local"}), ("dask", {"scheduler": address})):
        params = load_params(_params(tmp_path / f"{kind}.yaml", **{"kind": "dask", **engine}))
        validate_directory(raw, tmp_path / f"out-{kind}", tmp_path / kind, params, now=NOW)
        quarantined[kind] = pd.read_parquet(tmp_path / f"out-{kind}/quarantine/touches.parquet")
    assert set(results["dask"]) == set(results["local"])
    for name, local_result in results["local"].items():
        dask_result = results["dask"][name]
        assert dask_result.success == local_result.success
        assert dask_result.statistics == local_result.statistics
        for ours, theirs in zip(dask_result.results, local_result.results, strict=True):
            assert ours.expectation_config.type == theirs.expectation_config.type
            assert ours.success == theirs.success
            for key in ("element_count", "unexpected_count", "missing_count"):
                assert ours.result.get(key) == theirs.result.get(key), (name, key)
            for key in ("unexpected_percent", "missing_percent", "unexpected_percent_total"):
                if theirs.result.get(key) is None:
                    assert ours.result.get(key) is None
                else:
                    assert ours.result[key] == theirs.result[key], (name, key)
            if name == "touches":  # numbered as in the file: rows that were quarantined
                failing = set(quarantined["dask"]["source_row"] - 1)
                assert set(ours.result.get("partial_unexpected_index_list") or []) <= failing


def test_features_from_the_partitions_equal_local_and_never_load_the_touches(
    runs: dict[str, dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local, dask = runs["local"], runs["dask"]
    features_stage.run(local["validated"], tmp_path / "local", local["params"])
    asked: list[list[str] | None] = []
    original = features_stage.read_validated

    def spy(directory: Any, names: Any = None, lead_ids: Any = None) -> dict[str, pd.DataFrame]:
        asked.append(None if names is None else list(names))
        return original(directory, names, lead_ids)

    monkeypatch.setattr(features_stage, "read_validated", spy)
    features_stage.run(dask["validated"], tmp_path / "dask", dask["params"])
    assert asked
    assert all(names is not None and "touches" not in names for names in asked)
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "dask/snapshots.parquet"),
        pd.read_parquet(tmp_path / "local/snapshots.parquet"),
        check_exact=True,
    )
    engines = {kind: pd.read_pickle(tmp_path / kind / "engine.pkl") for kind in ("local", "dask")}
    # the rare type counted over the partitions, as over the whole table
    assert RARE_TYPE in engines["local"].touch_types_
    assert engines["dask"].touch_types_ == engines["local"].touch_types_
    assert engines["dask"].horizon_ms_ == engines["local"].horizon_ms_
    # the workers' partition inputs are gone
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".features-dask-")]
    shutil.rmtree(tmp_path / "dask")
