"""``GET /v1/model``: what is serving, the quality-lead definition, metrics beside baselines,
features and post-outcome exclusions."""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from serving.artifacts import ArtifactStore, json_safe
from serving.dependencies import ArtifactsDep, ModelDep, ScoreCaller
from serving.holder import LoadedModel
from serving.routers.common import AUTH_ERRORS, NO_MODEL

router = APIRouter(prefix="/v1", tags=["model"])

BASELINES = {
    "rules": "the points score marketing runs today (params.yaml `rules`)",
    "logistic": "logistic regression on the same features",
}


def fields_by_gain(model: LoadedModel, count: int = 12) -> list[dict[str, Any]]:
    """Business fields of the primary target's booster ranked by total split gain (a cheap,
    model-only ranking; the model card's mean |SHAP| ranking needs test data)."""
    scorer = model.scorer
    target = scorer.models[scorer.definition.target]
    gain = np.asarray(
        target.booster.feature_importance("gain", iteration=target.best_iteration),
        dtype=np.float64,
    )
    totals: dict[str, float] = {}
    for info, value in zip(scorer.engine.features_, gain, strict=True):
        totals[info.business_field] = totals.get(info.business_field, 0.0) + float(value)
    whole = sum(totals.values()) or 1.0
    ranked = sorted(totals.items(), key=lambda item: -item[1])[:count]
    return [{"field": name, "share": round(value / whole, 4)} for name, value in ranked]


def metrics_for(model: LoadedModel, artifacts: ArtifactStore) -> tuple[Any, str | None]:
    """The model's own run metrics (registry/run models), else the evaluate stage's
    ``metrics.json`` (which describes the latest pipeline run's model)."""
    info = model.info
    logged = info.metrics or {}
    primary = model.scorer.definition.target
    if isinstance(logged.get(primary), dict):
        return logged, f"MLflow run {info.run_id}"
    read = artifacts.metrics()
    if read.value is not None:
        written = read.value.get("model_fingerprint")
        if isinstance(written, str) and info.fingerprint and written != info.fingerprint:
            return None, f"{read.path} describes another model than the one serving"
        return read.value, f"{read.path} (evaluate stage of the latest pipeline run)"
    return None, read.reason


def model_document(model: LoadedModel, artifacts: ArtifactStore) -> dict[str, Any]:
    scorer = model.scorer
    definition = scorer.definition
    metrics, source = metrics_for(model, artifacts)
    return json_safe(
        {
            "model": model.info.as_dict(),
            "primary_target": definition.target,
            "targets": list(scorer.models),
            "definition": definition.as_dict(),
            "metrics": metrics,
            "metrics_source": source,
            "baselines": BASELINES,
            "top_fields": fields_by_gain(model),
            "features": scorer.engine.feature_spec(),
            "post_outcome_exclusions": list(definition.post_outcome),
            "training": scorer.metadata.get("reports"),
        }
    )


@router.get(
    "/model",
    summary="The model serving",
    description="Name and version, the quality-lead definition (text and parameters), "
    "test metrics beside both baselines, features, and the columns excluded as known only "
    "after the outcome.",
    responses={**AUTH_ERRORS, **NO_MODEL},
)
def get_model_info(caller: ScoreCaller, model: ModelDep, artifacts: ArtifactsDep) -> JSONResponse:
    return JSONResponse(model_document(model, artifacts))
