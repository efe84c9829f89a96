"""The shared dashboard: ``GET /`` (the page) and its data under ``/v1/dashboard/``.

The page and its assets (``/static/…``) are public: they hold no data. The data endpoints are
``/v1`` routes like the others (role ``score``): the page asks for an API key when they answer
401 and keeps it in the tab's ``sessionStorage`` (sent as ``X-API-Key``; gone when the tab
closes). With ``LEADSCORE_AUTH=off`` the page just works.
"""

from __future__ import annotations

import datetime as dt
from functools import cache
from importlib import resources
from typing import Annotated, Any, Literal

import pandas as pd
from fastapi import APIRouter, Depends, Path, Query
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from models.queue import SHOWN_LEAD_COLUMNS
from models.reports.leakage import target_guard
from models.scorer import GRADES
from models.store import Store
from serving.artifacts import ArtifactStore, json_safe
from serving.dependencies import (
    ArtifactsDep,
    FeedbackDep,
    OptionalModelDep,
    ScoreCaller,
    SettingsDep,
    StoreDep,
)
from serving.feedback import (
    feedback_choices,
    latest_verdicts,
    lead_feedback,
    lead_scores,
    with_trends,
)
from serving.lead_page import read_history, timeline
from serving.queue_view import (
    SORTABLE,
    QueueQuery,
    View,
    choices,
    records,
    select,
    to_csv,
    with_verdicts,
)
from serving.routers.common import AUTH_ERRORS
from serving.routers.model import model_document

router = APIRouter(tags=["dashboard"])
ASSET_VERSION = "1"


@cache
def _page() -> str:
    template = resources.files("serving").joinpath("templates/dashboard.html").read_text("utf-8")
    return template.replace("{{version}}", ASSET_VERSION)


@router.get("/", include_in_schema=False)
async def dashboard() -> HTMLResponse:
    return HTMLResponse(_page(), headers={"Cache-Control": "no-cache"})


@router.get("/dashboard/config", include_in_schema=False)
async def config(settings: SettingsDep) -> JSONResponse:
    """Public: whether the page must ask for a key (so it never fires a request to fail)."""
    return JSONResponse({"auth": settings.auth})


@router.get(
    "/v1/dashboard/kpis",
    summary="Dashboard: shared KPIs",
    description="`kpis.json` of the evaluate stage (by channel, campaign and month), or "
    "`available: false` with the reason.",
    responses=AUTH_ERRORS,
)
def kpis(caller: ScoreCaller, artifacts: ArtifactsDep, model: OptionalModelDep) -> JSONResponse:
    read = artifacts.kpis()
    value, note = read.value, None
    if value is not None and other_model(model, value):
        value, note = without_predictions(value), OTHER_MODEL_KPIS
    return JSONResponse(
        {"available": value is not None, "reason": read.reason, "kpis": value, "note": note}
    )


OTHER_MODEL = (
    "The evaluation reports on disk describe another model than the one serving (the latest "
    "pipeline run's, which the promotion gate did not promote, or an older one): they are not "
    "shown beside it. Its metrics come from its own MLflow run."
)
OTHER_MODEL_KPIS = (
    "Predicted conversion is left out: the KPI report's predictions are another model's than "
    "the one serving."
)
PREDICTED = ("predicted_conversion", "actual_conversion")


def other_model(model: Any, report: Any) -> bool:
    """Whether a report names a model (its fingerprint) and it is not the serving one."""
    if model is None or not isinstance(report, dict):
        return False
    written = report.get("model_fingerprint")
    serving = model.info.fingerprint
    return isinstance(written, str) and serving is not None and written != serving


def without_predictions(kpis: dict[str, Any]) -> dict[str, Any]:
    def strip(row: Any) -> Any:
        return (
            {k: v for k, v in row.items() if k not in PREDICTED} if isinstance(row, dict) else row
        )

    return {
        key: [strip(r) for r in value] if isinstance(value, list) else strip(value)
        for key, value in kpis.items()
    }


@router.get(
    "/v1/dashboard/monitoring",
    summary="Dashboard: track record and drift",
    description="`monitoring.json` of `leadscore monitor`: the backtest of matured stored scores "
    "by grade, month and channel (promised vs observed), drift per feature and on the score, "
    "and the retrain recommendation; or `available: false` with the reason.",
    responses=AUTH_ERRORS,
)
def monitoring(caller: ScoreCaller, artifacts: ArtifactsDep) -> JSONResponse:
    read = artifacts.json("monitoring.json")
    value = read.value if isinstance(read.value, dict) else None
    reason = read.reason if read.value is None else None if value else "not a JSON object"
    return JSONResponse({"available": value is not None, "reason": reason, "monitoring": value})


def leakage_card(model: Any, metrics: Any) -> dict[str, Any]:
    """Per target, the leakage guard's flagged and top columns with their figures and reasons:
    the serving model's own (computed when it was trained), else the evaluate stage's
    ``metrics.json``; empty for a model trained before the guard existed."""
    if model is not None:
        guards = {t: target_guard(model.scorer.metadata, t) for t in model.scorer.models}
        return {t: g for t, g in guards.items() if g is not None}
    if not isinstance(metrics, dict):
        return {}
    return {
        t: v["leakage"]
        for t, v in metrics.items()
        if isinstance(v, dict) and isinstance(v.get("leakage"), dict)
    }


@router.get(
    "/v1/dashboard/model",
    summary="Dashboard: model card",
    description="The serving model's document (as `/v1/model`), the calibration and grade "
    "tables of the evaluate stage, the model card's text and, per target, the columns the "
    "leakage guard flagged (with why) and the top columns' leakage figures, each when "
    "available.",
    responses=AUTH_ERRORS,
)
def model_card(
    caller: ScoreCaller, model: OptionalModelDep, artifacts: ArtifactsDep
) -> JSONResponse:
    card = artifacts.text("model_card.md")
    mismatch = other_model(model, artifacts.metrics().value)
    out: dict[str, Any] = {
        "model": model_document(model, artifacts) if model is not None else None,
        "model_reason": None if model is not None else "no model loaded",
        "plots": {"calibration": {}, "grades": None} if mismatch else artifacts.plots(),
        "card": None if mismatch else card.value,
        "reports_note": OTHER_MODEL if mismatch else None,
    }
    metrics = artifacts.metrics().value if model is None else None
    if model is None:
        out["metrics"] = metrics
    out["leakage"] = leakage_card(model, metrics)
    return JSONResponse(json_safe(out))


def _grades(text: str | None) -> tuple[str, ...]:
    if not text:
        return ()
    grades = tuple(dict.fromkeys(g.strip().upper() for g in text.split(",") if g.strip()))
    unknown = [g for g in grades if g not in GRADES]
    if unknown:
        raise RequestValidationError(
            [
                {
                    "type": "value_error",
                    "loc": ("query", "grade"),
                    "input": text,
                    "msg": f"grades are {', '.join(GRADES)}, separated by commas",
                }
            ]
        )
    return grades


DATE = r"^\d{4}-\d{2}-\d{2}$"


def _date(name: str, text: str | None) -> dt.date | None:
    """A calendar date, strictly ``YYYY-MM-DD`` (pydantic would take ``0`` as 1970-01-01)."""
    if text is None:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise RequestValidationError(
            [
                {
                    "type": "value_error",
                    "loc": ("query", name),
                    "input": text,
                    "msg": "not a calendar date (YYYY-MM-DD)",
                }
            ]
        ) from None


def queue_query(
    view: Annotated[
        View,
        Query(
            description="new: not yet accepted or rejected; pipeline: "
            "accepted or in opportunity; all"
        ),
    ] = "new",
    q: Annotated[
        str | None,
        Query(max_length=100, description="search: id, name, e-mail, phone, company, title"),
    ] = None,
    owner: Annotated[str | None, Query(max_length=256, description="`(none)`: unassigned")] = None,
    grade: Annotated[str | None, Query(max_length=16, description="e.g. `A,B`")] = None,
    channel: Annotated[str | None, Query(max_length=256)] = None,
    campaign: Annotated[str | None, Query(max_length=256, description="campaign id")] = None,
    created_from: Annotated[str | None, Query(pattern=DATE, description="YYYY-MM-DD")] = None,
    created_to: Annotated[str | None, Query(pattern=DATE, description="YYYY-MM-DD")] = None,
    sort: Annotated[Literal[SORTABLE], Query()] = "rank",  # type: ignore[valid-type]
    order: Annotated[Literal["asc", "desc"], Query()] = "asc",
    capacity: Annotated[
        int | None, Query(ge=1, le=100_000, description="leads per rep (the best by rank)")
    ] = None,
) -> QueueQuery:
    return QueueQuery(
        view=view,
        search=q.strip() or None if q else None,
        owner=owner or None,
        grades=_grades(grade),
        channel=channel or None,
        campaign=campaign or None,
        created_from=_date("created_from", created_from),
        created_to=_date("created_to", created_to),
        sort=sort,
        descending=order == "desc",
        capacity=capacity,
    )


QueueQueryDep = Annotated[QueueQuery, Depends(queue_query)]


def _primary(model: Any, artifacts: ArtifactStore) -> str | None:
    if model is not None:
        return str(model.scorer.definition.target)
    kpis = artifacts.kpis().value
    return kpis.get("primary_target") if isinstance(kpis, dict) else None


def _ranked_by(frame: pd.DataFrame) -> list[dict[str, str]] | None:
    if not ({"model_name", "model_version"} <= set(frame.columns) and len(frame)):
        return None
    pairs = frame[["model_name", "model_version"]].drop_duplicates()
    return [{"name": str(n), "version": str(v)} for n, v in pairs.itertuples(index=False)]


def _working_queue(frame: pd.DataFrame, store: Store) -> pd.DataFrame:
    return with_verdicts(frame, latest_verdicts(store))


@router.get(
    "/v1/dashboard/queue",
    summary="Dashboard: sales queue",
    description="Open leads from `queue.parquet` (the `leadscore queue` stage): a view (new "
    "leads to accept, the open pipeline, or all), searched, filtered by owner, grade, channel, "
    "campaign and creation date, sorted (default: the champion's rank, best first), cut at a "
    "capacity per rep, paged; with who each lead is, its reasons, sales' latest feedback "
    "(`verdict`) and the model that ranked it (`ranked_by`).",
    responses=AUTH_ERRORS,
)
async def queue(
    caller: ScoreCaller,
    artifacts: ArtifactsDep,
    model: OptionalModelDep,
    store: StoreDep,
    query: QueueQueryDep,
    limit: Annotated[int, Query(ge=1, le=5000)] = 200,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> JSONResponse:
    read = await run_in_threadpool(artifacts.queue)
    if read.value is None:
        return JSONResponse({"available": False, "reason": read.reason, "rows": [], "owners": []})
    frame = await run_in_threadpool(_working_queue, read.value, store)
    selected = await run_in_threadpool(select, frame, query)
    body = {
        "available": True,
        "reason": None,
        "primary_target": _primary(model, artifacts),
        "view": query.view,
        "owner": query.owner,
        "total": len(selected),
        "queued": len(frame),
        "offset": offset,
        "ranked_by": _ranked_by(frame),
        **choices(frame),
        "rows": await run_in_threadpool(
            with_trends, records(selected.iloc[offset : offset + limit]), store
        ),
    }
    return JSONResponse(body)


@router.get(
    "/v1/dashboard/queue.csv",
    summary="Dashboard: the current queue view as CSV",
    description="Every row of the view with the same search, filters, sort and capacity as "
    "`/v1/dashboard/queue` (not only one page): identity, state, probabilities, score, grade "
    "and the reasons as plain columns (`reason_1` …, `reason_negative_1` …).",
    responses=AUTH_ERRORS,
    response_class=Response,
)
async def queue_csv(
    caller: ScoreCaller,
    artifacts: ArtifactsDep,
    model: OptionalModelDep,
    store: StoreDep,
    query: QueueQueryDep,
) -> Response:
    read = await run_in_threadpool(artifacts.queue)
    if read.value is None:
        return JSONResponse({"detail": read.reason}, status_code=404)
    frame = await run_in_threadpool(_working_queue, read.value, store)
    selected = await run_in_threadpool(select, frame, query)
    text = await run_in_threadpool(to_csv, selected, _primary(model, artifacts))
    return Response(
        text,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="leads-{query.view}.csv"'},
    )


@router.get(
    "/v1/dashboard/leads/{lead_id}",
    summary="Dashboard: one lead's page",
    description="Who the lead is, its queue row (score, grade, reasons) when it is queued, and "
    "its timeline newest first: touches and sales events (validated tables), sales' feedback "
    "and the scores leadscore gave it (the score store).",
    responses={**AUTH_ERRORS, 404: {"description": "no such lead"}},
)
async def lead_page(
    caller: ScoreCaller,
    artifacts: ArtifactsDep,
    settings: SettingsDep,
    store: StoreDep,
    vocabulary: FeedbackDep,
    lead_id: Annotated[str, Path(min_length=1, max_length=256)],
) -> JSONResponse:
    read = await run_in_threadpool(artifacts.queue)
    row = None
    if read.value is not None:
        frame = read.value
        hit = frame[frame["lead_id"].astype(str) == lead_id]
        if len(hit):
            row = records(with_verdicts(hit, latest_verdicts(store)))[0]
    history = await run_in_threadpool(read_history, settings.validated, lead_id)
    if row is None and history is None:
        return JSONResponse({"detail": "no such lead"}, status_code=404)
    feedback = await run_in_threadpool(lead_feedback, store, lead_id)
    scores = await run_in_threadpool(lead_scores, store, lead_id)
    if row is not None:
        row = (await run_in_threadpool(with_trends, [row], store))[0]
    lead = dict(history["lead"]) if history else {}
    if row is not None:
        lead.update({k: row.get(k) for k in (*SHOWN_LEAD_COLUMNS, "lead_id") if row.get(k)})
    return JSONResponse(
        json_safe(
            {
                "lead_id": lead_id,
                "lead": {k: v for k, v in lead.items() if not str(k).startswith("outcome_")},
                "queue": row,
                "timeline": timeline(history, feedback, scores),
                "scores": scores,
                "feedback_reasons": feedback_choices(vocabulary),
            }
        )
    )
