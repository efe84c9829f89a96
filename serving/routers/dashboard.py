"""The shared dashboard: ``GET /`` (the page) and its data under ``/v1/dashboard/``.

The page and its assets (``/static/…``) are public: they hold no data. The data endpoints are
``/v1`` routes like the others (role ``score``): the page asks for an API key when they answer
401 and keeps it in the tab's ``sessionStorage`` (sent as ``X-API-Key``; gone when the tab
closes). With ``LEADSCORE_AUTH=off`` the page just works.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.concurrency import run_in_threadpool

from models.reports.leakage import target_guard
from serving.artifacts import json_safe, queue_rows
from serving.dependencies import ArtifactsDep, OptionalModelDep, ScoreCaller, SettingsDep
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
def kpis(caller: ScoreCaller, artifacts: ArtifactsDep) -> JSONResponse:
    read = artifacts.kpis()
    return JSONResponse(
        {"available": read.value is not None, "reason": read.reason, "kpis": read.value}
    )


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
    out: dict[str, Any] = {
        "model": model_document(model, artifacts) if model is not None else None,
        "model_reason": None if model is not None else "no model loaded",
        "plots": artifacts.plots(),
        "card": card.value,
    }
    metrics = artifacts.metrics().value if model is None else None
    if model is None:
        out["metrics"] = metrics
    out["leakage"] = leakage_card(model, metrics)
    return JSONResponse(json_safe(out))


@router.get(
    "/v1/dashboard/queue",
    summary="Dashboard: sales queue",
    description="Open leads from `queue.parquet` (the `leadscore queue` stage) in the order "
    "the champion ranked them (predicted conversion, best first), optionally for one owner "
    "(`(none)`: unassigned), with reasons and the model that ranked them (`ranked_by`).",
    responses=AUTH_ERRORS,
)
async def queue(
    caller: ScoreCaller,
    artifacts: ArtifactsDep,
    model: OptionalModelDep,
    owner: Annotated[str | None, Query(max_length=256)] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 200,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> JSONResponse:
    read = await run_in_threadpool(artifacts.queue)
    if read.value is None:
        return JSONResponse({"available": False, "reason": read.reason, "rows": [], "owners": []})
    primary = model.scorer.definition.target if model is not None else None
    if primary is None:
        kpis = artifacts.kpis().value
        primary = kpis.get("primary_target") if isinstance(kpis, dict) else None
    body = await run_in_threadpool(queue_rows, read.value, owner or None, limit, offset)
    return JSONResponse({"available": True, "reason": None, "primary_target": primary, **body})
