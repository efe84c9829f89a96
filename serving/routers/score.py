"""``POST /v1/score`` (one lead) and ``POST /v1/score/batch`` (many).

Both score on the app's scoring threads (:mod:`serving.admission`), never on the event loop:
even a one-lead request within every limit can take long enough to hold up health checks.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from serving.dependencies import (
    BatchBody,
    KeeperDep,
    LimitsDep,
    MetricsDep,
    ModelDep,
    ScoreBody,
    ScoreCaller,
    TicketDep,
)
from serving.holder import LoadedModel
from serving.metrics import ApiMetrics
from serving.model_input import answers, unseen_fields
from serving.recording import ScoreKeeper
from serving.routers.common import (
    AUTH_ERRORS,
    BODY_ERRORS,
    EVENT_BUDGET,
    SCORING_ERRORS,
    budgeted,
    check_event_budget,
    documented_body,
    prepare,
)
from serving.schemas import BatchRequestBase, ScoreRequestBase

router = APIRouter(prefix="/v1", tags=["scoring"])


def score_one(
    model: LoadedModel, body: ScoreRequestBase, metrics: ApiMetrics, keeper: ScoreKeeper
) -> dict[str, Any]:
    prepared = prepare(model, body)
    history = keeper.prefetch([prepared.lead_id])
    metrics.count_unseen(unseen_fields([prepared]))
    given = answers(model.scorer, [prepared], model.ref, model.reasons)
    return keeper.keep(given, model.scorer.primary, "api", history)[0]


def score_many(
    model: LoadedModel, body: BatchRequestBase, metrics: ApiMetrics, keeper: ScoreKeeper
) -> dict[str, Any]:
    prepared = [prepare(model, item, ("leads", i)) for i, item in enumerate(body.leads)]
    history = keeper.prefetch([p.lead_id for p in prepared])
    metrics.count_unseen(unseen_fields(prepared))
    given = answers(model.scorer, prepared, model.ref, model.reasons)
    return {"model": model.ref, "results": keeper.keep(given, model.scorer.primary, "api", history)}


# The ticket (a scoring slot) is declared before the body: a saturated server answers 503
# without parsing it.
@router.post(
    "/score",
    summary="Score one lead",
    description="One lead's attributes with its touches and sales events so far → probability "
    "per target, score 0–100, grade, handoff decision, top reasons and the model version. "
    + EVENT_BUDGET,
    responses={**AUTH_ERRORS, **BODY_ERRORS, **SCORING_ERRORS},
    openapi_extra=budgeted(documented_body("ScoreRequest", "LeadScore", "the lead's score")),
)
async def score(
    caller: ScoreCaller,
    model: ModelDep,
    ticket: TicketDep,
    body: ScoreBody,
    limits: LimitsDep,
    metrics: MetricsDep,
    keeper: KeeperDep,
) -> JSONResponse:
    check_event_budget([body], limits.max_events_per_request, ("body",))
    result = await ticket.run(score_one, model, body, metrics, keeper)
    metrics.leads_scored.inc("score")
    return JSONResponse(result)


@router.post(
    "/score/batch",
    summary="Score many leads",
    description="Many leads (each with its own history) → the same answer per lead as "
    "`/v1/score`, in the order sent. " + EVENT_BUDGET,
    responses={**AUTH_ERRORS, **BODY_ERRORS, **SCORING_ERRORS},
    openapi_extra=budgeted(documented_body("BatchRequest", "BatchScores", "one answer per lead")),
)
async def score_batch(
    caller: ScoreCaller,
    model: ModelDep,
    ticket: TicketDep,
    body: BatchBody,
    limits: LimitsDep,
    metrics: MetricsDep,
    keeper: KeeperDep,
) -> JSONResponse:
    check_event_budget(body.leads, limits.max_events_per_request, ("body", "leads"))
    result = await ticket.run(score_many, model, body, metrics, keeper)
    metrics.leads_scored.inc("batch", amount=len(body.leads))
    return JSONResponse(result)
