"""Liveness, readiness and Prometheus metrics (no auth: probes and scrapers carry no keys,
and none of these answers holds lead data)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse

from serving.dependencies import HolderDep, KeeperDep, MetricsDep
from serving.metrics import CONTENT_TYPE
from serving.schemas import Health

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness", response_model=Health)
async def healthz() -> JSONResponse:
    return JSONResponse({"status": "ok"})


@router.get(
    "/readyz",
    summary="Readiness: a model is loaded",
    response_model=Health,
    responses={503: {"model": Health, "description": "no model loaded"}},
)
async def readyz(holder: HolderDep) -> JSONResponse:
    model = holder.current
    if model is None:
        return JSONResponse({"status": "no model", "detail": holder.public_error}, status_code=503)
    return JSONResponse({"status": "ready", "model": model.ref})


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=PlainTextResponse,
    responses={200: {"content": {CONTENT_TYPE: {}}}},
)
async def metrics(registry: MetricsDep, keeper: KeeperDep) -> PlainTextResponse:
    keeper.sync_metrics()  # the recorder's counts of scores written since the last answer
    return PlainTextResponse(registry.render(), media_type=CONTENT_TYPE)
