"""LightGBM on a Dask cluster (``engine.kind: dask`` in the train stage): data-parallel
training with ``lightgbm.dask.DaskLGBMClassifier`` over the workers, each holding a share of
the train rows; the result is an ordinary booster, so calibration, the TreeSHAP tables, the
bundle and serving do not change.

``lightgbm.dask`` has no early stopping: the number of trees is chosen before, by the usual
early stopping on a single-machine sample (:func:`models.training.train_target`), and passed
here. Its network ``time_out`` (minutes) bounds how long a worker waits for the others, since
a lost worker would otherwise hang the training; any cluster failure is one line.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import logging
import time
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import lightgbm as lgb
import numpy as np

from features.cluster import cluster_failures, one_line
from features.errors import UserError

if TYPE_CHECKING:
    from distributed import Client

logger = logging.getLogger(__name__)


def _on_workers(client: Client, array: np.ndarray, parts: int) -> Any:
    """``array`` as a Dask array of ``parts`` row blocks, each sent to a worker once (not
    embedded in the task graph)."""
    import dask.array as da

    bounds = np.linspace(0, len(array), min(parts, max(len(array), 1)) + 1).astype(int)
    blocks = [array[start:end] for start, end in itertools.pairwise(bounds)]
    futures = client.scatter(blocks)
    return da.concatenate(
        [
            da.from_delayed(future, shape=block.shape, dtype=block.dtype)
            for future, block in zip(futures, blocks, strict=True)
        ]
    )


def train_on_cluster(
    client: Client,
    X: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray | None,
    feature_names: Sequence[str],
    categorical: Sequence[int],
    booster_params: dict[str, Any],
    rounds: int,
    time_out_minutes: int,
) -> lgb.Booster:
    """A booster of ``rounds`` trees trained by LightGBM's distributed mode on the client's
    workers, with ``booster_params`` as for ``lightgbm.train`` (threads: each worker's own);
    the rows go to the workers in one block per worker."""
    from lightgbm.dask import DaskLGBMClassifier

    if client.status != "running":
        raise UserError(
            f"train: the Dask cluster failed before LightGBM training: client {client.status}"
        )
    workers = max(len(client.scheduler_info().get("workers", {})), 1)
    # Any cancelled future (distributed's own is a subclass), as before the shared set.
    failures: tuple[type[BaseException], ...] = (
        lgb.basic.LightGBMError,
        concurrent.futures.CancelledError,
        *cluster_failures(),
    )
    started = time.perf_counter()
    # lightgbm.dask gives each worker its own thread count (its nthreads) and warns about ours.
    params = {k: v for k, v in booster_params.items() if k not in ("num_threads", "n_jobs")}
    try:
        model = DaskLGBMClassifier(
            client=client,
            n_estimators=rounds,
            time_out=time_out_minutes,
            **params,
        )
        # lightgbm.dask waits through distributed's default client: ours, for the fit only.
        # It warns that the scikit-learn wrapper's n_jobs is ignored (it sets the threads).
        with client.as_current(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Parameter n_jobs will be ignored")
            model.fit(
                _on_workers(client, X, workers),
                _on_workers(client, y, workers),
                sample_weight=None if weights is None else _on_workers(client, weights, workers),
                feature_name=list(feature_names),
                categorical_feature=list(categorical),
            )
        booster: lgb.Booster = model.to_local().booster_
    except failures as error:
        raise UserError(
            f"train: the Dask cluster failed during LightGBM training: {one_line(error)}"
        ) from None
    logger.info(
        "trained %d trees on %d Dask workers in %.1f s (%d rows)",
        booster.num_trees(),
        workers,
        time.perf_counter() - started,
        len(X),
    )
    return booster
