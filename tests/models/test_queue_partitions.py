"""Scoring the open leads per lead partition on a real two-process Dask cluster (stages
``queue`` and ``rescore`` under ``engine.kind: dask``), and the evaluate stage's open-lead
features from the partitions: the same queue, row for row and bit for bit, as one local run,
and the stage's process never loads the touches."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import yaml
from distributed import Client

from features import contract
from features.cluster import cluster
from features.distributed import DaskBackend
from features.params import EngineParams, load_params
from features.partitions import write_dataset
from features.storage import read_validated, validated_horizon
from models import queue_partitions
from models.queue import open_lead_features, sales_queue
from models.queue_partitions import queue_rows_on_cluster, score_open_leads
from tests.serving.world import World

REF = {"name": "lead-scoring", "version": "7"}


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    with cluster(EngineParams(kind="dask", workers=2, threads_per_worker=1)) as shared:
        yield shared


@pytest.fixture(scope="module")
def partitioned(world: World, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The world's validated tables as the validate stage writes them under Dask."""
    out = tmp_path_factory.mktemp("queue-partitions") / "validated"
    out.mkdir()
    for name in contract.TABLES:
        if "lead_id" in contract.TABLES[name].column_names:
            frame = world.tables[name]
            latest = frame[contract.TABLES[name].time_column].max()
            write_dataset(out / name, pa.Table.from_pandas(frame, preserve_index=False), 4, latest)
        else:
            shutil.copy(world.raw / f"{name}.parquet", out / f"{name}.parquet")
    return out


def test_the_horizon_comes_from_the_datasets_descriptions(world: World, partitioned: Path) -> None:
    expected = contract.data_horizon(world.tables)
    assert validated_horizon(partitioned) == expected
    assert validated_horizon(world.raw) == expected


def test_the_queue_from_the_partitions_is_the_local_queue(
    world: World, partitioned: Path, client: Client
) -> None:
    horizon = contract.data_horizon(world.tables)
    local = sales_queue(world.tables, world.scorer, horizon, REF)
    rows = queue_rows_on_cluster(
        partitioned, world.scorer, horizon, REF, False, 250_000, client, "queue"
    )
    remote = queue_partitions.ranked(rows, world.scorer)
    assert len(local) > 100
    pd.testing.assert_frame_equal(remote, local, check_exact=True)
    # the scorer file the workers read is gone
    assert not [p for p in partitioned.parent.iterdir() if p.name.startswith(".queue-dask-")]


def test_the_stages_path_scores_on_the_cluster_without_loading_the_touches(
    world: World,
    partitioned: Path,
    client: Client,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    raw = yaml.safe_load(world.params_path.read_text())
    raw["engine"] = {
        **raw["engine"],
        "kind": "dask",
        "scheduler": client.scheduler_info()["address"],
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    params = load_params(tmp_path / "params.yaml")
    read: list[object] = []
    monkeypatch.setattr(
        queue_partitions, "read_validated", lambda *args, **kwargs: read.append(args)
    )
    as_of = contract.data_horizon(world.tables) - pd.Timedelta(days=20)
    queue, when = score_open_leads(partitioned, params, world.scorer, REF, "rescore", as_of)
    assert read == []  # nothing read in this process: the workers read their partitions
    assert when == as_of
    local = sales_queue(world.tables, world.scorer, as_of, REF)
    pd.testing.assert_frame_equal(queue, local, check_exact=True)


def test_open_lead_features_from_the_partitions_equal_local(
    world: World, partitioned: Path, client: Client
) -> None:
    """The evaluate stage's forecast features: the touches read by the workers."""
    horizon = contract.data_horizon(world.tables)
    _, _, local = open_lead_features(world.tables, world.scorer, horizon)
    without_touches = read_validated(
        partitioned, ["leads", "sales_events", "campaigns", "accounts"]
    )
    runner = DaskBackend(client, 4, partitioned.parent, "evaluate", dataset=partitioned)
    _, _, remote = open_lead_features(
        without_touches, world.scorer, horizon, partition=500, transform=runner.transform
    )
    assert local.shape == remote.shape
    assert np.array_equal(local, remote, equal_nan=True)
