"""Request and response models of the API, generated from the data contract.

Every lead and event field comes from :mod:`features.contract` (``contract.LEADS``,
``contract.TOUCHES``, ``contract.SALES_EVENTS``): its type from the column's kind, required when
the column is not nullable, ``allowed`` values as an enum, ``min_value`` as a lower bound, the
description as the field's documentation. Nothing here restates a column list.

The models depend on the request limits (``params.yaml`` ``serving``, overridable by settings),
so :func:`build_models` makes one set per app; the static ``*Base`` classes only give the
handlers (and mypy) the attributes they read.

Conventions of the wire format:

- timestamps are ISO-8601 strings; naive means UTC; they must fall between
  :data:`MIN_TIME` and :data:`MAX_TIME` (anything else is a typo, and would overflow);
- strings are at most :data:`MAX_TEXT` characters;
- a lead may carry extra attributes (``contract.LEADS.extra_columns_allowed``): the feature
  columns of a model trained on a flat export (``engine.lead_categoricals_`` /
  ``engine.numerics_``); at most :data:`MAX_EXTRA_FIELDS` of them, scalar values only; others are
  ignored by the model;
- event objects follow their table without ``lead_id`` (the enclosing lead; accepted and
  ignored if sent); unknown event fields are an error (a typo would otherwise vanish).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    WithJsonSchema,
    create_model,
    model_validator,
)
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from features import contract
from serving.settings import Limits

MAX_TEXT = 256
"""Longest accepted string (ids, titles, campaign ids…)."""
MAX_EXTRA_FIELDS = 200
MAX_FIELD_NAME = 100
MIN_TIME = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
MAX_TIME = dt.datetime(2200, 1, 1, tzinfo=dt.UTC)
REF = "#/components/schemas/{model}"

Grade = Literal["A", "B", "C", "D"]


def _utc(value: dt.datetime) -> dt.datetime:
    value = value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
    if not MIN_TIME <= value < MAX_TIME:
        raise ValueError(
            f"timestamp out of range: must be from {MIN_TIME.date()} to before {MAX_TIME.date()}"
        )
    return value


def _text_time(value: Any) -> Any:
    """Timestamps travel as ISO-8601 text (numbers are ambiguous: seconds or milliseconds?)."""
    if isinstance(value, (bool, int, float)):
        raise ValueError("timestamps are ISO-8601 strings, e.g. 2025-08-20T14:47:46Z")
    return value


Timestamp = Annotated[
    dt.datetime,
    BeforeValidator(_text_time),
    AfterValidator(_utc),
    Field(examples=["2025-08-20T14:47:46Z"]),
]
Text = Annotated[str, StringConstraints(max_length=MAX_TEXT)]


def _scalar(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("numbers must be finite")
        return value
    if isinstance(value, str):
        if len(value) > MAX_TEXT:
            raise ValueError(f"strings are at most {MAX_TEXT} characters")
        return value
    raise ValueError("an extra lead attribute must be a string, a number, a boolean or null")


ExtraValue = Annotated[
    Any,
    AfterValidator(_scalar),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "maxLength": MAX_TEXT},
                {"type": "number"},
                {"type": "boolean"},
                {"type": "null"},
            ]
        }
    ),
]


# ------------------------------------------------------------- contract → fields
def _annotation(column: contract.Column) -> Any:
    if column.kind is contract.Kind.TIMESTAMP:
        return Timestamp
    if column.kind is contract.Kind.FLOAT:
        return Annotated[float, Strict(), Field(ge=column.min_value, allow_inf_nan=False)]
    if column.allowed:
        return Literal[column.allowed]
    if not column.nullable:
        return Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEXT)]
    return Text


def _description(column: contract.Column, note: str = "") -> str:
    text = column.description
    if column.known_values:
        text += f" (known values: {', '.join(column.known_values)}; others accepted)"
    if column.lowercase:
        text += "; case-insensitive"
    return text + note


def contract_fields(
    table: contract.Table, skip: tuple[str, ...] = (), optional: tuple[str, ...] = ()
) -> dict[str, Any]:
    """``create_model`` field definitions for a contract table's columns."""
    fields: dict[str, Any] = {}
    for column in table:
        if column.name in skip:
            continue
        annotation = _annotation(column)
        if column.nullable or column.name in optional:
            note = " — ignored: the enclosing lead" if column.name in optional else ""
            fields[column.name] = (
                annotation | None,
                Field(default=None, description=_description(column, note)),
            )
        else:
            fields[column.name] = (annotation, Field(description=_description(column)))
    return fields


# ------------------------------------------------------------------- bases
class Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LeadBase(BaseModel):
    """A lead's attributes: the contract's lead columns, plus extra scalar attributes."""

    model_config = ConfigDict(extra="allow" if contract.LEADS.extra_columns_allowed else "forbid")
    __pydantic_extra__: dict[str, ExtraValue] = Field(init=False)

    @model_validator(mode="before")
    @classmethod
    def _bounded_extras(cls, data: Any) -> Any:
        if isinstance(data, dict):
            extra = [key for key in data if key not in cls.model_fields]
            if len(extra) > MAX_EXTRA_FIELDS:
                raise ValueError(
                    f"at most {MAX_EXTRA_FIELDS} extra lead attributes, got {len(extra)}"
                )
            long = [key for key in extra if len(key) > MAX_FIELD_NAME]
            if long:
                raise ValueError(f"attribute names are at most {MAX_FIELD_NAME} characters")
        return data


class ScoreRequestBase(Closed):
    lead: LeadBase
    touches: list[BaseModel] = []
    sales_events: list[BaseModel] = []
    as_of: dt.datetime | None = None


class BatchRequestBase(Closed):
    leads: list[ScoreRequestBase]


class QueueRequestBase(BatchRequestBase):
    capacity: int | None = None


# ---------------------------------------------------------------- responses
class Reason(BaseModel):
    field: str = Field(description="business field the reason is about")
    text: str = Field(description="the reason in words")
    contribution: float = Field(
        description="signed contribution to the primary target, in log-odds (SHAP)"
    )


class ModelRef(BaseModel):
    name: str
    version: str


class ErrorOut(BaseModel):
    detail: str


class FieldError(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ValidationErrorOut(BaseModel):
    detail: list[FieldError]


class Health(BaseModel):
    status: str
    model: ModelRef | None = None
    detail: str | None = None


# ------------------------------------------------------------------ factory
EXAMPLE_REQUEST: dict[str, Any] = {
    "lead": {
        "lead_id": "L0019532",
        "created_at": "2025-08-17T15:38:49Z",
        "campaign_id": "C00010",
        "source": "google_ads",
        "job_title": "Head of IT",
        "seniority": "director",
        "department": "it",
        "country": "DE",
    },
    "touches": [
        {
            "occurred_at": "2025-08-18T04:12:35Z",
            "touch_type": "email_open",
            "campaign_id": "C00098",
        },
        {"occurred_at": "2025-08-20T09:30:00Z", "touch_type": "pricing_page_visit"},
        {"occurred_at": "2025-08-21T10:00:00Z", "touch_type": "demo_request"},
    ],
    "sales_events": [
        {"occurred_at": "2025-08-20T05:07:11Z", "stage": "assigned", "owner_id": "R004"}
    ],
    "as_of": "2025-08-24T17:13:29Z",
}


@dataclass(frozen=True)
class ApiModels:
    """One app's request/response models (limits and targets baked in)."""

    lead: type[LeadBase]
    touch: type[BaseModel]
    sales_event: type[BaseModel]
    score_request: type[ScoreRequestBase]
    batch_request: type[BatchRequestBase]
    queue_request: type[QueueRequestBase]
    score_response: type[BaseModel]
    batch_response: type[BaseModel]
    queue_response: type[BaseModel]
    limits: Limits

    def components(self) -> dict[str, Any]:
        """JSON schemas of every model, for ``components/schemas`` of the OpenAPI document."""
        models: list[tuple[type[BaseModel], JsonSchemaMode]] = [
            (self.score_request, "validation"),
            (self.batch_request, "validation"),
            (self.queue_request, "validation"),
            (self.score_response, "serialization"),
            (self.batch_response, "serialization"),
            (self.queue_response, "serialization"),
        ]
        _, schema = models_json_schema(models, ref_template=REF)
        return dict(schema.get("$defs", {}))


def _example_response(targets: tuple[str, ...]) -> dict[str, Any]:
    return {
        "lead_id": "L0019532",
        "as_of": "2025-08-24T17:13:29+00:00",
        **{f"p_{t}": round(0.31 / (i + 1), 4) for i, t in enumerate(targets)},
        "score": 16,
        "grade": "C",
        "handoff": False,
        "reasons_positive": [
            {"field": "demo request", "text": "requested a demo 3 days ago", "contribution": 0.82}
        ],
        "reasons_negative": [
            {"field": "lead age", "text": "lead created 7 days ago", "contribution": -0.21}
        ],
        "model": {"name": "lead-scoring", "version": "3"},
    }


def build_models(limits: Limits, targets: tuple[str, ...]) -> ApiModels:
    """The app's models: contract fields, the request limits, a ``p_<target>`` per target."""
    events = limits.max_events_per_lead
    lead = create_model(
        "Lead",
        __base__=LeadBase,
        __doc__=LeadBase.__doc__,
        **contract_fields(contract.LEADS),
    )
    touch = create_model(
        "Touch",
        __base__=Closed,
        __doc__=contract.TOUCHES.description,
        **contract_fields(contract.TOUCHES, optional=("lead_id",)),
    )
    sales_event = create_model(
        "SalesEvent",
        __base__=Closed,
        __doc__=contract.SALES_EVENTS.description,
        **contract_fields(contract.SALES_EVENTS, optional=("lead_id",)),
    )

    def events_within_limit(self: Any) -> Any:
        total = len(self.touches) + len(self.sales_events)
        if total > events:
            raise ValueError(
                f"at most {events} touches and sales events per lead together, got {total}"
            )
        return self

    score_request = create_model(
        "ScoreRequest",
        __base__=ScoreRequestBase,
        __doc__="One lead with its history so far.",
        __validators__={
            "events_within_limit": model_validator(mode="after")(events_within_limit)  # type: ignore[dict-item]
        },
        lead=(lead, Field(description="the lead's attributes")),
        touches=(
            list[touch],  # type: ignore[valid-type]
            Field(default_factory=list, max_length=events, description="marketing touches"),
        ),
        sales_events=(
            list[sales_event],  # type: ignore[valid-type]
            Field(default_factory=list, max_length=events, description="sales events"),
        ),
        as_of=(
            Timestamp | None,
            Field(default=None, description="when to score (default: now); later events ignored"),
        ),
    )
    score_request.model_config["json_schema_extra"] = {"examples": [EXAMPLE_REQUEST]}
    score_request.model_rebuild(force=True)
    batch_request = create_model(
        "BatchRequest",
        __base__=BatchRequestBase,
        __doc__="Many leads, each with its own history.",
        leads=(
            list[score_request],  # type: ignore[valid-type]
            Field(max_length=limits.max_batch, description=f"at most {limits.max_batch} leads"),
        ),
    )
    batch_request.model_config["json_schema_extra"] = {"examples": [{"leads": [EXAMPLE_REQUEST]}]}
    batch_request.model_rebuild(force=True)
    queue_request = create_model(
        "QueueRequest",
        __base__=QueueRequestBase,
        __doc__="Leads to rank by predicted conversion, with an optional capacity cut.",
        leads=(
            list[score_request],  # type: ignore[valid-type]
            Field(max_length=limits.max_batch, description=f"at most {limits.max_batch} leads"),
        ),
        capacity=(
            Annotated[int, Strict()] | None,
            Field(
                default=None,
                ge=1,
                le=limits.max_batch,
                description="how many leads sales can work (e.g. reps × leads per rep per week):"
                " the queue is cut after this many",
            ),
        ),
    )
    queue_request.model_config["json_schema_extra"] = {
        "examples": [{"leads": [EXAMPLE_REQUEST], "capacity": 50}]
    }
    queue_request.model_rebuild(force=True)

    probability_fields: dict[str, Any] = {
        f"p_{target}": (
            float,
            Field(ge=0.0, le=1.0, description=f"calibrated probability of '{target}'"),
        )
        for target in targets
    }
    score_response = create_model(
        "LeadScore",
        __config__=ConfigDict(
            extra="allow", json_schema_extra={"examples": [_example_response(targets)]}
        ),
        __doc__="One lead's answer. `p_<target>` for each of the model's targets.",
        lead_id=(str, ...),
        as_of=(dt.datetime, Field(description="the time the lead was scored as of")),
        **probability_fields,
        score=(int, Field(ge=0, le=100, description="primary target's probability × 100")),
        grade=(Grade, ...),
        handoff=(bool, Field(description="grade at or above the handoff grade")),
        reasons_positive=(list[Reason], ...),
        reasons_negative=(list[Reason], ...),
        model=(ModelRef, ...),
    )
    batch_response = create_model(
        "BatchScores",
        model=(ModelRef, ...),
        results=(list[score_response], ...),  # type: ignore[valid-type]
    )
    queued = create_model(
        "QueuedLead",
        __base__=score_response,
        rank=(int, Field(ge=1, description="1 = work first")),
    )
    queue_response = create_model(
        "Queue",
        model=(ModelRef, ...),
        primary_target=(str, ...),
        total=(int, Field(description="leads received")),
        capacity=(int | None, ...),
        left_out=(int, Field(description="leads below the capacity cut")),
        queue=(list[queued], ...),  # type: ignore[valid-type]
    )
    return ApiModels(
        lead=lead,
        touch=touch,
        sales_event=sales_event,
        score_request=score_request,
        batch_request=batch_request,
        queue_request=queue_request,
        score_response=score_response,
        batch_response=batch_response,
        queue_response=queue_response,
        limits=limits,
    )
