"""``POST /v1/score`` (one lead) and ``POST /v1/score/batch`` (many)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from serving.dependencies import BatchBody, MetricsDep, ModelDep, ScoreBody, ScoreCaller
from serving.holder import LoadedModel
from serving.model_input import answers
from serving.routers.common import AUTH_ERRORS, BODY_ERRORS, NO_MODEL, documented_body, prepare
from serving.schemas import BatchRequestBase, ScoreRequestBase

router = APIRouter(prefix="/v1", tags=["scoring"])

INLINE_EVENTS = 200
"""A lead with at most this many events is scored on the event loop (about 1–2 ms: cheaper
than a thread hop); longer histories and batches go to a worker thread."""


def score_one(model: LoadedModel, body: ScoreRequestBase) -> dict[str, Any]:
    prepared = prepare(model, body)
    return answers(model.scorer, [prepared], model.ref, model.reasons)[0]


def score_many(model: LoadedModel, body: BatchRequestBase) -> dict[str, Any]:
    prepared = [prepare(model, item, ("leads", i)) for i, item in enumerate(body.leads)]
    return {
        "model": model.ref,
        "results": answers(model.scorer, prepared, model.ref, model.reasons),
    }


@router.post(
    "/score",
    summary="Score one lead",
    description="One lead's attributes with its touches and sales events so far → probability "
    "per target, score 0–100, grade, handoff decision, top reasons and the model version.",
    responses={**AUTH_ERRORS, **BODY_ERRORS, **NO_MODEL},
    openapi_extra=documented_body("ScoreRequest", "LeadScore", "the lead's score"),
)
async def score(
    caller: ScoreCaller, model: ModelDep, body: ScoreBody, metrics: MetricsDep
) -> JSONResponse:
    if len(body.touches) + len(body.sales_events) <= INLINE_EVENTS:
        result = score_one(model, body)
    else:
        result = await run_in_threadpool(score_one, model, body)
    metrics.leads_scored.inc("score")
    return JSONResponse(result)


@router.post(
    "/score/batch",
    summary="Score many leads",
    description="Many leads (each with its own history) → the same answer per lead as "
    "`/v1/score`, in the order sent.",
    responses={**AUTH_ERRORS, **BODY_ERRORS, **NO_MODEL},
    openapi_extra=documented_body("BatchRequest", "BatchScores", "one answer per lead"),
)
async def score_batch(
    caller: ScoreCaller, model: ModelDep, body: BatchBody, metrics: MetricsDep
) -> JSONResponse:
    result = await run_in_threadpool(score_many, model, body)
    metrics.leads_scored.inc("batch", amount=len(body.leads))
    return JSONResponse(result)
