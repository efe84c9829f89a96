"""The open leads scored for the queue and the CRM (stages ``queue`` and ``rescore``), in this
process or, under ``engine.kind: dask`` with lead-partitioned validated tables, partition by
partition on the cluster's workers.

On the cluster each task reads one lead partition of leads, touches and sales events (and the
small campaigns and accounts tables whole) from the validated datasets, and builds that
partition's queue rows with the champion (features, probabilities, grades, reasons, timing),
loaded on the worker from a file the stage writes once; the stage process puts the rows
together and ranks them (:func:`models.queue.ranked`: priorities are percentiles among all open
leads). A lead's row depends on its own history and the model only, so the queue is the local
one, row for row, whatever the number of partitions; the stage never loads the touches.
"""

from __future__ import annotations

import pickle
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from features.cluster import cluster, cluster_failures, one_line
from features.errors import UserError
from features.params import Params
from features.partitions import dataset_meta, is_dataset
from features.storage import read_manifest, read_validated, validated_horizon
from models.queue import queue_rows, ranked, sales_queue
from models.scorer import LeadScorer

if TYPE_CHECKING:
    from distributed import Client


def score_open_leads(
    validated: Path,
    params: Params,
    scorer: LeadScorer,
    model: Mapping[str, str],
    stage: str,
    as_of: pd.Timestamp | None = None,
) -> tuple[pd.DataFrame, pd.Timestamp]:
    """The queue of the leads open at ``as_of`` (default: the data horizon), and that time."""
    flat = read_manifest(validated) is not None
    partition_leads = params.features.partition_leads
    when = as_of if as_of is not None else validated_horizon(validated, params.data.horizon)
    if params.engine.kind == "dask" and is_dataset(validated / "leads"):
        with cluster(params.engine, stage) as client:
            rows = queue_rows_on_cluster(
                validated, scorer, when, model, flat, partition_leads, client, stage
            )
        return ranked(rows, scorer), when
    tables = read_validated(validated)
    return sales_queue(tables, scorer, when, model, flat, partition_leads), when


def _partition_rows(
    scorer_path: str,
    validated: str,
    partition: int,
    when: pd.Timestamp,
    model: Mapping[str, str],
    flat: bool,
    partition_leads: int,
) -> pd.DataFrame:
    """On a worker: one lead partition's queue rows, from files only (a task whose worker
    dies can run again on another)."""
    with open(scorer_path, "rb") as handle:
        scorer = pickle.load(handle)
    tables = read_validated(validated, partition=partition)
    return queue_rows(tables, scorer, when, model, flat, partition_leads)


def queue_rows_on_cluster(
    validated: Path,
    scorer: LeadScorer,
    when: pd.Timestamp,
    model: Mapping[str, str],
    flat: bool,
    partition_leads: int,
    client: Client,
    stage: str,
) -> pd.DataFrame:
    """Every partition's :func:`~models.queue.queue_rows`, computed on ``client``'s workers
    and put together (not ranked). The scorer goes to them as a file beside ``validated``
    (which every worker reaches), removed afterwards."""
    count = int(dataset_meta(validated / "leads")["partitions"])
    with tempfile.TemporaryDirectory(prefix=f".{stage}-dask-", dir=validated.parent) as shared:
        scorer_path = Path(shared) / "scorer.pkl"
        with scorer_path.open("wb") as handle:
            pickle.dump(scorer, handle, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            futures = [
                client.submit(
                    _partition_rows,
                    str(scorer_path),
                    str(validated),
                    p,
                    when,
                    dict(model),
                    flat,
                    partition_leads,
                    pure=False,
                )
                for p in range(count)
            ]
            parts = client.gather(futures)
        except cluster_failures() as error:
            raise UserError(
                f"{stage}: the Dask cluster failed while scoring: {one_line(error)}"
            ) from None
    kept = [part for part in parts if len(part)] or parts[:1]
    return pd.concat(kept, ignore_index=True) if len(kept) > 1 else kept[0]
