"""Stage `register`: log the pipeline run to MLflow, register the model bundle, promote or not.

Reads the bundle (``artifacts/model``, from the train stage), the test snapshots of the features
stage, the evaluate stage's reports (logged when present) and ``dvc.lock`` (data hashes). Logs
one MLflow run in ``params.mlflow.experiment``, registers the bundle as
``params.mlflow.model_name`` and gives the new version ``champion`` or ``challenger``
(:mod:`models.packaging.registry` explains the gate). A bundle already registered (same scorer
SHA-256: a re-run, or the run after a killed registration) reuses its version. Writes
``registry.json`` and its numbers alone in ``promotion.json`` beside it (each atomically,
after the registry is complete): what happened (``action``: registered, reused or logged only,
and ``action_reason``), model name, version, alias, both metric values, the paired bootstrap
of their difference, run id.

**Inside a DVC experiment** (``dvc exp run``: DVC sets ``DVC_EXP_NAME`` for every stage it runs
for one) the run is logged, bundle included, but no version is registered and no alias moves,
unless ``params.mlflow.register_experiments`` is true: trying a parameter must not change what
production serves. To register an experiment's model: ``dvc exp apply <name>``, then
``leadscore register`` (outside DVC, it registers).

Tracking URI: ``--tracking-uri``, else ``MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pandas as pd

from features.errors import UserError
from features.params import load_params
from features.storage import atomic_file, json_text, read_validated
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


EXPERIMENT_ENV = "DVC_EXP_NAME"
"""Set by DVC (``dvc.env.DVC_EXP_NAME``) in the environment of every stage of an experiment."""


def log_only_reason(
    register_experiments: bool, environ: Mapping[str, str] = os.environ
) -> str | None:
    """Why this registration is to log the run only (None: register)."""
    name = environ.get(EXPERIMENT_ENV)
    if not name or register_experiments:
        return None
    return (
        f"DVC experiment {name!r} (mlflow.register_experiments is false; to register it: "
        f"`dvc exp apply {name}`, then `leadscore register`)"
    )


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
    promotion = out.with_name(PROMOTION_SUMMARY)
    with ExitStack() as outputs:
        # Both staged, and a byte written to each, before anything is registered: a full or
        # read-only disk stops here with one line, not after a version exists that no
        # registry.json names. Both are swapped in together at the end.
        staged = {path: outputs.enter_context(atomic_file(path)) for path in (promotion, out)}
        for staging in staged.values():
            staging.write_text("{}\n")
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
                # an experiment's run is found by the experiment's name
                run_name=os.environ.get(EXPERIMENT_ENV) or None,
            ),
            uri=tracking_uri,
            scorer=scorer,
            force=force,
            log_only=log_only_reason(params.mlflow.register_experiments),
        )
        staged[promotion].write_text(json_text(promotion_summary(record)))
        staged[out].write_text(json_text(record))
    return record


PROMOTION_SUMMARY = "promotion.json"
"""Beside ``registry.json``: the gate's numbers only (DVC metrics, git-tracked like the
evaluation summary): no run id, so experiments compare by it."""


def promotion_summary(record: Mapping[str, Any]) -> dict[str, Any]:
    """What ``dvc exp show`` prints of a registration: whether it registered, promoted (or
    would have, in an experiment) and the bootstrap's difference to the champion."""
    interval = record.get("difference_interval") or [None, None]
    return {
        "registered": record["registered"],
        "promoted": record["promoted"],
        "would_promote": record["would_promote"],
        "new": record["new_value"],
        "champion": record["champion_value"],
        "difference": record["difference"],
        "difference_low": interval[0],
        "difference_high": interval[1],
    }
