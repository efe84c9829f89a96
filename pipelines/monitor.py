"""Stage ``monitor`` (command ``leadscore monitor``): the champion's track record and drift.

Loads the champion (``models:/<mlflow.model_name>@champion`` by default, the model the API and
the queue score with), reads every score of the score store (``LEADSCORE_STORE_URL``), and
writes ``<out>/monitoring.json`` — the backtest of matured scores by grade, month and channel,
the expected conversion of the recently scored leads, PSI/KS drift per feature and of the score
against the training reference the model carries, and the retrain recommendation — plus the
DVC plots' tables ``backtest_by_grade.csv`` and ``drift.csv`` (in ``<out>/plots`` unless
``plots`` says where). :mod:`models.reports.monitoring` computes everything; the features of
the recently scored leads are recomputed by the model's own engine. Every file is written
atomically, the JSON last. An empty store gives a valid report with nothing to backtest.

Touches (the largest table) are read only for the recently scored leads, the one use the report
has for them: a filtered read, and of lead-partitioned tables (``engine.kind: dask``) only their
partitions' files, so the stage's memory follows the recent population, not the history.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

from features import contract
from features.params import load_params
from features.storage import atomic_file, read_validated, validated_horizon, write_json
from models.packaging.loading import load_champion
from models.reports.monitoring import monitor, plot_tables, recent_scores
from models.store import open_store

logger = logging.getLogger(__name__)

REPORT = "monitoring.json"
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def run(
    validated: Path,
    out: Path,
    params_path: Path,
    model: str | None = None,
    tracking_uri: str | None = None,
    project_dir: Path | None = None,
    plots: Path | None = None,
) -> dict[str, object]:
    """Write ``out/monitoring.json`` and the plots' CSVs; returns the report."""
    params = load_params(params_path)
    scorer, source = load_champion(params.mlflow.model_name, model, tracking_uri)
    tables = read_validated(validated, [name for name in contract.TABLES if name != "touches"])
    horizon = validated_horizon(validated, params.data.horizon)
    store = open_store(project_dir or Path.cwd(), params.store)
    try:
        if not store.enabled:  # a valid, empty report: `dvc repro` completes with recording off
            logger.warning("monitor: nothing to monitor: %s", store.description)
        # every score up to now (the API may score after the data's horizon)
        end = max(dt.datetime.now(dt.UTC), horizon.to_pydatetime()) + dt.timedelta(days=1)
        scores = store.scores_between(EPOCH, end)
    finally:
        store.close()
    recent = recent_scores(scores, horizon, params.monitor.recent_days) if len(scores) else scores
    recent_ids = sorted(set(recent["lead_id"].astype(str))) if len(recent) else []
    tables |= read_validated(validated, ["touches"], recent_ids)
    report = monitor(scores, tables, horizon, scorer, params, source.ref)
    plot_dir = plots or out / "plots"
    for name, frame in plot_tables(report).items():
        with atomic_file(plot_dir / f"{name}.csv") as staging:
            frame.to_csv(staging, index=False)
    write_json(out / REPORT, report)
    backtest, drift = report["backtest"], report["drift"]
    logger.info(
        "monitor: %d scores (%d matured, ROC AUC %s), %d recent; drift major: %s; score PSI %s; "
        "retrain recommended: %s → %s",
        report["scores"]["stored"],
        backtest["matured"],
        backtest["roc_auc"],
        drift["recent_scores"],
        ", ".join(drift["major"]) or "none",
        drift["score"]["psi"],
        report["retrain_recommended"],
        out / REPORT,
    )
    return report
