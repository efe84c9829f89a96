"""Command and stage ``rescore``: every lead open at ``as_of`` (default: the data horizon)
scored by the champion, stored in the score store (source ``rescore``) with its trend, and
written back for the CRM as ``artifacts/crm_scores.csv`` (:mod:`models.rescoring`): all leads,
or with ``changed_only`` only those whose score or grade changed since their last stored score
(CRM imports are rate-limited)."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import pandas as pd
from sqlalchemy.exc import SQLAlchemyError

from features import contract
from features.errors import UserError
from features.params import load_params
from features.storage import atomic_file
from models.packaging.loading import load_champion
from models.queue_partitions import score_open_leads
from models.rescoring import changed, crm_export, queue_records, write_records
from models.store import open_store
from models.store.history import standings

logger = logging.getLogger(__name__)


def run(
    validated: Path,
    out: Path,
    params_path: Path,
    project_dir: Path,
    as_of: str | None = None,
    changed_only: bool = False,
    model: str | None = None,
    tracking_uri: str | None = None,
) -> int:
    params = load_params(params_path)
    scorer, source = load_champion(params.mlflow.model_name, model, tracking_uri)
    queue, when = score_open_leads(
        validated,
        params,
        scorer,
        source.ref,
        "rescore",
        None if as_of is None else _timestamp(as_of),
    )
    scored_at = dt.datetime.now(dt.UTC)
    store = open_store(project_dir, params.store)
    try:
        primary = scorer.primary
        current = dict(
            zip(queue["lead_id"].astype(str), queue[f"p_{primary}"].astype(float), strict=True)
        )
        try:
            found = standings(store, current, scored_at, params.store.trend)
            rows = crm_export(queue, found, scored_at)
            if changed_only:
                rows = rows[changed(queue, found)]
            stored = write_records(store, queue_records(queue, primary, "rescore", scored_at))
        except SQLAlchemyError as error:  # the database failed us mid-way: nothing written
            raise UserError(
                f"{store.description}: {type(error).__name__}; nothing written"
            ) from None
    finally:
        store.close()
    with atomic_file(out) as staging:
        rows.to_csv(staging, index=False)
    logger.info(
        "rescore: %d open leads at %s by %s version %s, %d stored, %d written → %s",
        len(queue),
        when.isoformat(),
        source.ref["name"],
        source.ref["version"],
        stored,
        len(rows),
        out,
    )
    return len(rows)


def _timestamp(text: str) -> pd.Timestamp:
    try:
        return contract.utc(text)
    except (ValueError, TypeError):
        raise UserError(f"--as-of {text!r}: not a timestamp (e.g. 2025-08-31T00:00:00Z)") from None
