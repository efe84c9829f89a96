"""Stage `features`: validated tables → point-in-time snapshots, labels, split and features
(:func:`features.engine.table.build_feature_table`).

Writes ``snapshots.parquet`` (lead_id, as_of, split, label_<target>, features),
``feature_spec.json`` and the fitted engine (``engine.pkl``, carried by the model bundle),
all at once into the output directory (atomically).

``params.yaml`` ``engine.kind: dask`` runs the transform on a Dask cluster, in lead partitions
(:mod:`features.distributed`); the fit stays in this process. When the validate stage wrote the
lead tables as partitioned datasets (it does under ``engine.kind: dask``), the touches are never
loaded here: the workers count their types for the fit and read their partitions for the
transform. The features are the same bits.
"""

from __future__ import annotations

import json
import logging
import pickle
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features import contract
from features.distributed import DaskBackend, backend
from features.engine.table import build_feature_table
from features.params import load_params
from features.storage import atomic_directory, read_manifest, read_validated

logger = logging.getLogger(__name__)


ROW_GROUP = 1_048_576
"""Rows per row group of ``snapshots.parquet`` (pyarrow's default for one ``write_table``)."""


def write_snapshots(snapshots: pd.DataFrame, path: Path) -> None:
    """``snapshots`` as one Parquet file, converted to Arrow a row group at a time: the
    features are not held twice (as the frame and as one Arrow table) while writing."""
    schema = pa.Schema.from_pandas(snapshots.iloc[:0], preserve_index=False)
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        for start in range(0, max(len(snapshots), 1), ROW_GROUP):
            part = snapshots.iloc[start : start + ROW_GROUP]
            writer.write_table(pa.Table.from_pandas(part, schema=schema, preserve_index=False))


def run(validated: Path, out: Path, params_path: Path) -> None:
    params = load_params(params_path)
    manifest = read_manifest(validated)
    # The workers read their partitions from beside the output: a cluster's workers must reach
    # the data directory anyway.
    out.parent.mkdir(parents=True, exist_ok=True)
    with backend(params.engine, workdir=out.parent, stage="features", dataset=validated) as runner:
        # On a cluster, partitioned touches (the largest table) stay with the workers: this
        # process reads leads, sales events, campaigns and accounts only.
        remote = runner.touch_summary() if isinstance(runner, DaskBackend) else None
        names = [name for name in contract.TABLES if remote is None or name != "touches"]
        tables = read_validated(validated, names)
        engine, snapshots = build_feature_table(
            tables, params, manifest, runner.transform, remote_touches=remote
        )
    del tables  # the engine holds what it fitted; the tables are not needed to write
    with atomic_directory(out) as staging:
        write_snapshots(snapshots, staging / "snapshots.parquet")
        (staging / "feature_spec.json").write_text(
            json.dumps({"engine": runner.kind, "features": engine.feature_spec()}, indent=2) + "\n"
        )
        with (staging / "engine.pkl").open("wb") as handle:
            pickle.dump(engine, handle, protocol=pickle.HIGHEST_PROTOCOL)
    counts = snapshots.groupby("split").size().to_dict()
    logger.info(
        "features: %d snapshots %s, %d features → %s (engine: %s)",
        len(snapshots),
        counts,
        len(engine.feature_names_),
        out,
        runner.kind,
    )
