"""The features stage on a real Dask cluster (``engine.kind: dask``): stable lead partitions,
and the same features, bit for bit, as the local engine, whatever the number of partitions."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask
import numpy as np
import pandas as pd
import pytest
import yaml
from distributed import Client

from features import cluster as cluster_module
from features import contract
from features.cluster import cluster
from features.distributed import transform_distributed
from features.engine.engine import FeatureEngine
from features.engine.snapshots import build_snapshots
from features.engine.table import make_engine
from features.errors import UserError
from features.ingest.simulate import simulate
from features.params import EngineParams, GenerateParams, Params
from features.partitions import lead_partition
from pipelines import features as features_stage
from pipelines import ingest
from pipelines import validate as validate_stage

REPO = Path(__file__).resolve().parents[2]
Tables = dict[str, pd.DataFrame]


def _tables(raw: Path) -> Tables:
    return {name: pd.read_parquet(raw / f"{name}.parquet") for name in contract.TABLES}


def _fitted(tables: Tables, params: Params) -> tuple[FeatureEngine, pd.DataFrame]:
    horizon = contract.data_horizon(tables)
    engine = make_engine(params, None).fit(tables, horizon)
    snapshots = build_snapshots(
        tables["leads"],
        tables["sales_events"],
        params.snapshots.offsets_days,
        horizon,
        params.quality_lead.window_days,
        {name: target.stages for name, target in params.targets.items()},
    )
    return engine, snapshots


def _checksum(matrix: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(matrix).tobytes()).hexdigest()


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    """A real two-process LocalCluster on the loopback interface, shared by the module."""
    with cluster(EngineParams(kind="dask", workers=2, threads_per_worker=1)) as shared:
        yield shared


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Tables:
    out = tmp_path_factory.mktemp("dask-world")
    simulate(GenerateParams(leads=3000, seed=5), out)
    return _tables(out)


# ------------------------------------------------------------------ partitions
def test_lead_partition_is_stable_across_processes(small: Tables, tmp_path: Path) -> None:
    ids = small["leads"]["lead_id"]
    here = lead_partition(ids, 8)
    code = (
        "import json, sys, pandas as pd\n"
        "from features.partitions import lead_partition\n"
        "ids = pd.read_parquet(sys.argv[1])['lead_id']\n"
        "print(json.dumps(lead_partition(ids, 8).tolist()))\n"
    )
    path = tmp_path / "lead_ids.parquet"
    small["leads"][["lead_id"]].to_parquet(path)
    for seed in ("1", "12345"):  # Python's own str hash differs with each seed
        result = subprocess.run(
            [sys.executable, "-c", code, str(path)],
            capture_output=True,
            text=True,
            check=True,
            cwd=REPO,
            env={**os.environ, "PYTHONHASHSEED": seed},
            timeout=120,
        )
        assert json.loads(result.stdout) == here.tolist()
    assert set(np.unique(here)) == set(range(8))
    assert np.bincount(here).min() > len(ids) / 8 / 2  # roughly balanced


def test_every_row_of_a_lead_is_in_its_leads_partition(small: Tables) -> None:
    leads = small["leads"]
    for n in (1, 3, 8):
        of_lead = pd.Series(lead_partition(leads["lead_id"], n), index=leads["lead_id"])
        for name in ("touches", "sales_events"):
            rows = small[name]
            got = lead_partition(rows["lead_id"], n)
            assert (got == of_lead.loc[rows["lead_id"]].to_numpy()).all()
            assert ((got >= 0) & (got < n)).all()
    # Any array type of the same ids, the same partitions.
    ids = leads["lead_id"]
    assert (lead_partition(pd.Index(ids), 5) == lead_partition(ids.to_numpy(object), 5)).all()
    assert lead_partition(ids.iloc[:0], 3).shape == (0,)
    with pytest.raises(ValueError, match="at least 1"):
        lead_partition(ids, 0)


# ------------------------------------------------------------ same rows, bits
@pytest.mark.parametrize("partitions", [1, 3, 8])
def test_transform_on_the_cluster_equals_the_local_engine(
    client: Client, small: Tables, repo_params: Params, partitions: int
) -> None:
    engine, snapshots = _fitted(small, repo_params)
    # Shuffled rows: the result follows the caller's order, not the partitions'.
    snapshots = snapshots.sample(frac=1.0, random_state=partitions)
    local = engine.transform(snapshots, small["leads"], small["touches"], small["sales_events"])
    remote = transform_distributed(
        engine,
        snapshots,
        small["leads"],
        small["touches"],
        small["sales_events"],
        client,
        partitions,
    )
    assert remote.shape == local.shape
    assert np.array_equal(remote, local, equal_nan=True)
    assert _checksum(remote) == _checksum(local)


def test_transform_without_event_tables_or_snapshots(
    client: Client, small: Tables, repo_params: Params
) -> None:
    engine, snapshots = _fitted(small, repo_params)
    local = engine.transform(snapshots, small["leads"], None, None)
    remote = transform_distributed(engine, snapshots, small["leads"], None, None, client, 4)
    assert np.array_equal(remote, local, equal_nan=True)
    empty = transform_distributed(engine, snapshots.iloc[:0], small["leads"], None, None, client, 4)
    assert empty.shape == (0, len(engine.feature_names_))


@pytest.mark.slow
def test_checksums_at_the_default_size(
    client: Client, synthetic_raw: Path, repo_params: Params
) -> None:
    """The default simulated data (20,000 leads): the same checksum locally and on the
    cluster, in 1 and 8 partitions."""
    tables = _tables(synthetic_raw)
    engine, snapshots = _fitted(tables, repo_params)
    local = engine.transform(snapshots, tables["leads"], tables["touches"], tables["sales_events"])
    for partitions in (1, 8):
        remote = transform_distributed(
            engine,
            snapshots,
            tables["leads"],
            tables["touches"],
            tables["sales_events"],
            client,
            partitions,
        )
        assert np.array_equal(remote, local, equal_nan=True)
        assert _checksum(remote) == _checksum(local)


# ------------------------------------------------------------------ the stage
@pytest.fixture(scope="module")
def crm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    raw = tmp_path_factory.mktemp("dask-crm")
    ingest.generate(out=raw, params_path=REPO / "params.yaml", leads=2000, seed=3)
    return raw


def _params_file(path: Path, **engine: object) -> Path:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["engine"] = {**raw.get("engine", {}), **engine}
    path.write_text(yaml.safe_dump(raw))
    return path


def _stage(crm: Path, out: Path, params: Path) -> tuple[pd.DataFrame, dict]:
    features_stage.run(validated=crm, out=out, params_path=params)
    spec = json.loads((out / "feature_spec.json").read_text())
    return pd.read_parquet(out / "snapshots.parquet"), spec


@pytest.fixture(scope="module")
def local_stage(crm: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, dict]:
    work = tmp_path_factory.mktemp("stage-local")
    return _stage(crm, work / "feat", _params_file(work / "params.yaml", kind="local"))


def test_stage_on_a_running_cluster_writes_the_local_snapshots(
    client: Client, crm: Path, local_stage: tuple[pd.DataFrame, dict], tmp_path: Path
) -> None:
    address = client.scheduler_info()["address"]
    params = _params_file(tmp_path / "params.yaml", kind="dask", scheduler=address, partitions=3)
    frame, spec = _stage(crm, tmp_path / "feat", params)
    local_frame, local_spec = local_stage
    pd.testing.assert_frame_equal(frame, local_frame, check_exact=True)
    assert (spec["engine"], local_spec["engine"]) == ("dask", "local")
    assert spec["features"] == local_spec["features"]
    assert client.scheduler_info()["workers"]  # the shared cluster is left running


def test_stage_starts_and_closes_its_own_cluster(
    crm: Path, local_stage: tuple[pd.DataFrame, dict], tmp_path: Path
) -> None:
    params = _params_file(tmp_path / "params.yaml", kind="dask", scheduler=None, partitions=8)
    frame, spec = _stage(crm, tmp_path / "feat", params)
    pd.testing.assert_frame_equal(frame, local_stage[0], check_exact=True)
    assert spec["engine"] == "dask"


@pytest.mark.slow
def test_bank_marketing_flat_export_on_the_cluster_equals_local(
    client: Client, tmp_path: Path
) -> None:
    """The real flat export (41,188 rows, no event tables): imported and validated as a user
    does, then the features stage locally and on the running cluster write the same frame."""
    raw, validated = tmp_path / "raw", tmp_path / "validated"
    ingest.import_export(
        REPO / "mappings/bank_marketing.yaml",
        REPO / "data/samples/bank-additional-full.csv.gz",
        raw,
    )
    params = _params_file(tmp_path / "params-local.yaml", kind="local")
    validate_stage.run(raw=raw, out=validated, report=tmp_path / "report", params_path=params)
    local_frame, local_spec = _stage(validated, tmp_path / "feat-local", params)
    address = client.scheduler_info()["address"]
    remote = _params_file(tmp_path / "params-dask.yaml", kind="dask", scheduler=address)
    frame, spec = _stage(validated, tmp_path / "feat-dask", remote)
    assert len(frame) == 41_188
    assert "duration" not in frame.columns
    pd.testing.assert_frame_equal(frame, local_frame, check_exact=True)
    assert (spec["engine"], local_spec["engine"]) == ("dask", "local")


# -------------------------------------------------------------- cluster faults
def test_an_unreachable_scheduler_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cluster_module, "CONNECT_TIMEOUT", "2s")
    params = EngineParams(kind="dask", scheduler="tcp://127.0.0.1:9")  # discard port: closed
    with (
        pytest.raises(UserError, match="features: cannot start or reach the Dask") as caught,
        cluster(params),
    ):
        pass
    assert "tcp://127.0.0.1:9" in str(caught.value)
    assert "\n" not in str(caught.value)


class DyingEngine:
    """An engine whose worker process dies the moment it transforms; with ``survive`` (a
    file), only the first time: the file is created before the death, a rerun then computes
    the real features. Defined at module level so the worker can unpickle it by name."""

    def __init__(self, engine: FeatureEngine, survive: Path | None = None) -> None:
        self.engine = engine
        self.survive = survive
        self.feature_names_ = engine.feature_names_

    def transform(self, *args: Any, **kwargs: Any) -> np.ndarray:
        if self.survive is None:
            os._exit(1)
        try:
            self.survive.touch(exist_ok=False)
        except FileExistsError:
            return self.engine.transform(*args, **kwargs)
        os._exit(1)


def test_a_worker_killed_mid_transform_fails_the_stage_in_one_line(
    small: Tables, repo_params: Params, tmp_path: Path
) -> None:
    """A worker that dies on the partition it runs, with ``allowed-failures`` 0 (no rerun):
    the stage ends with one line naming itself and the cluster failure (no traceback), and
    the temporary partition files are gone."""
    engine, snapshots = _fitted(small, repo_params)
    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 0}),
        cluster(EngineParams(kind="dask", workers=1)) as own,
        pytest.raises(UserError) as caught,
    ):
        transform_distributed(
            DyingEngine(engine),  # type: ignore[arg-type]
            snapshots,
            small["leads"],
            small["touches"],
            small["sales_events"],
            own,
            2,
            workdir=tmp_path,
        )
    message = str(caught.value)
    assert message.startswith("features: the Dask cluster failed during the transform: ")
    assert "KilledWorker" in message
    assert "\n" not in message
    assert list(tmp_path.iterdir()) == []


def test_a_task_whose_worker_dies_runs_again_on_another(
    client: Client, small: Tables, repo_params: Params, tmp_path: Path
) -> None:
    """Dask's default: a task lost with its worker is rerun (the nanny restarts the worker);
    the partitions are files, so the rerun has all it needs and the matrix is the local one."""
    engine, snapshots = _fitted(small, repo_params)
    local = engine.transform(snapshots, small["leads"], small["touches"], small["sales_events"])
    marker = tmp_path / "died-once"
    work = tmp_path / "work"
    work.mkdir()
    remote = transform_distributed(
        DyingEngine(engine, survive=marker),  # type: ignore[arg-type]
        snapshots,
        small["leads"],
        small["touches"],
        small["sales_events"],
        client,
        3,
        workdir=work,
    )
    assert marker.exists()  # a worker did die
    assert np.array_equal(remote, local, equal_nan=True)
    assert list(work.iterdir()) == []
    # the cluster is whole again for the next test
    client.wait_for_workers(2, timeout=60)
