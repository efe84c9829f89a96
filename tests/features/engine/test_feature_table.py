"""The feature table is one definition however it is cut: any partition size gives the rows of
one transform of every snapshot, in the table's order (as_of, then lead)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features import contract
from features.engine.table import build_feature_table, make_engine
from features.ingest.simulate import simulate
from features.params import GenerateParams, Params
from features.storage import read_validated
from pipelines import features as features_stage

LEADS = 400


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pd.DataFrame]:
    out = tmp_path_factory.mktemp("table-world")
    simulate(GenerateParams(leads=LEADS, seed=11), out)
    return read_validated(out)


def _with_partition(params: Params, leads: int) -> Params:
    return params.model_copy(
        update={"features": params.features.model_copy(update={"partition_leads": leads})}
    )


@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(partition=st.integers(1, LEADS + 10))
def test_any_partition_size_gives_one_transform_of_every_snapshot_in_table_order(
    tables: dict[str, pd.DataFrame], repo_params: Params, partition: int
) -> None:
    engine, table = build_feature_table(tables, _with_partition(repo_params, partition), None)
    features = list(engine.feature_names_)
    head = table.drop(columns=features)
    # the order: as_of, then lead, each (lead, as_of) once
    assert head.equals(head.sort_values(["as_of", "lead_id"], kind="stable"))
    assert not head.duplicated(["lead_id", "as_of"]).any()
    # the features: one transform of all snapshots at once, by an engine fitted the same way
    horizon = contract.data_horizon(tables, repo_params.data.horizon)
    reference = make_engine(repo_params, None).fit(tables, horizon)
    matrix = reference.transform(
        head[["lead_id", "as_of"]], tables["leads"], tables["touches"], tables["sales_events"]
    )
    expected = reference.feature_frame(matrix)
    pd.testing.assert_frame_equal(table[features], expected, check_exact=True)


def test_the_snapshots_file_written_a_row_group_at_a_time_reads_back_as_the_table(
    tables: dict[str, pd.DataFrame],
    repo_params: Params,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, table = build_feature_table(tables, _with_partition(repo_params, 97), None)
    monkeypatch.setattr(features_stage, "ROW_GROUP", 100)
    path = tmp_path / "snapshots.parquet"
    features_stage.write_snapshots(table, path)
    assert pq.ParquetFile(path).metadata.num_row_groups == -(-len(table) // 100)
    pd.testing.assert_frame_equal(pd.read_parquet(path), table, check_exact=True)
    features_stage.write_snapshots(table.iloc[:0], tmp_path / "empty.parquet")
    empty = pd.read_parquet(tmp_path / "empty.parquet")
    assert len(empty) == 0
    assert list(empty.columns) == list(table.columns)


def test_reading_the_matrix_a_column_at_a_time_equals_reading_the_frame(
    tables: dict[str, pd.DataFrame],
    repo_params: Params,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    engine, table = build_feature_table(tables, repo_params, None)
    monkeypatch.setattr(features_stage, "ROW_GROUP", 333)
    path = tmp_path / "snapshots.parquet"
    features_stage.write_snapshots(table, path)
    stored = pd.read_parquet(path)
    for keep in ((), ("channel",)):
        head, matrix = engine.read_matrix(path, keep)
        pd.testing.assert_frame_equal(head, engine.drop_features(stored, keep), check_exact=True)
        expected = engine.matrix_from_frame(stored)
        assert matrix.shape == expected.shape
        assert np.array_equal(matrix, expected, equal_nan=True)
    assert engine.categorical_features_  # the codes' path is exercised too
