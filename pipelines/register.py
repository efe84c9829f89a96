"""Stage `register`: log the pipeline run to MLflow, register the model bundle, promote or not.

Reads the bundle (``artifacts/model``, from the train stage), the test snapshots of the features
stage, the evaluate stage's reports (logged when present) and ``dvc.lock`` (data hashes). Logs
one MLflow run in ``params.mlflow.experiment``, registers the bundle as
``params.mlflow.model_name`` and gives the new version ``champion`` or ``challenger``
(:mod:`models.packaging.registry` explains the gate). A bundle already registered (same scorer
SHA-256: a re-run, or the run after a killed registration) reuses its version. Writes
``registry.json`` (atomically, after the registry is complete): model name, version, whether it
was reused, alias, both metric values, run id.

Tracking URI: ``--tracking-uri``, else ``MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from features.errors import UserError
from features.params import load_params
from features.storage import read_validated, write_json
from models.packaging.bundle import BundleError, verify_bundle
from models.packaging.registry import RunInputs, register

logger = logging.getLogger(__name__)

HISTORY_TABLES = ("leads", "touches", "sales_events")
"""What a champion's engine needs to recompute features (the rest is in its fitted state)."""


def read_test_snapshots(features_dir: Path) -> pd.DataFrame:
    path = features_dir / "snapshots.parquet"
    if not path.exists():
        raise UserError(f"{path}: missing; run the features stage first")
    return pd.read_parquet(path, filters=[("split", "==", "test")])


def read_results(path: Path) -> Mapping[str, Any] | None:
    if not path.exists():
        return None
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise UserError(f"{path}: not valid JSON ({error.msg}, line {error.lineno})") from None
    return document if isinstance(document, dict) else None


def run(
    model: Path,
    features_dir: Path,
    validated: Path,
    out: Path,
    params_path: Path,
    metrics: Path = Path("artifacts/metrics.json"),
    artifacts: Sequence[tuple[str, Path]] = (),
    dvc_lock: Path = Path("dvc.lock"),
    tracking_uri: str | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """``artifacts``: (MLflow artifact path, "" for the run's root; file or directory) pairs to
    log besides ``metrics``; missing ones are skipped with a warning."""
    params = load_params(params_path)
    if not (model / "MLmodel").exists():
        raise UserError(f"{model}/MLmodel: missing; run the train stage first")
    try:
        scorer = verify_bundle(model)
    except BundleError as error:
        raise UserError(f"{error}; re-run the train stage with this code") from None
    snapshots = read_test_snapshots(features_dir)
    lead_ids = sorted(set(snapshots["lead_id"].astype(str)))
    logged = [("", metrics), *artifacts]
    for _, path in logged:
        if not path.exists():
            logger.warning("%s: missing; not logged", path)
    record = register(
        RunInputs(
            model_dir=model,
            params=params,
            snapshots=snapshots,
            tables=lambda: read_validated(validated, HISTORY_TABLES, lead_ids),
            results=read_results(metrics),
            artifacts=logged,
            dvc_lock=dvc_lock,
            repo=Path.cwd(),  # dvc runs stages from the repository root
        ),
        uri=tracking_uri,
        scorer=scorer,
        force=force,
    )
    write_json(out, record)
    return record
