"""Stage `train`: snapshots → per-target calibrated LightGBM and both baselines.

Writes ``artifacts/train/`` atomically: ``scorer.pkl`` (the fitted LeadScorer: engine +
models + quality-lead definition), ``baselines.pkl`` (per target: the points score and the
logistic regression) and ``report.json``; and, when asked, the same scorer as an MLflow pyfunc
model bundle (``artifacts/model/``, :mod:`models.packaging.bundle`). Both are staged beside
their targets and swapped in one after the other only once both are complete, so the previous
pair stays in place (and readable) for the whole stage.

With sales events (not a flat export) and ``timing.enabled``, the scorer also carries the
conversion-timing and deal-amount models (:mod:`models.timing`), trained on the snapshots'
conversion times from the validated ``sales_events``.

``engine.kind: dask`` trains LightGBM on a Dask cluster (:mod:`models.cluster_training`), the
same local cluster or running scheduler as the features stage's.
"""

from __future__ import annotations

import json
import logging
import pickle
from contextlib import ExitStack
from pathlib import Path

import pandas as pd

from features.cluster import cluster
from features.params import load_params
from features.storage import atomic_directory, read_manifest, read_validated
from models.timing import durations
from models.training import train_all

logger = logging.getLogger(__name__)


def run(
    features_dir: Path, validated: Path, out: Path, params_path: Path, model: Path | None = None
) -> None:
    params = load_params(params_path)
    with (features_dir / "engine.pkl").open("rb") as handle:
        engine = pickle.load(handle)
    # Only the split and labels are needed beside X, whose columns are read one at a time
    # into it: the features are never in memory twice.
    snapshots, X = engine.read_matrix(features_dir / "snapshots.parquet")
    manifest = read_manifest(validated)
    outcomes = None
    if manifest is None and params.timing.enabled:  # flat exports carry no conversion times
        sales = read_validated(validated, names=["sales_events"]).get("sales_events")
        if sales is not None:
            horizon = pd.Timestamp(engine.horizon_ms_, unit="ms", tz="UTC")
            stages = params.targets[params.quality_lead.target].stages
            outcomes = durations(snapshots, sales, stages, horizon)
    with ExitStack() as on_cluster:
        client = (
            on_cluster.enter_context(cluster(params.engine, stage="train"))
            if params.engine.kind == "dask"
            else None
        )
        scorer, trained = train_all(
            snapshots,
            engine,
            params,
            post_outcome=tuple(manifest.get("post_outcome", ())) if manifest else (),
            engagement=tuple(manifest.get("engagement", ())) if manifest else (),
            source="flat" if manifest else params.source.kind,
            X=X,
            client=client,
            outcomes=outcomes,
        )
    with ExitStack() as swaps:  # on leaving: the bundle is swapped in, then the train output
        staging = swaps.enter_context(atomic_directory(out))
        bundle = swaps.enter_context(atomic_directory(model)) if model is not None else None
        with (staging / "scorer.pkl").open("wb") as handle:
            pickle.dump(scorer, handle, protocol=pickle.HIGHEST_PROTOCOL)
        baselines = {t: {"rules": r.rules, "logistic": r.logistic} for t, r in trained.items()}
        with (staging / "baselines.pkl").open("wb") as handle:
            pickle.dump(baselines, handle, protocol=pickle.HIGHEST_PROTOCOL)
        (staging / "report.json").write_text(
            json.dumps({t: r.report for t, r in trained.items()}, indent=2) + "\n"
        )
        if bundle is not None:
            from models.packaging.bundle import example_input, read_example_tables, save_bundle

            example = example_input(read_example_tables(validated), 3, scorer=scorer)
            save_bundle(scorer, bundle, example)
    logger.info("trained %s → %s", ", ".join(trained), out)
    if model is not None:
        logger.info("model bundle → %s", model)
