"""Request models come from the data contract, with the configured limits."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from pydantic import ValidationError

from features import contract
from serving.schemas import EXAMPLE_REQUEST, MAX_EXTRA_FIELDS, MAX_TEXT, build_models
from serving.settings import Limits

LIMITS = Limits(max_batch=5, max_body_bytes=10_000, max_events_per_lead=4)


@pytest.fixture(scope="module")
def models() -> Any:
    return build_models(LIMITS, ("accepted", "converted"))


def _schema(model: Any) -> dict[str, Any]:
    return model.model_json_schema()


def test_fields_are_the_contracts_columns(models: Any) -> None:
    assert list(models.lead.model_fields) == list(contract.LEADS.column_names)
    assert list(models.touch.model_fields) == list(contract.TOUCHES.column_names)
    assert list(models.sales_event.model_fields) == list(contract.SALES_EVENTS.column_names)


@pytest.mark.parametrize(
    ("table", "name"),
    [(contract.LEADS, "lead"), (contract.TOUCHES, "touch"), (contract.SALES_EVENTS, "sales_event")],
)
def test_required_fields_are_the_non_nullable_columns(
    models: Any, table: contract.Table, name: str
) -> None:
    required = set(_schema(getattr(models, name)).get("required", []))
    expected = {c.name for c in table if not c.nullable}
    if name != "lead":
        expected.discard("lead_id")  # events belong to the enclosing lead
    assert required == expected


def _enum(prop: dict[str, Any]) -> tuple[str, ...]:
    (listed,) = [o["enum"] for o in prop["anyOf"] if "enum" in o]
    return tuple(listed)


def test_closed_vocabularies_and_bounds_come_from_the_contract(models: Any) -> None:
    properties = _schema(models.sales_event)["properties"]
    assert _enum(properties["stage"]) == contract.SALES_EVENTS.column("stage").allowed
    touch = _schema(models.touch)["properties"]["touch_type"]
    assert _enum(touch) == contract.TOUCH_TYPES
    assert "demo_request" in touch["description"]
    amount = next(o for o in properties["amount"]["anyOf"] if o.get("type") == "number")
    assert amount["minimum"] == contract.SALES_EVENTS.column("amount").min_value
    lead = _schema(models.lead)["properties"]
    assert lead["seniority"]["description"].startswith(
        contract.LEADS.column("seniority").description
    )


def test_the_example_is_valid(models: Any) -> None:
    request = models.score_request.model_validate_json(json.dumps(EXAMPLE_REQUEST))
    assert request.lead.lead_id == EXAMPLE_REQUEST["lead"]["lead_id"]
    assert models.score_request.model_json_schema()["examples"] == [EXAMPLE_REQUEST]


def test_timestamps_are_utc_text(models: Any) -> None:
    lead = models.lead.model_validate({"lead_id": "a", "created_at": "2024-03-01T10:00:00"})
    assert lead.created_at == dt.datetime(2024, 3, 1, 10, tzinfo=dt.UTC)
    lead = models.lead.model_validate({"lead_id": "a", "created_at": "2024-03-01T12:00:00+02:00"})
    assert lead.created_at == dt.datetime(2024, 3, 1, 10, tzinfo=dt.UTC)
    for bad in (0, 1700000000, "1850-01-01T00:00:00Z", "2300-01-01T00:00:00Z", "soon"):
        with pytest.raises(ValidationError):
            models.lead.model_validate({"lead_id": "a", "created_at": bad})


@pytest.mark.parametrize("text", ["1700000000", "1700000000.5", "20250820", "2025", " -1e9 "])
def test_numbers_in_strings_are_not_timestamps(models: Any, text: str) -> None:
    # pydantic alone reads these as seconds since 1970: "20250820" would be 1970-08-23
    with pytest.raises(ValidationError, match="ISO-8601") as error:
        models.lead.model_validate({"lead_id": "a", "created_at": text})
    assert error.value.errors()[0]["loc"] == ("created_at",)


def test_numbers_are_strict_and_finite(models: Any) -> None:
    event = {"occurred_at": "2024-01-01T00:00:00Z", "stage": "won"}
    assert models.sales_event.model_validate({**event, "amount": 3}).amount == 3.0
    for bad in (True, "3", -1.0, float("inf")):
        with pytest.raises(ValidationError):
            models.sales_event.model_validate({**event, "amount": bad})


def test_lead_extras_are_bounded_scalars(models: Any) -> None:
    base = {"lead_id": "a", "created_at": "2024-01-01T00:00:00Z"}
    lead = models.lead.model_validate({**base, "age": 41, "job": "admin.", "loan": None})
    assert lead.model_dump()["age"] == 41
    for bad in ({"x": [1]}, {"x": {"y": 1}}, {"x": "z" * (MAX_TEXT + 1)}, {"k" * 101: 1}):
        with pytest.raises(ValidationError):
            models.lead.model_validate({**base, **bad})
    many = {f"f{i}": i for i in range(MAX_EXTRA_FIELDS + 1)}
    with pytest.raises(ValidationError, match="at most"):
        models.lead.model_validate({**base, **many})


def test_event_typos_are_errors(models: Any) -> None:
    with pytest.raises(ValidationError, match="amout"):
        models.sales_event.model_validate(
            {"occurred_at": "2024-01-01T00:00:00Z", "stage": "won", "amout": 5}
        )


def test_limits(models: Any) -> None:
    lead = {"lead_id": "a", "created_at": "2024-01-01T00:00:00Z"}
    touch = {"occurred_at": "2024-01-02T00:00:00Z", "touch_type": "web_visit"}
    sale = {"occurred_at": "2024-01-02T00:00:00Z", "stage": "assigned"}
    models.score_request.model_validate({"lead": lead, "touches": [touch] * 4})
    with pytest.raises(ValidationError):  # one list over
        models.score_request.model_validate({"lead": lead, "touches": [touch] * 5})
    with pytest.raises(ValidationError, match="together"):  # both lists together over
        models.score_request.model_validate(
            {"lead": lead, "touches": [touch] * 3, "sales_events": [sale] * 2}
        )
    item = {"lead": lead}
    models.batch_request.model_validate({"leads": [item] * 5})
    with pytest.raises(ValidationError):
        models.batch_request.model_validate({"leads": [item] * 6})
    with pytest.raises(ValidationError):
        models.queue_request.model_validate({"leads": [item], "capacity": 0})


def test_response_model_has_a_probability_per_target(models: Any) -> None:
    properties = models.score_response.model_json_schema()["properties"]
    assert {"p_accepted", "p_converted", "score", "grade", "handoff"} <= set(properties)


def test_components_resolve(models: Any) -> None:
    components = models.components()
    text = json.dumps(components)
    for ref in {part.split('"')[0] for part in text.split("#/components/schemas/")[1:]}:
        assert ref in components


# ------------------------------------------------------- vocabularies and time rules
LEAD = {"lead_id": "a", "created_at": "2025-01-10T00:00:00Z"}


def _errors(models: Any, body: dict[str, Any], model: str = "score_request") -> list[Any]:
    with pytest.raises(ValidationError) as error:
        getattr(models, model).model_validate_json(json.dumps(body))
    return error.value.errors()


def _touch(touch_type: str, when: str = "2025-01-11T00:00:00Z") -> dict[str, str]:
    return {"occurred_at": when, "touch_type": touch_type}


@pytest.mark.parametrize(
    ("sent", "suggested"),
    [("demo_requets", "demo_request"), ("Demo Request", "demo_request"), ("webvisit", "web_visit")],
)
def test_unknown_touch_types_are_refused_with_the_closest(
    models: Any, sent: str, suggested: str
) -> None:
    body = {"lead": LEAD, "touches": [_touch("web_visit"), _touch(sent)]}
    (error,) = _errors(models, body)
    assert error["loc"] == ("touches", 1, "touch_type")
    assert f"did you mean '{suggested}'?" in error["msg"]
    assert "'unsubscribe'" in error["msg"]  # the whole vocabulary is named


def test_touch_types_are_normalised_as_the_validator_does(models: Any) -> None:
    # touch_type is a lowercase column: the validator strips and lowercases it, so must the API
    sent = [" Demo_Request ", "EMAIL_OPEN", "web_visit\t"]
    body = {"lead": LEAD, "touches": [_touch(t) for t in sent]}
    request = models.score_request.model_validate_json(json.dumps(body))
    assert [t.touch_type for t in request.touches] == ["demo_request", "email_open", "web_visit"]


def test_stages_are_case_sensitive_as_in_the_validator(models: Any) -> None:
    event = {"occurred_at": "2025-01-11T00:00:00Z", "stage": " accepted "}
    request = models.score_request.model_validate({"lead": LEAD, "sales_events": [event]})
    assert request.sales_events[0].stage == "accepted"  # spaces stripped, like the validator
    (error,) = _errors(models, {"lead": LEAD, "sales_events": [{**event, "stage": "Accepted"}]})
    assert error["loc"] == ("sales_events", 0, "stage")
    assert "did you mean 'accepted'?" in error["msg"]


def test_braces_in_a_refused_value_are_not_placeholders(models: Any) -> None:
    (error,) = _errors(models, {"lead": LEAD, "touches": [_touch("{message}{x}")]})
    assert "'{message}{x}' is unknown" in error["msg"]


def test_events_before_the_lead_was_created_are_refused(models: Any) -> None:
    before = "2025-01-09T23:59:59Z"
    body = {
        "lead": LEAD,
        "touches": [_touch("web_visit"), _touch("web_visit", before)],
        "sales_events": [{"occurred_at": before, "stage": "assigned"}],
        "as_of": "2025-01-12T00:00:00Z",
    }
    errors = _errors(models, body)
    assert [e["loc"] for e in errors] == [
        ("touches", 1, "occurred_at"),
        ("sales_events", 0, "occurred_at"),
    ]
    assert all(e["type"] == "time_order" and "created_at" in e["msg"] for e in errors)
    at_creation = {**body, "touches": [_touch("web_visit", LEAD["created_at"])], "sales_events": []}
    models.score_request.model_validate_json(json.dumps(at_creation))  # equal is fine


def test_the_validators_time_tolerance_applies(models: Any) -> None:
    tolerant = build_models(LIMITS, ("converted",), time_tolerance_seconds=60)
    body = {"lead": LEAD, "touches": [_touch("web_visit", "2025-01-09T23:59:30Z")]}
    tolerant.score_request.model_validate_json(json.dumps(body))
    assert _errors(models, body)[0]["loc"] == ("touches", 0, "occurred_at")


def test_as_of_before_created_at_is_refused(models: Any) -> None:
    (error,) = _errors(models, {"lead": LEAD, "as_of": "2025-01-09T00:00:00Z"})
    assert error["loc"] == ("as_of",)
    models.score_request.model_validate({"lead": LEAD, "as_of": LEAD["created_at"]})


def test_a_future_lead_without_as_of_is_refused(models: Any) -> None:
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(days=2)).isoformat()
    (error,) = _errors(models, {"lead": {**LEAD, "created_at": future}})
    assert error["loc"] == ("lead", "created_at")
    assert "future" in error["msg"]


def test_events_after_as_of_are_accepted(models: Any) -> None:
    # DESIGN.md: features use only rows before as_of; a replayed full history is valid
    body = {"lead": LEAD, "touches": [_touch("web_visit", "2025-03-01T00:00:00Z")]}
    models.score_request.model_validate({**body, "as_of": "2025-02-01T00:00:00Z"})


def test_batch_errors_are_located_in_their_lead(models: Any) -> None:
    good = {"lead": LEAD}
    bad = {"lead": LEAD, "touches": [_touch("demo_requets")], "as_of": "2025-01-01T00:00:00Z"}
    for model in ("batch_request", "queue_request"):
        (error,) = _errors(models, {"leads": [good, good, bad]}, model)
        assert error["loc"] == ("leads", 2, "touches", 0, "touch_type")  # fields first
        fixed = {**bad, "touches": [_touch("demo_request")]}
        (error,) = _errors(models, {"leads": [good, fixed]}, model)
        assert error["loc"] == ("leads", 1, "as_of")


def test_the_answer_documents_unseen_values(models: Any) -> None:
    schema = models.score_response.model_json_schema()
    assert "unseen" in schema["required"]
    unseen = schema["properties"]["unseen"]
    assert unseen["items"]["$ref"].endswith("/Unseen")
    assert set(schema["$defs"]["Unseen"]["properties"]) == {"field", "value"}
    assert schema["examples"][0]["unseen"] == [{"field": "country", "value": "Narnia"}]
