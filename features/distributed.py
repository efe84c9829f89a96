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

What is distributed: the transform, the stage's bulk of CPU. What is not (yet): reading the
tables, the snapshots and labels, and ``FeatureEngine.fit``, which learns vocabularies and
time-indexed history from the whole dataset and runs once, in the stage's process.

``dask`` and ``distributed`` are imported only when a Dask backend is asked for.
"""

from __future__ import annotations

import contextlib
import logging
import pickle
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd

from features.errors import UserError
from features.params import EngineParams

if TYPE_CHECKING:
    from distributed import Client

    from features.engine.engine import FeatureEngine

logger = logging.getLogger(__name__)

HASH_KEY = "leadscore:leadid"
"""The 16-byte key of the SipHash behind :func:`lead_partition` (fixed: partitions are the same
in every process, run and machine)."""
CONNECT_TIMEOUT = "20s"
"""How long connecting to a running scheduler may take before the stage fails."""


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
        self, client: Client, partitions: int, workdir: Path | None, stage: str = "features"
    ) -> None:
        self.client = client
        self.partitions = partitions
        self.workdir = workdir
        self.stage = stage

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
        )


@contextlib.contextmanager
def backend(
    params: EngineParams, workdir: Path | None = None, stage: str = "features"
) -> Iterator[Backend]:
    """The backend ``params`` asks for; a Dask one holds a client (and, without a scheduler
    address, its own local cluster) until the block ends, and hands its workers their inputs
    as files under ``workdir`` (default: the system's temporary directory, which only a local
    cluster shares)."""
    if params.kind == "local":
        yield LocalBackend()
        return
    with cluster(params, stage) as client:
        yield DaskBackend(client, params.partitions, workdir, stage)


@contextlib.contextmanager
def cluster(params: EngineParams, stage: str = "features") -> Iterator[Client]:
    """A ``distributed.Client``: of a ``LocalCluster`` of ``params.workers`` processes on the
    loopback interface (its dashboard on a free port) started for the block when
    ``params.scheduler`` is null, else of the running scheduler at that address. Closed (and
    the local cluster shut down) when the block ends, however it ends; a cluster that cannot
    be started or reached is a one-line :class:`UserError`."""
    from distributed import Client, LocalCluster

    local: Any = None
    try:
        if params.scheduler is None:
            local = LocalCluster(
                n_workers=params.workers,
                threads_per_worker=params.threads_per_worker,
                processes=True,
                host="127.0.0.1",
                # A free port: a fixed one (8787) collides with any other cluster here.
                dashboard_address=":0",
                memory_limit=params.memory_limit or "auto",
                # The stage reports a cluster failure itself, in one line; a dying worker's
                # own logged tracebacks (heartbeats to a closed scheduler) are noise.
                silence_logs=logging.CRITICAL,
            )
            client = Client(local, set_as_default=False)
        else:
            client = Client(params.scheduler, timeout=CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as error:
        if local is not None:
            local.close()
        where = params.scheduler or "a local cluster"
        raise UserError(
            f"{stage}: cannot start or reach the Dask cluster ({where}): {one_line(error)}"
        ) from None
    try:
        logger.info(
            "%s: Dask cluster %s, %d workers",
            stage,
            client.scheduler.address if client.scheduler else "?",
            len(client.scheduler_info().get("workers", {})),
        )
        yield client
    finally:
        client.close()
        if local is not None:
            local.close()


def lead_partition(lead_ids: pd.Series | pd.Index | np.ndarray, n: int) -> np.ndarray:
    """The partition (0 … n-1) of each lead id, by a keyed SipHash of its text
    (``pandas.util.hash_array``, not Python's salted ``hash``): the same in every process, run
    and machine, so every row of a lead, in any table, falls in the same partition."""
    if n < 1:
        raise ValueError(f"partitions must be at least 1, not {n}")
    text = np.asarray(pd.Series(np.asarray(lead_ids, dtype=object)).astype(str), dtype=object)
    if len(text) == 0:
        return np.zeros(0, dtype=np.int64)
    hashes = pd.util.hash_array(text, encoding="utf8", hash_key=HASH_KEY, categorize=True)
    return (hashes % np.uint64(n)).astype(np.int64)


def _rows_by_partition(frame: pd.DataFrame | None, n: int) -> list[pd.DataFrame | None]:
    """``frame``'s rows in each of ``n`` lead partitions (None for no table)."""
    if frame is None:
        return [None] * n
    part = lead_partition(frame["lead_id"], n)
    return [frame[part == p] for p in range(n)]


PartitionFiles = dict[str, str | None]
"""One partition's inputs as Parquet files: ``snapshots``, ``leads``, ``touches``,
``sales_events`` (None: no such table)."""


def _transform_partition(engine_path: str, files: PartitionFiles) -> np.ndarray:
    """On a worker: one partition's matrix, on the worker's threads, from files only, so a
    task whose worker dies can run again on another (no data lives only in a dead worker)."""
    from distributed import get_worker

    with open(engine_path, "rb") as handle:
        engine = pickle.load(handle)
    tables = {name: None if path is None else pd.read_parquet(path) for name, path in files.items()}
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
) -> np.ndarray:
    """``engine.transform(snapshots, leads, touches, sales_events)`` computed on ``client``'s
    workers, one task per lead partition: the same matrix, bit for bit, rows in
    ``snapshots``' order. The fitted engine and each partition's rows go to the workers as
    files in a temporary directory under ``workdir`` (which every worker must reach: the data
    directory), removed afterwards; a task reads only those, so Dask can rerun it elsewhere when
    its worker is lost (``distributed.scheduler.allowed-failures`` times). A cluster that fails
    on the way (a worker lost too often, the scheduler gone) is a one-line
    :class:`UserError` naming ``stage``; an error of the engine itself keeps its traceback."""

    width = len(engine.feature_names_)
    result = np.empty((len(snapshots), width), dtype=np.float64)
    if len(snapshots) == 0:
        return result
    snapshot_part = lead_partition(snapshots["lead_id"], partitions)
    rows = [np.flatnonzero(snapshot_part == p) for p in range(partitions)]
    busy = [p for p in range(partitions) if len(rows[p])]
    tables = {
        "leads": _rows_by_partition(leads, partitions),
        "touches": _rows_by_partition(touches, partitions),
        "sales_events": _rows_by_partition(sales_events, partitions),
    }
    with tempfile.TemporaryDirectory(prefix=f".{stage}-dask-", dir=workdir) as shared:
        root = Path(shared)
        engine_path = root / "engine.pkl"
        with engine_path.open("wb") as handle:
            pickle.dump(engine, handle, protocol=pickle.HIGHEST_PROTOCOL)
        work: list[PartitionFiles] = []
        for p in busy:
            parts = {"snapshots": snapshots.iloc[rows[p]], **{n: t[p] for n, t in tables.items()}}
            files: PartitionFiles = {}
            for name, frame in parts.items():
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


def cluster_failures() -> tuple[type[BaseException], ...]:
    """What a Dask computation raises when the cluster fails under it: a task's workers died
    too often, a connection closed, a future was cancelled with its data, the network failed."""
    from distributed.client import FutureCancelledError
    from distributed.comm.core import CommClosedError
    from distributed.scheduler import KilledWorker

    return (KilledWorker, CommClosedError, FutureCancelledError, OSError, TimeoutError)


def one_line(error: BaseException) -> str:
    """``error`` as ``Type: text`` on one line, for a :class:`UserError`."""
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
