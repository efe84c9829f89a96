"""Stage `evaluate`: the model beside both baselines on the `test` snapshots, the shared KPIs
and the model card.

Reads the features stage's ``snapshots.parquet``, the train stage's ``scorer.pkl`` and
``baselines.pkl``, and the validated tables (plus ``truth.parquet`` when the data is simulated).
Writes into ``out`` (all six staged, then swapped in together: a failed or killed run leaves
the previous ones in place):

- ``metrics.json`` (the detailed metrics, a cached DVC output): per target, model / rules /
  logistic metrics, test counts, truth's ROC AUC on simulator data, model selection's
  candidates; ``leakage_suspected``; ``primary_target``; ``timing`` (conversion timing beside
  Kaplan–Meier, and the test period's forecast vs actual per month,
  :mod:`models.reports.timing`);
- ``metrics_by_group.json``: per target, ``by_channel`` and ``by_month`` (as_of month): rows,
  positives and every metric of every model, for groups of ``evaluate.min_group_size`` rows
  or more (kept out of metrics.json: ``dvc metrics show`` prints every number);
- ``plots/``: DVC plot data for the primary target (ROC, precision-recall, gains,
  calibration per model, grades, score histogram), as CSV;
- ``kpis.json``: the shared KPIs by channel, campaign and month, ``grid``: the test
  leads per fit × engagement cell with their observed rate (:mod:`models.reports.grid`), and
  ``forecast``: expected wins and revenue per month from the open leads, and the backtest;
- ``model_card.md``;
- ``summary.json`` (DVC metrics): at most 20 headline numbers of ``metrics.json``
  (:func:`~models.reports.evaluation.summary_metrics`). Git tracks it (``.gitignore`` lets it
  and the register stage's ``promotion.json`` through): ``dvc exp run`` commits it with the
  experiment, so ``dvc exp show`` and ``dvc metrics diff`` compare experiments by it.

No output holds a timestamp, a duration or a run id: the same inputs give the same bytes, and
a metrics diff shows only what changed.
"""

from __future__ import annotations

import json
import logging
import pickle
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from features import contract
from features.distributed import backend
from features.errors import UserError
from features.params import EngineParams, load_params
from features.partitions import is_dataset
from features.storage import (
    atomic_directory,
    atomic_file,
    json_text,
    read_manifest,
    read_validated,
    validated_horizon,
)
from models.queue import open_lead_features
from models.reports.evaluation import evaluate, summary_metrics
from models.reports.grid import grid_report
from models.reports.kpis import compute_kpis, first_snapshot_predictions
from models.reports.model_card import card_inputs, render
from models.reports.timing import pipeline_forecast, timing_report
from models.scorer import LeadScorer

logger = logging.getLogger(__name__)


def load_pickle(path: Path, stage: str) -> Any:
    if not path.exists():
        raise UserError(f"{path}: missing; run the {stage} stage first")
    with path.open("rb") as handle:
        return pickle.load(handle)


def read_snapshots(
    features_dir: Path, scorer: LeadScorer, keep: tuple[str, ...] = ()
) -> tuple[pd.DataFrame, np.ndarray]:
    """The stored snapshots without their feature columns (but ``keep``) and the model's
    feature matrix of them (:meth:`~features.engine.engine.FeatureEngine.read_matrix`)."""
    path = features_dir / "snapshots.parquet"
    if not path.exists():
        raise UserError(f"{path}: missing; run the features stage first")
    stored = set(pq.read_schema(path).names)
    missing = [n for n in scorer.engine.feature_names_ if n not in stored]
    if missing:
        raise UserError(
            f"{path}: {len(missing)} model features missing (e.g. {missing[0]!r}); "
            "the features and train outputs are out of step: rerun both"
        )
    return scorer.engine.read_matrix(path, keep)


def feature_engine_kind(features_dir: Path) -> str:
    """Where the features stage ran its transform (``params.yaml`` ``engine.kind``), as its
    ``feature_spec.json`` records it: ``local`` for outputs written before the record existed."""
    path = features_dir / "feature_spec.json"
    try:
        spec = json.loads(path.read_text())
    except (OSError, ValueError):
        return "local"
    kind = spec.get("engine", "local") if isinstance(spec, dict) else "local"
    return kind if isinstance(kind, str) else "local"


def run(features_dir: Path, validated: Path, train: Path, out: Path, params_path: Path) -> None:
    params = load_params(params_path)
    scorer: LeadScorer = load_pickle(train / "scorer.pkl", "train")
    baselines = load_pickle(train / "baselines.pkl", "train")
    # Beside X only ids, times, split, labels and the channel (per-group metrics) are read
    # below: the other feature columns are in memory once, in X.
    snapshots, X = read_snapshots(features_dir, scorer, keep=("channel",))
    # Under engine.kind dask the partitioned touches stay on the cluster: only the forecast's
    # open-lead features need them, and the workers read them there.
    on_cluster = params.engine.kind == "dask" and is_dataset(validated / "touches")
    names = [name for name in contract.TABLES if not (on_cluster and name == "touches")]
    tables = read_validated(validated, names)
    manifest = read_manifest(validated)
    truth_path = validated / "truth.parquet"
    truth = pd.read_parquet(truth_path) if truth_path.exists() else None
    horizon = validated_horizon(validated, params.data.horizon)
    random_split = manifest is not None and manifest.get("order") == "random"

    evaluation = evaluate(
        snapshots,
        X,
        scorer,
        baselines,
        params,
        truth=truth,
        shap_rows=params.evaluate.shap_rows,
        by_month=not random_split,
    )
    kpis = compute_kpis(
        tables,
        horizon=horizon,
        primary_target=scorer.definition.target,
        window_days=scorer.definition.window_days,
        currency=params.data.currency,
        predictions=first_snapshot_predictions(snapshots, X, scorer),
        timed=not random_split,
    )
    kpis["grid"] = grid_report(snapshots, X, scorer)
    timing = None
    if scorer.timing_ is not None and not random_split and "sales_events" in tables:
        stages = scorer.definition.targets[scorer.definition.target]
        timing = timing_report(snapshots, X, tables["sales_events"], scorer, stages, horizon)
        engine = params.engine if on_cluster else EngineParams()
        with backend(engine, workdir=validated.parent, stage="evaluate", dataset=validated) as run:
            _, _, X_open = open_lead_features(tables, scorer, horizon, transform=run.transform)
        kpis["forecast"] = pipeline_forecast(X_open, scorer, horizon, timing)
    if timing is not None:
        evaluation.metrics["timing"] = timing
    card = render(
        card_inputs(
            snapshots,
            tables,
            horizon,
            scorer,
            evaluation,
            kpis,
            params,
            random_split=random_split,
            simulated=truth is not None or scorer.definition.source == "synthetic",
        )
    )

    # Every output is staged first and all are swapped in together at the end: until then the
    # previous reports stay in place, complete and consistent with each other.
    # which model these reports describe: the dashboard shows them only beside that model
    fingerprint = {"model_fingerprint": scorer.fingerprint()}
    documents = {
        "metrics.json": {
            "engine": feature_engine_kind(features_dir),
            **evaluation.metrics,
            **fingerprint,
        },
        "metrics_by_group.json": evaluation.by_group,
        "kpis.json": {**kpis, **fingerprint},
    }
    with ExitStack() as swaps:
        for name, document in documents.items():
            swaps.enter_context(atomic_file(out / name)).write_text(json_text(document))
        summary = json_text(summary_metrics(evaluation.metrics))
        swaps.enter_context(atomic_file(out / "summary.json")).write_text(summary)
        swaps.enter_context(atomic_file(out / "model_card.md")).write_text(card, encoding="utf-8")
        plots = swaps.enter_context(atomic_directory(out / "plots"))
        for name, frame in evaluation.plots.items():
            frame.to_csv(plots / f"{name}.csv", index=False)
    primary = scorer.definition.target
    model = evaluation.metrics[primary]["model"]
    logger.info(
        "evaluate: %s on %d test snapshots: ROC AUC %s, PR AUC %s, ECE %s%s → %s",
        primary,
        evaluation.metrics[primary]["n_test"],
        model["roc_auc"],
        model["pr_auc"],
        model["ece"],
        " (LEAKAGE SUSPECTED)" if evaluation.metrics["leakage_suspected"] else "",
        out,
    )
