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


def test_closed_vocabularies_and_bounds_come_from_the_contract(models: Any) -> None:
    properties = _schema(models.sales_event)["properties"]
    assert tuple(properties["stage"]["enum"]) == contract.SALES_EVENTS.column("stage").allowed
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
