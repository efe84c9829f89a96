"""``POST /v1/queue``: leads ranked by predicted conversion, cut at the team's capacity."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from serving.dependencies import (
    KeeperDep,
    LimitsDep,
    MetricsDep,
    ModelDep,
    QueueBody,
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
from serving.schemas import QueueRequestBase

router = APIRouter(prefix="/v1", tags=["queue"])


def rank_leads(
    model: LoadedModel, body: QueueRequestBase, metrics: ApiMetrics, keeper: ScoreKeeper
) -> dict[str, Any]:
    """All leads scored; sorted by the primary target's probability (ties by lead_id); the
    first ``capacity`` kept, each with its reasons (computed only for the kept ones)."""
    prepared = [prepare(model, item, ("leads", i)) for i, item in enumerate(body.leads)]
    metrics.count_unseen(unseen_fields(prepared))  # the leads below the cut too
    ranked = answers(
        model.scorer, prepared, model.ref, model.reasons, capacity=body.capacity, ranked=True
    )
    keeper.keep(ranked, model.scorer.primary, "queue")
    for rank, entry in enumerate(ranked, start=1):
        entry["rank"] = rank
    return {
        "model": model.ref,
        "primary_target": model.scorer.primary,
        "total": len(prepared),
        "capacity": body.capacity,
        "left_out": len(prepared) - len(ranked),
        "queue": ranked,
    }


@router.post(
    "/queue",
    summary="Rank leads for sales",
    description="Leads → sorted by predicted conversion (the quality-lead definition's primary "
    "target), best first, each with its reasons; with `capacity`, only that many are kept "
    "(e.g. reps × leads each rep can work per week). " + EVENT_BUDGET,
    responses={**AUTH_ERRORS, **BODY_ERRORS, **SCORING_ERRORS},
    openapi_extra=budgeted(documented_body("QueueRequest", "Queue", "the ranked queue")),
)
async def queue(
    caller: ScoreCaller,
    model: ModelDep,
    ticket: TicketDep,  # before the body: a saturated server answers 503 without parsing it
    body: QueueBody,
    limits: LimitsDep,
    metrics: MetricsDep,
    keeper: KeeperDep,
) -> JSONResponse:
    check_event_budget(body.leads, limits.max_events_per_request, ("body", "leads"))
    result = await ticket.run(rank_leads, model, body, metrics, keeper)
    metrics.leads_scored.inc("queue", amount=len(body.leads))
    return JSONResponse(result)
