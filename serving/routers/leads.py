"""``/v1/leads/{lead_id}/…``: sales' verdict on a lead (feedback) and the scores it was given.

Feedback is stored in the score store; ``leadscore feedback`` turns the accepted and rejected
verdicts into ``sales_events`` rows for the next training, so sales' decisions flow back into
the shared definition of a quality lead.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Query
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints
from starlette.concurrency import run_in_threadpool

from models.store import FeedbackRecord, StoreError
from models.store.schema import ACTOR_MAX_CHARS, NOTE_MAX_CHARS, REASON_MAX_CHARS
from serving.dependencies import ArtifactsDep, FeedbackDep, ScoreCaller, SettingsDep, StoreDep
from serving.feedback import score_entry
from serving.lead_page import read_history
from serving.routers.common import AUTH_ERRORS

router = APIRouter(prefix="/v1/leads", tags=["leads"])

LeadId = Annotated[str, Path(min_length=1, max_length=256, description="the lead's id")]
FUTURE_TOLERANCE = dt.timedelta(minutes=5)
"""A verdict may be dated this far ahead of the server's clock (clocks disagree), no more."""


class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    verdict: Literal["contacted", "accepted", "rejected"]
    reason: (
        Annotated[str, StringConstraints(strip_whitespace=True, max_length=REASON_MAX_CHARS)] | None
    ) = Field(
        default=None,
        description="required for `rejected`: one of params.yaml's "
        "`feedback.reject_reasons`; for `accepted`, one of `feedback.accept_reasons` if "
        "that list is not empty",
    )
    note: Annotated[str, StringConstraints(max_length=NOTE_MAX_CHARS)] | None = None
    actor: (
        Annotated[str, StringConstraints(strip_whitespace=True, max_length=ACTOR_MAX_CHARS)] | None
    ) = Field(default=None, description="who gave the verdict (e.g. the rep's owner id)")
    occurred_at: AwareDatetime | None = Field(
        default=None, description="when it was given (default: now)"
    )


class FeedbackOut(BaseModel):
    id: int
    lead_id: str
    verdict: str
    reason: str | None
    note: str | None
    actor: str | None
    occurred_at: dt.datetime
    recorded_at: dt.datetime


def _invalid(field: str, value: object, message: str) -> RequestValidationError:
    return RequestValidationError(
        [{"type": "value_error", "loc": ("body", field), "msg": message, "input": value}]
    )


def _checked(body: FeedbackIn, reject: tuple[str, ...], accept: tuple[str, ...]) -> None:
    reason = body.reason or None
    if body.verdict == "rejected" and reason not in reject:
        raise _invalid(
            "reason", body.reason, f"a rejection needs a reason, one of: {', '.join(reject)}"
        )
    if body.verdict == "accepted" and reason is not None and accept and reason not in accept:
        raise _invalid(
            "reason", body.reason, f"an acceptance's reason is one of: {', '.join(accept)}"
        )
    if body.verdict == "accepted" and accept and reason is None:
        raise _invalid(
            "reason", body.reason, f"an acceptance needs a reason, one of: {', '.join(accept)}"
        )
    if body.verdict == "contacted" and reason is not None:
        raise _invalid("reason", body.reason, "`contacted` takes no reason (use `note`)")


def _known_lead(artifacts: ArtifactsDep, settings: SettingsDep, lead_id: str) -> bool:
    queue = artifacts.queue().value
    if queue is not None and (queue["lead_id"].astype(str) == lead_id).any():
        return True
    return read_history(settings.validated, lead_id) is not None


@router.post(
    "/{lead_id}/feedback",
    status_code=201,
    summary="Record sales' verdict on a lead",
    description="`contacted`, `accepted` or `rejected` (with a reason from params.yaml's "
    "`feedback` vocabulary), stored in the score store. The dashboard's lead page posts here; "
    "`leadscore feedback` turns the verdicts into sales events for the next training.",
    responses={
        **AUTH_ERRORS,
        404: {"description": "no such lead"},
        503: {"description": "the score store is off or unreachable: nothing was recorded"},
    },
)
async def add_feedback(
    caller: ScoreCaller,
    store: StoreDep,
    artifacts: ArtifactsDep,
    settings: SettingsDep,
    feedback: FeedbackDep,
    lead_id: LeadId,
    body: FeedbackIn,
) -> FeedbackOut:
    _checked(body, feedback.reject_reasons, feedback.accept_reasons)
    now = dt.datetime.now(dt.UTC)
    if body.occurred_at is not None and body.occurred_at > now + FUTURE_TOLERANCE:
        raise _invalid(
            "occurred_at", body.occurred_at.isoformat(), "a verdict cannot be in the future"
        )
    if not await run_in_threadpool(_known_lead, artifacts, settings, lead_id):
        raise HTTPException(404, "no such lead")
    if not store.enabled:
        raise HTTPException(
            503, "feedback is not recorded: the score store is off (LEADSCORE_STORE_URL)"
        )
    entry = FeedbackRecord(
        lead_id=lead_id,
        verdict=body.verdict,
        occurred_at=body.occurred_at or now,
        reason=body.reason or None,
        note=body.note or None,
        actor=body.actor or None,
    )
    try:
        stored = await run_in_threadpool(store.add_feedback, entry)
    except StoreError:
        raise HTTPException(
            503, "feedback is not recorded: the score store is unreachable", {"Retry-After": "5"}
        ) from None
    assert stored is not None  # an enabled store returns what it stored
    return FeedbackOut(
        id=stored.id,
        lead_id=stored.lead_id,
        verdict=stored.verdict,
        reason=stored.reason,
        note=stored.note,
        actor=stored.actor,
        occurred_at=stored.occurred_at,
        recorded_at=stored.recorded_at,
    )


@router.get(
    "/{lead_id}/scores",
    summary="A lead's score history",
    description="Every score leadscore gave this lead (API, batch, queue, rescore), newest "
    "first, paged. Empty when the score store is off.",
    responses=AUTH_ERRORS,
)
async def scores(
    caller: ScoreCaller,
    store: StoreDep,
    lead_id: LeadId,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> JSONResponse:
    try:
        history = await run_in_threadpool(store.history, lead_id, limit + 1, offset)
    except StoreError:
        raise HTTPException(503, "the score store is unreachable", {"Retry-After": "5"}) from None
    return JSONResponse(
        {
            "lead_id": lead_id,
            "recorded": store.enabled,
            "offset": offset,
            "limit": limit,
            "more": len(history) > limit,
            "scores": [score_entry(item) for item in history[:limit]],
        }
    )
