"""The FastAPI app factory: ``create_app(settings)``. Nothing happens at import time.

``leadscore serve`` builds the app from the environment's :class:`~serving.settings.Settings`
(plus its command-line overrides) and runs it under uvicorn. The model is loaded in the
lifespan (unless ``leadscore serve`` loaded it already), kept in a
:class:`~serving.holder.ModelHolder` on ``app.state`` and reaches handlers through a typed
dependency; ``POST /v1/admin/reload`` and SIGHUP swap it atomically, in every worker
(:mod:`serving.coordination`).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from importlib import metadata
from pathlib import Path
from typing import Any

import anyio.to_thread
import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry

from models.packaging.loading import ModelLoadError
from serving import admission
from serving.artifacts import ArtifactStore
from serving.coordination import Follower, ReloadBoard
from serving.dependencies import Authenticator
from serving.holder import ModelHolder
from serving.lifecycle import follow_loader, open_score_keeper, reload_everywhere, start_serving
from serving.metrics import ApiMetrics, MetricsMiddleware
from serving.middleware import BodyLimitMiddleware, SecurityHeadersMiddleware
from serving.recording import ScoreKeeper
from serving.routers import admin, dashboard, health, leads, model, queue, score
from serving.schemas import REF, build_models
from serving.settings import Limits, Settings

logger = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
DOCS_ASSETS = Path(fastapi_offline.__file__).parent / "static"
MAX_ECHO = 200
"""Longest input value echoed back in a 422 (longer ones are left out)."""

DESCRIPTION = """\
Predictive lead scoring shared by marketing and sales: one calibrated probability that a lead
converts, with the reasons behind it.

Send `X-API-Key` on every `/v1` route (roles `score` and `admin`). The dashboard is at `/`.
"""


def _version() -> str:
    try:
        return metadata.version("leadscore")
    except metadata.PackageNotFoundError:
        return "0"


def _short(value: Any) -> bool:
    return (
        value is None
        or isinstance(value, (bool, int, float))
        or (isinstance(value, str) and len(value) <= MAX_ECHO)
    )


async def validation_handler(request: Request, error: Exception) -> JSONResponse:
    """422 with one entry per bad field: ``loc`` (path in the request), ``msg``, ``type``, and
    the offending ``input`` when it is a short scalar (never a whole body)."""
    assert isinstance(error, RequestValidationError)
    detail = []
    for item in error.errors():
        message = str(item.get("msg", "invalid"))
        reason = (item.get("ctx") or {}).get("error")
        if item.get("type") == "json_invalid" and reason:
            message = f"{message}: {reason}"
        entry: dict[str, Any] = {
            "loc": [part if isinstance(part, int) else str(part) for part in item.get("loc", ())],
            "msg": message,
            "type": str(item.get("type", "value_error")),
        }
        if "input" in item and _short(item["input"]):
            entry["input"] = item["input"]
        detail.append(entry)
    return JSONResponse({"detail": detail}, status_code=422)


def _install_sighup(app: FastAPI) -> bool:
    """SIGHUP → reload (only possible in the main thread's event loop, i.e. under uvicorn)."""
    state = app.state

    def on_hangup() -> None:
        logger.info("SIGHUP: reloading the model")

        async def run() -> None:
            with suppress(ModelLoadError):
                await reload_everywhere(state.holder, state.metrics, state.settings, state.follower)

        state.reload_task = asyncio.ensure_future(run())

    try:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, on_hangup)
    except (NotImplementedError, RuntimeError, ValueError, AttributeError):
        logger.debug("SIGHUP reload not available here (not the main thread)")
        return False
    return True


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    auth: Authenticator = app.state.auth
    if not auth.enabled:
        logger.warning(
            "!!! LEADSCORE_AUTH=off: AUTHENTICATION IS DISABLED. Every caller is admin. "
            "For local demos only; never expose this server. !!!"
        )
    elif auth.key_count == 0:
        logger.warning("no API keys configured (LEADSCORE_API_KEYS): every /v1 route answers 401")
    state = app.state
    follower: Follower | None = state.follower
    if settings.load_model and state.holder.current is None:
        try:
            await start_serving(state.holder, state.metrics, settings, follower)
        except ModelLoadError:
            logger.error("starting without a model: scoring routes answer 503, /readyz 503")
    # what exists now (the model, the app, imported modules) lives as long as the server:
    # out of the collector's sight, a full collection pauses every thread far less (0.29 s →
    # 0.07 s measured, which was the rest of /healthz's worst case under load)
    gc.collect()
    gc.freeze()
    following = (
        asyncio.ensure_future(follower.follow(follow_loader(state.holder, state.metrics, settings)))
        if follower is not None
        else None
    )
    sighup = _install_sighup(app)
    state.keeper = await anyio.to_thread.run_sync(open_score_keeper, settings, state.metrics)
    try:
        yield
    finally:
        app.state.admission.close()  # queued scoring jobs cancelled, their threads end
        keeper, state.keeper = state.keeper, ScoreKeeper()
        # after the scoring threads: every answer given is in the recorder, now written
        await anyio.to_thread.run_sync(keeper.close)
        if sighup:
            with suppress(Exception):
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        if following is not None:
            following.cancel()
            with suppress(asyncio.CancelledError):
                await following
        if follower is not None:
            follower.board.leave()


def create_app(settings: Settings | None = None) -> FastAPI:
    """A new app for ``settings`` (default: from the environment)."""
    settings = settings if settings is not None else Settings()
    limits = Limits.from_settings(settings)
    app = FastAPI(
        title="leadscore",
        version=_version(),
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served below from local assets: FastAPI's page loads a CDN
        redoc_url=None,
    )
    state = app.state
    state.settings = settings
    state.limits = limits
    state.feedback = settings.params_or_defaults().feedback
    state.api_models = build_models(limits, settings.targets())
    state.auth = Authenticator(settings.key_roles(), enabled=settings.auth == "on")
    state.holder = ModelHolder()
    state.metrics_registry = CollectorRegistry()  # this app's own: apps never share counts
    state.metrics = ApiMetrics(state.metrics_registry)
    state.artifacts = ArtifactStore(settings.artifacts)
    state.reload_task = None
    state.keeper = ScoreKeeper()  # the store is opened by the lifespan, in the worker
    board = ReloadBoard.from_env()  # several workers: reloads reach all of them
    state.follower = Follower(board) if board is not None else None

    for router in (
        score.router,
        queue.router,
        model.router,
        admin.router,
        dashboard.router,
        leads.router,
        health.router,
    ):
        app.include_router(router)
    app.mount("/static/docs", StaticFiles(directory=DOCS_ASSETS), name="docs-assets")
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        """Swagger UI from the assets installed with leadscore (fastapi-offline's copy of
        swagger-ui-dist): the page works without internet access."""
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} API",
            swagger_js_url="/static/docs/swagger-ui-bundle.js",
            swagger_css_url="/static/docs/swagger-ui.css",
            swagger_favicon_url="/static/docs/favicon.png",
        )

    app.add_exception_handler(RequestValidationError, validation_handler)
    # Last added runs first: metrics see every request, including those refused for size,
    # and every response, refusals included, carries the security headers.
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=limits.max_body_bytes,
        max_headers=limits.max_headers,
        max_header_bytes=limits.max_header_bytes,
    )
    app.add_middleware(MetricsMiddleware, metrics=state.metrics)
    app.add_middleware(SecurityHeadersMiddleware)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.update(state.api_models.components())
            components["ReloadRequest"] = admin.ReloadRequest.model_json_schema(ref_template=REF)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    admission.install(app, limits)  # scoring threads and queue, rate limits, event budget doc
    return app


def create_app_from_env() -> FastAPI:
    """For ``uvicorn --factory serving.app:create_app_from_env`` (several workers)."""
    return create_app(Settings())
