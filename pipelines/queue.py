"""Stage ``queue`` (command ``leadscore queue``): the sales queue, ranked by the promoted model.

Scores every lead still open at the data horizon with the registry's champion
(``models:/<mlflow.model_name>@champion`` by default, the model ``/v1/score`` serves), never with
a challenger the promotion gate rejected, and writes ``artifacts/queue.parquet`` atomically;
every row records the ``model_name`` and ``model_version`` that ranked it.
:mod:`models.queue` builds the table.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import pandas as pd
from sqlalchemy.exc import SQLAlchemyError

from features import contract
from features.params import Params, load_params
from features.storage import read_manifest, read_validated, write_parquet
from models.packaging.loading import load_champion
from models.queue import sales_queue
from models.rescoring import record_queue
from models.store import StoreError, open_store

logger = logging.getLogger(__name__)


def run(
    validated: Path,
    out: Path,
    params_path: Path,
    model: str | None = None,
    tracking_uri: str | None = None,
    project_dir: Path | None = None,
) -> None:
    params = load_params(params_path)
    scorer, source = load_champion(params.mlflow.model_name, model, tracking_uri)
    ref = source.ref
    tables = read_validated(validated)
    flat = read_manifest(validated) is not None
    horizon = contract.data_horizon(tables, params.data.horizon)
    queue = sales_queue(tables, scorer, horizon, ref, flat, params.features.partition_leads)
    write_parquet(out, queue)
    _record(queue, scorer.primary, params, project_dir or Path.cwd())
    logger.info(
        "queue: %d open leads scored at %s by %s version %s (%d for handoff) → %s",
        len(queue),
        horizon.isoformat(),
        ref["name"],
        ref["version"],
        int(queue["handoff"].sum()) if len(queue) else 0,
        out,
    )


def _record(queue: pd.DataFrame, primary: str, params: Params, project_dir: Path) -> None:
    """The queue's scores into the score store (source ``queue``). The queue is written
    whatever becomes of them: a store that is off or failing is one line, not a failed stage."""
    try:
        store = open_store(project_dir, params.store)
    except StoreError as error:
        logger.warning("queue: scores not recorded: %s", error)
        return
    try:
        if store.enabled:
            written = record_queue(store, queue, primary, "queue", dt.datetime.now(dt.UTC))
            logger.info("queue: %d scores recorded in %s", written, store.description)
    except SQLAlchemyError as error:
        logger.warning(
            "queue: scores not recorded (%s: %s)", store.description, type(error).__name__
        )
    finally:
        store.close()
