"""Command ``leadscore feedback``: sales' verdicts from the score store, written as sales events
(``data/feedback/sales_events.parquet``, params ``source.feedback``) for the ingest stage to add
to the CRM's own, so that the next ``dvc repro`` trains on them. Run it before ``dvc repro``;
DVC sees the file change and re-runs from ingest."""

from __future__ import annotations

import logging
from pathlib import Path

from features.errors import UserError
from features.ingest.feedback import write_feedback_events
from features.params import load_params
from models.store import open_store

logger = logging.getLogger(__name__)


def run(out: Path | None, params_path: Path, project_dir: Path) -> int:
    params = load_params(params_path)
    target = out or (Path(params.source.feedback) if params.source.feedback else None)
    if target is None:
        raise UserError("source.feedback is null in params.yaml: say where with --out")
    store = open_store(project_dir, params.store)
    try:
        if not store.enabled:
            raise UserError(f"nothing to export: {store.description}")
        rows = write_feedback_events(store.feedback(), target)
    finally:
        store.close()
    logger.info("feedback: %d verdicts (accepted, rejected) → %s", rows, target)
    return rows
