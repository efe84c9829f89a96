"""A Dask cluster for one stage (``params.yaml`` ``engine``): a ``LocalCluster`` started for
it, or a running scheduler's; and what a cluster failing under a computation raises, turned
into the stage's one line. ``distributed`` is imported only when a cluster is asked for."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from features.errors import UserError
from features.params import EngineParams

if TYPE_CHECKING:
    from distributed import Client

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT = "20s"
"""How long connecting to a running scheduler may take before the stage fails."""


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
