"""Stage ``queue`` (command ``leadscore queue``): the sales queue, ranked by the promoted model.

Scores every lead still open at the data horizon with the registry's champion
(``models:/<mlflow.model_name>@champion`` by default, the model ``/v1/score`` serves), never with
a challenger the promotion gate rejected, and writes ``artifacts/queue.parquet`` atomically;
every row records the ``model_name`` and ``model_version`` that ranked it.
:mod:`models.queue` builds the table; under ``engine.kind: dask`` the workers build each lead
partition's rows (:mod:`models.queue_partitions`).
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

from features.params import load_params
from features.storage import write_parquet
from models.packaging.loading import load_champion
from models.queue_partitions import score_open_leads
from models.rescoring import queue_records, record_or_warn

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
    queue, horizon = score_open_leads(validated, params, scorer, ref, "queue")
    write_parquet(out, queue)
    # the queue stands whatever becomes of its scores: a failing store is one warning line
    scored = queue_records(queue, scorer.primary, "queue", dt.datetime.now(dt.UTC))
    record_or_warn(scored, project_dir or Path.cwd(), params.store, "queue")
    logger.info(
        "queue: %d open leads scored at %s by %s version %s (%d for handoff) → %s",
        len(queue),
        horizon.isoformat(),
        ref["name"],
        ref["version"],
        int(queue["handoff"].sum()) if len(queue) else 0,
        out,
    )
