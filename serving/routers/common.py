"""Shared pieces of the routers: documented error responses, OpenAPI body references, the
event budget, and the request → engine input conversion."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from features.params import ServingParams
from serving.admission import EVENT_BUDGET_KEY
from serving.dependencies import validation_error
from serving.holder import LoadedModel
from serving.model_input import LeadInputError, Prepared
from serving.schemas import REF, ErrorOut, ScoreRequestBase, ValidationErrorOut

AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "no API key, or an unknown one"},
    403: {"model": ErrorOut, "description": "the key's role may not use this route"},
    429: {
        "model": ErrorOut,
        "description": "this key's rate limit is used up (`Retry-After`: seconds)",
    },
}
BODY_ERRORS: dict[int | str, dict[str, Any]] = {
    413: {"model": ErrorOut, "description": "request body over the size limit"},
    415: {"model": ErrorOut, "description": "the body is not JSON (Content-Type)"},
    422: {"model": ValidationErrorOut, "description": "invalid request: field-level messages"},
}
NO_MODEL: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorOut, "description": "no model loaded"},
}
SCORING_ERRORS: dict[int | str, dict[str, Any]] = {
    503: {
        "model": ErrorOut,
        "description": "no model loaded, scoring saturated or not finished within the "
        "request timeout (`Retry-After`: seconds)",
    },
}
EVENT_BUDGET = (
    "Touches and sales events of all leads of the request together may not exceed the event "
    f"budget (`{EVENT_BUDGET_KEY}` of this operation, params `serving.max_events_per_request`); "
    "beyond it 422, before any scoring."
)


def documented_body(request: str, response: str, description: str) -> dict[str, Any]:
    """``openapi_extra`` of a route whose body the app validates with its generated models
    (published under ``components/schemas`` by the app's OpenAPI document)."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": REF.format(model=request)}}},
        },
        "responses": {
            "200": {
                "description": description,
                "content": {"application/json": {"schema": {"$ref": REF.format(model=response)}}},
            }
        },
    }


def budgeted(extra: dict[str, Any]) -> dict[str, Any]:
    """``openapi_extra`` that declares the event budget: the default here (a null would be
    dropped from the document), the app's own filled in by :func:`serving.admission.install`."""
    return {**extra, EVENT_BUDGET_KEY: ServingParams().max_events_per_request}


def event_count(items: list[ScoreRequestBase]) -> int:
    return sum(len(item.touches) + len(item.sales_events) for item in items)


def check_event_budget(
    items: list[ScoreRequestBase], budget: int, loc: tuple[str | int, ...]
) -> None:
    """422 at ``loc`` when the items' touches + sales events exceed ``budget``: the request's
    cost is its events, and one within every per-lead limit can still occupy a worker for
    seconds."""
    count = event_count(items)
    if count > budget:
        detail = {
            "loc": loc,
            "msg": f"{count:,} touches + sales events in this request; the budget is "
            f"{budget:,} per request (params serving.max_events_per_request): send fewer "
            "leads per request",
            "type": "too_long",
            "input": count,
        }
        raise validation_error([detail], prefix=())


def _dump(items: list[BaseModel]) -> list[dict[str, Any]]:
    return [item.model_dump() for item in items]


def prepare(
    model: LoadedModel, item: ScoreRequestBase, loc: tuple[str | int, ...] = ()
) -> Prepared:
    """One request item → the engine's input, prepared with ``model`` (422 on a lead field
    the model cannot use)."""
    try:
        return model.inputs.prepare(
            item.lead.model_dump(), _dump(item.touches), _dump(item.sales_events), item.as_of
        )
    except LeadInputError as error:
        detail = {
            "loc": ("lead", *error.loc),
            "msg": error.message,
            "type": "value_error",
            "input": error.value,
        }
        raise validation_error([detail], prefix=("body", *loc)) from None
