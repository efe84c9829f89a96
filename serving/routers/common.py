"""Shared pieces of the routers: documented error responses, OpenAPI body references, and the
request → engine input conversion."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from serving.dependencies import validation_error
from serving.holder import LoadedModel
from serving.model_input import LeadInputError, Prepared
from serving.schemas import REF, ErrorOut, ScoreRequestBase, ValidationErrorOut

AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "no API key, or an unknown one"},
    403: {"model": ErrorOut, "description": "the key's role may not use this route"},
}
BODY_ERRORS: dict[int | str, dict[str, Any]] = {
    413: {"model": ErrorOut, "description": "request body over the size limit"},
    422: {"model": ValidationErrorOut, "description": "invalid request: field-level messages"},
}
NO_MODEL: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorOut, "description": "no model loaded"},
}


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
