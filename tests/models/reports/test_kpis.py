"""The shared KPIs on a crafted tiny CRM, against numbers worked out by hand."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from models.reports.kpis import ALL, NO_CAMPAIGN, compute_kpis, month_spend

HORIZON = pd.Timestamp("2024-03-01", tz="UTC")


def _t(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


@pytest.fixture
def tables() -> dict[str, pd.DataFrame]:
    """C1 (email) runs 16 Jan → 15 Feb (30 days, 300 spent: 160 in Jan, 140 in Feb);
    C2 (event) runs 1 Feb → the horizon (1 Mar; 290 spent, all in Feb);
    C3 (email) runs 1 → 11 Jan (100 spent) and brings no lead."""
    campaigns = pd.DataFrame(
        {
            "campaign_id": ["C1", "C2", "C3"],
            "name": ["Email Jan", "Event Feb", "Email early"],
            "channel": ["email", "Event", "email"],
            "started_at": [_t("2024-01-16"), _t("2024-02-01"), _t("2024-01-01")],
            "ended_at": [_t("2024-02-15"), pd.NaT, _t("2024-01-11")],
            "spend": [300.0, 290.0, 100.0],
        }
    )
    leads = pd.DataFrame(
        {
            "lead_id": ["L1", "L2", "L3", "L4", "L5"],
            "created_at": [
                _t("2024-01-20"),
                _t("2024-01-25"),
                _t("2024-02-05"),
                _t("2024-02-10"),
                _t("2024-02-20"),
            ],
            "campaign_id": ["C1", "C1", "C2", "C2", None],
        }
    )
    events = [
        ("L1", "2024-01-21", "assigned"),
        ("L1", "2024-01-22", "accepted"),
        ("L1", "2024-02-01", "opportunity"),
        ("L1", "2024-02-19", "won"),  # 30 days after creation
        ("L2", "2024-01-26", "assigned"),
        ("L2", "2024-01-27", "rejected"),
        ("L3", "2024-02-06", "accepted"),
        ("L3", "2024-02-15", "won"),  # 10 days after creation
        ("L5", "2024-02-21", "accepted"),
    ]
    sales = pd.DataFrame(events, columns=["lead_id", "occurred_at", "stage"])
    sales["occurred_at"] = pd.to_datetime(sales["occurred_at"], utc=True)
    sales["owner_id"] = "R1"
    return {"campaigns": campaigns, "leads": leads, "sales_events": sales}


@pytest.fixture
def predictions() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "lead_id": ["L1", "L2", "L3", "L4", "L5"],
            "predicted": [0.3, 0.1, 0.5, 0.2, 0.4],
            "actual": [1.0, 0.0, 1.0, np.nan, np.nan],  # L4 and L5 are censored
        }
    )


def _rows(report: dict, table: str, key: str) -> dict[str, dict]:
    return {row[key]: row for row in report[table]}


def _report(tables: dict, predictions: pd.DataFrame | None = None) -> dict:
    return compute_kpis(tables, HORIZON, "converted", 90, "EUR", predictions=predictions)


def test_month_spend_is_prorated_by_active_time(tables: dict) -> None:
    spend = month_spend(tables["campaigns"], HORIZON)
    assert spend.to_dict() == pytest.approx({"2024-01": 260.0, "2024-02": 430.0})


def test_kpis_by_channel(tables: dict, predictions: pd.DataFrame) -> None:
    rows = _rows(_report(tables, predictions), "by_channel", "channel")
    assert list(rows) == ["email", "event", NO_CAMPAIGN, ALL]
    email = rows["email"]
    assert email["leads"] == 2
    assert email["accepted_share"] == pytest.approx(0.5)
    assert email["conversion"] == pytest.approx(0.5)
    assert email["cycle_days_median"] == pytest.approx(30.0)
    assert email["spend"] == pytest.approx(400.0)  # C1 + C3, although C3 brought no lead
    assert email["cost_per_lead"] == pytest.approx(200.0)
    assert email["cost_per_accepted"] == pytest.approx(400.0)
    assert email["cost_per_customer"] == pytest.approx(400.0)
    assert email["matured_leads"] == 2
    assert email["predicted_conversion"] == pytest.approx(0.2)
    assert email["actual_conversion"] == pytest.approx(0.5)
    event = rows["event"]
    assert (event["leads"], event["accepted"], event["customers"]) == (2, 1, 1)
    assert event["cost_per_lead"] == pytest.approx(145.0)
    assert event["cycle_days_median"] == pytest.approx(10.0)
    assert event["matured_leads"] == 1
    none = rows[NO_CAMPAIGN]
    assert (none["leads"], none["accepted"], none["customers"]) == (1, 1, 0)
    assert none["spend"] is None
    assert none["cost_per_lead"] is None
    assert none["cycle_days_median"] is None
    everything = rows[ALL]
    assert everything["leads"] == 5
    assert everything["accepted_share"] == pytest.approx(0.6)
    assert everything["conversion"] == pytest.approx(0.4)
    assert everything["cycle_days_median"] == pytest.approx(20.0)
    assert everything["cycle_days_p75"] == pytest.approx(25.0)
    assert everything["spend"] == pytest.approx(690.0)
    assert everything["cost_per_lead"] == pytest.approx(138.0)
    assert everything["cost_per_accepted"] == pytest.approx(230.0)
    assert everything["cost_per_customer"] == pytest.approx(345.0)
    assert everything["matured_leads"] == 3
    assert everything["predicted_conversion"] == pytest.approx(0.3)
    assert everything["actual_conversion"] == pytest.approx(2 / 3)


def test_kpis_by_campaign_and_month(tables: dict) -> None:
    report = _report(tables)
    campaigns = _rows(report, "by_campaign", "campaign_id")
    assert list(campaigns) == ["C1", "C2", "C3", NO_CAMPAIGN, ALL]
    assert campaigns["C1"]["cost_per_lead"] == pytest.approx(150.0)
    assert campaigns["C1"]["name"] == "Email Jan"
    assert campaigns["C2"]["channel"] == "event"
    assert campaigns["C3"]["leads"] == 0
    assert campaigns["C3"]["spend"] == pytest.approx(100.0)
    assert campaigns["C3"]["cost_per_lead"] is None
    months = _rows(report, "by_month", "month")
    assert list(months) == ["2024-01", "2024-02", ALL]
    january, february = months["2024-01"], months["2024-02"]
    assert (january["leads"], january["accepted"], january["customers"]) == (2, 1, 1)
    assert january["cost_per_lead"] == pytest.approx(130.0)
    assert january["cost_per_customer"] == pytest.approx(260.0)
    assert (february["leads"], february["accepted"], february["customers"]) == (3, 2, 1)
    assert february["cost_per_lead"] == pytest.approx(430.0 / 3, abs=0.01)
    assert february["cost_per_accepted"] == pytest.approx(215.0)
    assert report["unavailable"] == {
        "predicted_conversion": "no matured (uncensored) scored leads",
        "actual_conversion": "no matured (uncensored) scored leads",
    }
    assert report["currency"] == "EUR"
    json.dumps(report, allow_nan=False)


def test_flat_data_has_leads_and_conversion_only() -> None:
    leads = pd.DataFrame(
        {
            "lead_id": ["A", "B", "C", "D"],
            "created_at": pd.to_datetime(
                ["2024-01-05", "2024-01-20", "2024-02-02", "2024-02-03"], utc=True
            ),
            "outcome_converted": [1.0, 0.0, 0.0, 1.0],
        }
    )
    report = compute_kpis({"leads": leads}, HORIZON, "converted", 90, "USD")
    months = _rows(report, "by_month", "month")
    assert months["2024-01"]["conversion"] == pytest.approx(0.5)
    assert months[ALL]["leads"] == 4
    assert months[ALL]["customers"] == 2
    assert months[ALL]["accepted_share"] is None
    assert months[ALL]["cost_per_lead"] is None
    assert report["by_channel"] == []
    assert report["by_campaign"] == []
    for kpi in ("accepted_share", "cycle_days_median", "cost_per_lead", "by_channel"):
        assert kpi in report["unavailable"]
    assert "conversion" not in report["unavailable"]
    unordered = compute_kpis({"leads": leads}, HORIZON, "converted", 90, "USD", timed=False)
    assert unordered["by_month"] == []
    json.dumps(report, allow_nan=False)
