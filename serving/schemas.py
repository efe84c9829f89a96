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
  ``engine.numerics_``); at most :data:`MAX_EXTRA_FIELDS` of them, scalar values only. Which
  extras a model takes is known only once it is loaded, so any other one is refused at request
  time (:mod:`serving.model_input`), not here;
- event objects follow their table without ``lead_id`` (the enclosing lead; accepted and
  ignored if sent); unknown event fields are an error (a typo would otherwise vanish);
- a column with a vocabulary (``allowed``, or ``known_values`` such as ``touch_type``) takes
  only its values, normalised as the validator normalises the column (surrounding spaces
  stripped; lowercased when the column is ``lowercase``): an unknown touch type would be
  scored as "other interaction", i.e. its signal silently lost. The refusal names the values
  and the closest one;
- time rules of the contract: no touch or sales event before the lead's ``created_at``, no
  ``as_of`` before it (nor, without ``as_of``, a ``created_at`` in the future). Events after
  ``as_of`` are accepted and not used (DESIGN.md: features use only rows before ``as_of``), so
  a full history can be replayed as of any past time.
"""

from __future__ import annotations

import datetime as dt
import difflib
import math
import re
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
    ValidationError,
    WithJsonSchema,
    create_model,
    model_validator,
)
from pydantic.json_schema import JsonSchemaMode, models_json_schema
from pydantic_core import InitErrorDetails, PydanticCustomError

from features import contract
from serving.settings import Limits

MAX_TEXT = 256
"""Longest accepted string (ids, titles, campaign ids…)."""
MAX_EXTRA_FIELDS = 200
MAX_FIELD_NAME = 100
MIN_TIME: dt.datetime = contract.EARLIEST_TIME.to_pydatetime()
MAX_TIME: dt.datetime = contract.END_OF_TIME.to_pydatetime()
REF = "#/components/schemas/{model}"

Grade = Literal["A", "B", "C", "D"]


def _utc(value: dt.datetime) -> dt.datetime:
    value = value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
    if not MIN_TIME <= value < MAX_TIME:
        raise ValueError(
            f"timestamp out of range: must be from {MIN_TIME.date()} to before {MAX_TIME.date()}"
        )
    return value


_NUMBER = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*")


def _text_time(value: Any) -> Any:
    """Timestamps travel as ISO-8601 text (numbers are ambiguous: seconds or milliseconds?).
    Numbers in a string too: pydantic would read "20250820" as seconds since 1970."""
    if isinstance(value, (bool, int, float)) or (
        isinstance(value, str) and _NUMBER.fullmatch(value)
    ):
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
def vocabulary(column: contract.Column) -> tuple[str, ...]:
    """The values a request may give ``column``: its closed vocabulary, or its known values
    (an open vocabulary for data files, closed here: see the module's conventions)."""
    return column.allowed or column.known_values


def normalise(column: contract.Column, value: str) -> str:
    """The validator's normalisation of a text value (features.validation.coercion
    ``coerce_strings``): surrounding spaces stripped, lowercased if the column is."""
    text = value.strip()
    return text.lower() if column.lowercase else text


def _values(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{value}'" for value in values)


def _case_insensitive(word: str) -> str:
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else re.escape(c) for c in word)


def _vocabulary_field(column: contract.Column) -> Any:
    """A string in ``column``'s vocabulary after normalisation; the refusal names the closest
    value. Its JSON schema lists the values (``enum``) and, for what normalisation accepts
    besides them, a pattern (schema-based fuzzers must find the schema and the API agree)."""
    values = vocabulary(column)
    words = [_case_insensitive(v) if column.lowercase else re.escape(v) for v in values]
    pattern = rf"^\s*(?:{'|'.join(words)})\s*$"
    rule = "case-insensitive, " if column.lowercase else "case-sensitive, "
    rule += "surrounding spaces ignored"

    def check(value: str) -> str:
        key = normalise(column, value)
        if key in values:
            return key
        close = difflib.get_close_matches(key.lower(), values, n=1, cutoff=0.6)
        hint = f"did you mean '{close[0]}'? " if close else ""
        # The message goes in the context, not the template: a value with braces in it must
        # not be read as a placeholder.
        message = f"{column.name} {value[:40]!r} is unknown: {hint}{column.name} is one of "
        message += f"{_values(values)} ({rule})"
        raise PydanticCustomError(
            "literal_error",
            "{message}",
            {"message": message, "expected": _values(values)},
        )

    schema = {
        "anyOf": [
            {"type": "string", "enum": list(values)},
            {"type": "string", "pattern": pattern},
        ]
    }
    return Annotated[
        str, StringConstraints(max_length=MAX_TEXT), AfterValidator(check), WithJsonSchema(schema)
    ]


def _annotation(column: contract.Column) -> Any:
    if column.kind is contract.Kind.TIMESTAMP:
        return Timestamp
    if column.kind is contract.Kind.FLOAT:
        return Annotated[float, Strict(), Field(ge=column.min_value, allow_inf_nan=False)]
    if vocabulary(column):
        return _vocabulary_field(column)
    if not column.nullable:
        return Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEXT)]
    return Text


def _description(column: contract.Column, note: str = "") -> str:
    text = column.description
    if vocabulary(column):
        text += f": one of {', '.join(vocabulary(column))}"
        text += " (case-insensitive" if column.lowercase else " (case-sensitive"
        text += "; surrounding spaces ignored)"
    elif column.lowercase:
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
Trend = Literal["improving", "steady", "declining", "not enough history"]


class Reason(BaseModel):
    field: str = Field(description="business field the reason is about")
    text: str = Field(description="the reason in words")
    contribution: float = Field(
        description="signed contribution to the primary target, in log-odds (SHAP)"
    )


class Unseen(BaseModel):
    """A categorical value of the request that the model has no code for."""

    field: str = Field(
        description="the lead field (e.g. `country`, `campaign_id`) or `touches.campaign_id`"
    )
    value: str = Field(description="the value as sent")


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
        "fit_score": 72,
        "engagement_score": 41,
        "grid": "B3",
        "priority": None,
        "p_converted_by": {"7": 0.02, "14": 0.04, "30": 0.09, "60": 0.14, "90": 0.16, "180": 0.2},
        "expected_conversion_date": None,
        "segment": "pooled",
        "expected_value": 4650.0,
        "reasons_positive": [
            {"field": "demo request", "text": "requested a demo 3 days ago", "contribution": 0.82}
        ],
        "reasons_negative": [
            {"field": "lead age", "text": "lead created 7 days ago", "contribution": -0.21}
        ],
        "unseen": [{"field": "country", "value": "Narnia"}],
        "model": {"name": "lead-scoring", "version": "3"},
        "trend": "improving",
        "previous_score": 9,
        "previous_scored_at": "2025-08-17T09:02:11+00:00",
    }


def _time_error(loc: tuple[str | int, ...], value: dt.datetime, message: str) -> InitErrorDetails:
    return InitErrorDetails(
        type=PydanticCustomError("time_order", "{message}", {"message": message}),
        loc=loc,
        input=value.isoformat(),
    )


def time_rules(request: Any, tolerance: dt.timedelta = dt.timedelta(0)) -> None:
    """The contract's time rules on one request (``ScoreRequest``): every error at its own
    field, all at once. Raises :class:`ValidationError`, which pydantic places under the
    request's own location (``leads[i]`` in a batch)."""
    created: dt.datetime = request.lead.created_at
    errors = []
    for name in ("touches", "sales_events"):
        for i, event in enumerate(getattr(request, name)):
            if event.occurred_at < created - tolerance:
                errors.append(
                    _time_error(
                        (name, i, "occurred_at"),
                        event.occurred_at,
                        f"occurred_at {event.occurred_at.isoformat()} is before the lead's "
                        f"created_at {created.isoformat()}: a lead has no history before it "
                        "was created",
                    )
                )
    if request.as_of is not None and request.as_of < created:
        errors.append(
            _time_error(
                ("as_of",),
                request.as_of,
                f"as_of {request.as_of.isoformat()} is before the lead's created_at "
                f"{created.isoformat()}: a lead cannot be scored before it exists",
            )
        )
    elif request.as_of is None and created > dt.datetime.now(dt.UTC):
        errors.append(
            _time_error(
                ("lead", "created_at"),
                created,
                f"created_at {created.isoformat()} is in the future and as_of (default: now) "
                "would be before it: send the lead's real creation time, or an as_of",
            )
        )
    if errors:
        raise ValidationError.from_exception_data("ScoreRequest", errors)


def build_models(
    limits: Limits, targets: tuple[str, ...], time_tolerance_seconds: float = 0.0
) -> ApiModels:
    """The app's models: contract fields, the request limits, a ``p_<target>`` per target.
    ``time_tolerance_seconds``: how long an event may precede its lead's creation (clock skew;
    the validator's ``params.validate.time_tolerance_seconds``)."""
    events = limits.max_events_per_lead
    tolerance = dt.timedelta(seconds=time_tolerance_seconds)
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

    def contract_time_rules(self: Any) -> Any:
        time_rules(self, tolerance)
        return self

    score_request = create_model(
        "ScoreRequest",
        __base__=ScoreRequestBase,
        __doc__="One lead with its history so far.",
        __validators__={
            "events_within_limit": model_validator(mode="after")(events_within_limit),  # type: ignore[dict-item]
            "time_rules": model_validator(mode="after")(contract_time_rules),  # type: ignore[dict-item]
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
            Field(
                default=None,
                description="when to score (default: now); not before the lead's created_at; "
                "events at or after it are accepted and not used",
            ),
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
        fit_score=(
            int | None,
            Field(
                ge=0,
                le=100,
                description="who the lead is (lead and account attributes, campaign and channel "
                "track records): the percentile, among the training leads, of the primary "
                "model's log-odds effect of those features alone (null: no such features)",
            ),
        ),
        engagement_score=(
            int | None,
            Field(
                ge=0,
                le=100,
                description="what the lead does (touches, recency, trend, its sales events, "
                "its age): the same percentile for those features alone",
            ),
        ),
        grid=(
            str | None,
            Field(
                pattern=r"^[A-Z][0-9]$",
                description="fit letter × engagement digit from params.yaml's grid bands: "
                "'A1' fits best and is most engaged, 'D4' least (null when a score is null)",
            ),
        ),
        priority=(
            int | None,
            Field(
                ge=0,
                le=100,
                description="the lead's percentile among the leads ranked with it (the queue): "
                "100 = the best of them; beside the grade, never instead of it; null when "
                "scored alone",
            ),
        ),
        p_converted_by=(
            dict[str, Annotated[float, Field(ge=0.0, le=1.0)]] | None,
            Field(
                default=None,
                description="the probability of converting within each horizon (days after "
                "as_of → p, non-decreasing; params.yaml timing.horizons_days); null: a model "
                "without conversion timing",
            ),
        ),
        expected_conversion_date=(
            dt.date | None,
            Field(
                default=None,
                description="the date by which the lead has a 50 % chance of having converted; "
                "null when under 50 % within the longest horizon (or no timing model)",
            ),
        ),
        expected_value=(
            Annotated[float, Field(ge=0.0)] | None,
            Field(
                default=None,
                description="p of the primary target × the expected won amount, in "
                "data.currency; null when no won amounts were known in training",
            ),
        ),
        segment=(
            str,
            Field(
                default="pooled",
                max_length=200,
                description="the model that scored the lead: its segment's name (params.yaml "
                "segments) or 'pooled' (the model trained on all leads)",
            ),
        ),
        reasons_positive=(list[Reason], ...),
        reasons_negative=(list[Reason], ...),
        unseen=(
            list[Unseen],
            Field(
                description="categorical values the model has no code for (never seen in "
                "training, or too rare there): scored as 'other'; empty when none"
            ),
        ),
        model=(ModelRef, ...),
        trend=(
            Trend | None,
            Field(
                description="the lead's score trend from its stored history and this score: "
                "the change of the primary probability over params.yaml's store.trend window; "
                "null when the score store is off or unreachable"
            ),
        ),
        previous_score=(
            int | None,
            Field(description="the lead's latest stored score before this one (null: none)"),
        ),
        previous_scored_at=(dt.datetime | None, Field(description="when that score was given")),
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
