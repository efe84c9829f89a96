"""``POST /v1/admin/reload``: load the model again (or another one) and swap it in."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from models.packaging.loading import ModelLoadError
from serving.dependencies import (
    AdminCaller,
    FollowerDep,
    HolderDep,
    MetricsDep,
    SettingsDep,
    parse_body,
    validation_error,
)
from serving.lifecycle import reload_everywhere
from serving.routers.common import AUTH_ERRORS, BODY_ERRORS, NO_MODEL
from serving.schemas import REF

router = APIRouter(prefix="/v1/admin", tags=["admin"])

NOT_LOADED = "model could not be loaded; the server's log says why"


class ReloadRequest(BaseModel):
    """Optional body of a reload: another model to serve."""

    model_config = ConfigDict(extra="forbid")
    uri: Annotated[str | None, Field(max_length=1000)] = Field(
        default=None,
        description="model to load instead of the configured one (registry URI or directory)",
    )


async def reload_body(request: Request) -> ReloadRequest:
    """An empty body means 'the configured model'."""
    if not await request.body():
        return ReloadRequest()
    body: ReloadRequest = await parse_body(request, ReloadRequest)
    return body


ReloadBody = Annotated[ReloadRequest, Depends(reload_body)]


@router.post(
    "/reload",
    summary="Reload the model",
    description="Loads the configured model again (e.g. after a new champion was promoted) or "
    "the one given, then swaps it in atomically: requests in flight finish on the old model. "
    "On failure the current model keeps serving: a `uri` that cannot be loaded is a 422 on "
    "`uri`; the configured model failing to load is a 503 (the reason is in the server's log, "
    "never in the answer). With several workers every worker swaps to exactly the same model "
    "(an alias is resolved once) before the answer, which says how many serve it (`workers`). "
    "Also on SIGHUP.",
    responses={**AUTH_ERRORS, **BODY_ERRORS, **NO_MODEL},
    openapi_extra={
        "requestBody": {
            "required": False,
            "content": {
                "application/json": {"schema": {"$ref": REF.format(model="ReloadRequest")}}
            },
        }
    },
)
async def reload(
    caller: AdminCaller,
    holder: HolderDep,
    metrics: MetricsDep,
    settings: SettingsDep,
    follower: FollowerDep,
    body: ReloadBody,
) -> JSONResponse:
    previous = holder.current
    refusal = settings.reload_refusal(body.uri) if body.uri else None
    if refusal is not None:
        detail = {"loc": ("uri",), "msg": refusal, "type": "value_error"}
        raise validation_error([detail])
    try:
        model, progress = await reload_everywhere(holder, metrics, settings, follower, body.uri)
    except ModelLoadError:
        # the reason (paths, the tracking store) is in the server's log, not in the answer
        if body.uri:
            detail = {"loc": ("uri",), "msg": NOT_LOADED, "type": "value_error"}
            raise validation_error([detail]) from None
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, f"the configured {NOT_LOADED}"
        ) from None
    return JSONResponse(
        {
            "model": model.info.as_dict(),
            "previous": previous.info.as_dict() if previous else None,
            "workers": progress.as_dict() if progress else None,
        }
    )
