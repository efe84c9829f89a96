"""The batch transform on a Dask cluster (``params.yaml`` ``engine``), behind one small
interface: a :class:`Backend` turns (fitted engine, snapshots, leads, touches, sales events)
into the feature matrix. :class:`LocalBackend` calls ``engine.transform`` in this process (the
default, unchanged); :class:`DaskBackend` cuts the inputs into lead partitions by a stable hash
of ``lead_id`` (every row of a lead in one partition), writes each, with the fitted engine, as
files the workers read (a task that holds no data can run again on another worker when its own
dies), runs ``engine.transform`` there and puts the rows back in the snapshots' order. A lead's
features depend only on its own history and the fitted state, so the matrix is the same, bit
for bit, whatever the number of partitions or workers. Another backend (Spark) would be one
more class with the same ``transform``.

When the validate stage has written the lead tables as partitioned datasets
(:mod:`features.partitions`, under ``engine.kind: dask``), the tasks read their partition of
leads, touches and sales events straight from them: the stage writes only the snapshots for
them, and never loads the touches (:meth:`DaskBackend.touch_summary` counts what the fit needs
of them on the workers). What is not distributed (yet): reading leads and sales events, the
snapshots and labels, and ``FeatureEngine.fit``, which learns vocabularies and time-indexed
history from the whole dataset and runs once, in the stage's process; and the matrix comes
back to the stage's process.

``dask`` and ``distributed`` are imported only when a Dask backend is asked for.
"""

from __future__ import annotations

import contextlib
import pickle
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import pandas as pd

from features.cluster import cluster, cluster_failures, one_line
from features.errors import UserError
from features.params import EngineParams
from features.partitions import dataset_meta, is_dataset, lead_partition, read_dataset

if TYPE_CHECKING:
    from distributed import Client

    from features.engine.engine import FeatureEngine
    from features.engine.table import RemoteTouches


class Backend(Protocol):
    """Where the batch transform runs."""

    kind: str

    def transform(
        self,
        engine: FeatureEngine,
        snapshots: pd.DataFrame,
        leads: pd.DataFrame,
        touches: pd.DataFrame | None,
        sales_events: pd.DataFrame | None,
    ) -> np.ndarray: ...


class LocalBackend:
    """``engine.transform`` in this process, on every core."""

    kind = "local"

    def transform(
        self,
        engine: FeatureEngine,
        snapshots: pd.DataFrame,
        leads: pd.DataFrame,
        touches: pd.DataFrame | None,
        sales_events: pd.DataFrame | None,
    ) -> np.ndarray:
        return engine.transform(snapshots, leads, touches, sales_events)


class DaskBackend:
    """:func:`transform_distributed` on ``client``'s cluster, in ``partitions`` lead
    partitions, through files under ``workdir``."""

    kind = "dask"

    def __init__(
        self,
        client: Client,
        partitions: int,
        workdir: Path | None,
        stage: str = "features",
        dataset: Path | None = None,
    ) -> None:
        self.client = client
        self.partitions = partitions
        self.workdir = workdir
        self.stage = stage
        self.dataset = dataset

    def touch_summary(self) -> RemoteTouches | None:
        """The touches' latest time and type counts, counted on the workers partition by
        partition; None unless ``dataset`` holds partitioned touches."""
        from features.engine.table import RemoteTouches

        if self.dataset is None or not is_dataset(self.dataset / "touches"):
            return None
        directory = self.dataset / "touches"
        count = int(dataset_meta(directory)["partitions"])
        try:
            futures = [
                self.client.submit(_touch_type_counts, str(directory), p, pure=False)
                for p in range(count)
            ]
            parts = self.client.gather(futures)
        except cluster_failures() as error:
            raise UserError(
                f"{self.stage}: the Dask cluster failed counting touch types: {one_line(error)}"
            ) from None
        counts = pd.concat(parts).groupby(level=0, sort=False).sum()
        latest = dataset_meta(directory)["latest"]
        return RemoteTouches(None if latest is None else pd.Timestamp(latest), counts)

    def transform(
        self,
        engine: FeatureEngine,
        snapshots: pd.DataFrame,
        leads: pd.DataFrame,
        touches: pd.DataFrame | None,
        sales_events: pd.DataFrame | None,
    ) -> np.ndarray:
        return transform_distributed(
            engine,
            snapshots,
            leads,
            touches,
            sales_events,
            self.client,
            self.partitions,
            workdir=self.workdir,
            stage=self.stage,
            dataset=self.dataset,
        )


def _touch_type_counts(directory: str, partition: int) -> pd.Series:
    """On a worker: one partition's normalised touch type counts."""
    from features.engine.engine import touch_type_counts_of

    frame = read_dataset(directory, columns=["touch_type"], partitions=[partition])
    return touch_type_counts_of(frame["touch_type"])


@contextlib.contextmanager
def backend(
    params: EngineParams,
    workdir: Path | None = None,
    stage: str = "features",
    dataset: Path | None = None,
) -> Iterator[Backend]:
    """The backend ``params`` asks for; a Dask one holds a client (and, without a scheduler
    address, its own local cluster) until the block ends, and hands its workers their inputs
    as files under ``workdir`` (default: the system's temporary directory, which only a local
    cluster shares)."""
    if params.kind == "local":
        yield LocalBackend()
        return
    with cluster(params, stage) as client:
        yield DaskBackend(client, params.partitions, workdir, stage, dataset)


def _rows_by_partition(frame: pd.DataFrame | None, n: int) -> list[pd.DataFrame | None]:
    """``frame``'s rows in each of ``n`` lead partitions (None for no table)."""
    if frame is None:
        return [None] * n
    part = lead_partition(frame["lead_id"], n)
    return [frame[part == p] for p in range(n)]


PartitionFiles = dict[str, str | tuple[str, int] | None]
"""One partition's inputs: ``snapshots``, ``leads``, ``touches``, ``sales_events``, each a
Parquet file, a (dataset directory, partition) of a partitioned table, or None (no table)."""


def _read_input(source: str | tuple[str, int] | None) -> pd.DataFrame | None:
    if source is None:
        return None
    if isinstance(source, tuple):
        directory, partition = source
        return read_dataset(directory, partitions=[partition])
    return pd.read_parquet(source)


def _transform_partition(engine_path: str, files: PartitionFiles) -> np.ndarray:
    """On a worker: one partition's matrix, on the worker's threads, from files only, so a
    task whose worker dies can run again on another (no data lives only in a dead worker)."""
    from distributed import get_worker

    with open(engine_path, "rb") as handle:
        engine = pickle.load(handle)
    tables = {name: _read_input(source) for name, source in files.items()}
    threads = int(get_worker().state.nthreads)
    return engine.transform(
        tables["snapshots"],
        tables["leads"],
        tables["touches"],
        tables["sales_events"],
        threads=threads,
    )


def transform_distributed(
    engine: FeatureEngine,
    snapshots: pd.DataFrame,
    leads: pd.DataFrame,
    touches: pd.DataFrame | None,
    sales_events: pd.DataFrame | None,
    client: Client,
    partitions: int,
    workdir: Path | None = None,
    stage: str = "features",
    dataset: Path | None = None,
) -> np.ndarray:
    """``engine.transform(snapshots, leads, touches, sales_events)`` computed on ``client``'s
    workers, one task per lead partition: the same matrix, bit for bit, rows in
    ``snapshots``' order. The fitted engine and each partition's rows go to the workers as
    files in a temporary directory under ``workdir`` (which every worker must reach: the data
    directory), removed afterwards; a task reads only those, so Dask can rerun it elsewhere when
    its worker is lost (``distributed.scheduler.allowed-failures`` times). A cluster that fails
    on the way (a worker lost too often, the scheduler gone) is a one-line
    :class:`UserError` naming ``stage``; an error of the engine itself keeps its traceback.

    ``dataset``: a validated directory whose lead tables are partitioned datasets
    (:mod:`features.partitions`); the tasks read their partition of each such table from it
    (a None frame given for it is read there too: the stage need not load it), in the
    dataset's partitions, and only the snapshots are written for them."""

    width = len(engine.feature_names_)
    result = np.empty((len(snapshots), width), dtype=np.float64)
    if len(snapshots) == 0:
        return result
    given = {"leads": leads, "touches": touches, "sales_events": sales_events}
    stored = {
        name: dataset / name for name in given if dataset is not None and is_dataset(dataset / name)
    }
    if stored:
        partitions = int(dataset_meta(next(iter(stored.values())))["partitions"])
    snapshot_part = lead_partition(snapshots["lead_id"], partitions)
    rows = [np.flatnonzero(snapshot_part == p) for p in range(partitions)]
    busy = [p for p in range(partitions) if len(rows[p])]
    tables = {
        name: [None] * partitions if name in stored else _rows_by_partition(frame, partitions)
        for name, frame in given.items()
    }
    with tempfile.TemporaryDirectory(prefix=f".{stage}-dask-", dir=workdir) as shared:
        root = Path(shared)
        engine_path = root / "engine.pkl"
        with engine_path.open("wb") as handle:
            pickle.dump(engine, handle, protocol=pickle.HIGHEST_PROTOCOL)
        work: list[PartitionFiles] = []
        for p in busy:
            parts = {"snapshots": snapshots.iloc[rows[p]], **{n: t[p] for n, t in tables.items()}}
            files: PartitionFiles = {
                name: (str(directory), p) for name, directory in stored.items()
            }
            for name, frame in parts.items():
                if name in stored:
                    continue
                if frame is None:
                    files[name] = None
                    continue
                path = root / f"{p:05d}-{name}.parquet"
                frame.to_parquet(path, index=False)
                files[name] = str(path)
            work.append(files)
        try:
            futures = [
                client.submit(_transform_partition, str(engine_path), files, pure=False)
                for files in work
            ]
            matrices = client.gather(futures)
        except cluster_failures() as error:
            raise UserError(
                f"{stage}: the Dask cluster failed during the transform: {one_line(error)}"
            ) from None
    for p, matrix in zip(busy, matrices, strict=True):
        result[rows[p]] = matrix
    return result
