"""Feature values worded for people (the catalog's wording, through ``describe``)."""

from __future__ import annotations

import math

import pytest

from features.engine import catalog
from features.engine.catalog import NEVER_DAYS, OTHER
from models.reasons import describe

NAN = math.nan
EUR = catalog.Context(currency="EUR")
VOCABULARIES = {
    "seniority": ("director", "manager", "vp"),
    "source": ("event", "web"),
    "channel": ("email", "paid_social"),
    "industry": ("software",),
    "marital": ("married", "single"),
}


def words(name: str, value: float, context: catalog.Context = EUR) -> str:
    return catalog.word(name, value, VOCABULARIES, context)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (NAN, "never requested a demo"),
        (NEVER_DAYS, "never requested a demo"),
        (NEVER_DAYS + 1, "never requested a demo"),
        (0.0, "requested a demo today"),
        (0.99, "requested a demo today"),
        (1.0, "requested a demo 1 day ago"),
        (1.9, "requested a demo 1 day ago"),
        (2.0, "requested a demo 2 days ago"),
        (3.4, "requested a demo 3 days ago"),
        (1500.0, "requested a demo 1,500 days ago"),
    ],
)
def test_days_since(value: float, text: str) -> None:
    assert words("demo_request_days_since", value) == text


@pytest.mark.parametrize(
    ("name", "value", "text"),
    [
        ("webinar_attendance_days_since", NAN, "never attended a webinar"),
        ("unsubscribe_days_since", 1.2, "unsubscribed from emails 1 day ago"),
        (f"{OTHER}_days_since", 0.5, "had another interaction today"),
        ("sales_days_since_last", NAN, "no sales activity yet"),
        ("sales_days_since_last", NEVER_DAYS, "no sales activity yet"),
        ("sales_days_since_last", 0.2, "last sales activity today"),
        ("sales_days_since_last", 1.0, "last sales activity 1 day ago"),
        ("sales_days_since_last", 12.0, "last sales activity 12 days ago"),
        ("lead_age_days", 0.3, "lead created today"),
        ("lead_age_days", 1.0, "lead created 1 day ago"),
        ("lead_age_days", 30.2, "lead created 30 days ago"),
        ("lead_age_days", NAN, "lead age unknown"),
    ],
)
def test_days(name: str, value: float, text: str) -> None:
    assert words(name, value) == text


@pytest.mark.parametrize(
    ("name", "value", "text"),
    [
        ("demo_request_7d", 0, "no demo requests in the last 7 days"),
        ("demo_request_7d", 1, "1 demo request in the last 7 days"),
        ("demo_request_7d", 2, "2 demo requests in the last 7 days"),
        ("web_visit_1d", 1, "1 website visit in the last day"),
        ("email_open_all", 0, "no email opens so far"),
        ("email_open_all", 1, "1 email open so far"),
        ("email_open_all", 1234, "1,234 email opens so far"),
        ("event_attendance_30d", 0, "attended no events in the last 30 days"),
        ("event_attendance_30d", 1, "attended 1 event in the last 30 days"),
        ("event_attendance_30d", 4, "attended 4 events in the last 30 days"),
        ("webinar_attendance_all", 1, "attended 1 webinar so far"),
        ("unsubscribe_90d", 1, "unsubscribed once in the last 90 days"),
        ("unsubscribe_all", 2, "unsubscribed 2 times so far"),
        ("unsubscribe_all", 0, "no unsubscribes so far"),
        (f"{OTHER}_all", 1, "1 other interaction so far"),
        ("chat_7d", 1, "1 'chat' touch in the last 7 days"),
        ("sales_assigned_count", 0, "no earlier assignments to sales"),
        ("sales_assigned_count", 1, "1 earlier assignment to sales"),
        ("sales_assigned_count", 2, "2 earlier assignments to sales"),
        ("sales_opportunity_count", 1, "1 earlier opportunity"),
        ("sales_opportunity_count", 3, "3 earlier opportunities"),
        ("sales_lost_count", 2, "2 earlier losses"),
        ("account_earlier_leads", 0, "no earlier leads from the same account"),
        ("account_earlier_leads", 1, "1 earlier lead from the same account"),
        ("account_earlier_leads", 5, "5 earlier leads from the same account"),
        ("account_opportunities", 1, "1 earlier opportunity at the same account"),
        ("account_wins", 1, "1 earlier win at the same account"),
        ("account_wins", 2, "2 earlier wins at the same account"),
        ("distinct_campaigns", 0, "interacted with no campaign"),
        ("distinct_campaigns", 1, "interacted with 1 campaign"),
        ("distinct_campaigns", 3, "interacted with 3 different campaigns"),
        ("campaign_daily_leads", 1.0, "source campaign brings 1 lead a day"),
        ("campaign_daily_leads", 0.4, "source campaign brings 0.4 leads a day"),
        ("campaign_daily_leads", 0.034, "source campaign brings 0.034 leads a day"),
        ("campaign_daily_leads", 0.0, "source campaign brings 0 leads a day"),
        ("campaign_daily_leads", 0.97, "source campaign brings 1 lead a day"),
        ("campaign_daily_leads", 12.0, "source campaign brings 12 leads a day"),
    ],
)
def test_counts_and_plurals(name: str, value: float, text: str) -> None:
    assert words(name, value) == text


@pytest.mark.parametrize("touch", sorted(catalog.TOUCHES))
def test_every_touch_count_has_a_singular(touch: str) -> None:
    one, two = words(f"{touch}_all", 1), words(f"{touch}_all", 2)
    assert one != two.replace("2", "1")  # not "1 <plural>"
    assert not words(f"{touch}_all", 0).startswith("0 ")


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "engagement steady: as many touches in the last 7 days as in the 7 before"),
        (1, "engagement rising: 1 more touch in the last 7 days than in the 7 before"),
        (3, "engagement rising: 3 more touches in the last 7 days than in the 7 before"),
        (-1, "engagement falling: 1 fewer touch in the last 7 days than in the 7 before"),
        (-2, "engagement falling: 2 fewer touches in the last 7 days than in the 7 before"),
    ],
)
def test_trend(value: float, text: str) -> None:
    assert words("touches_trend", value, catalog.Context("EUR", trend_days=7)) == text


def test_trend_names_its_period() -> None:
    text = words("touches_trend", 2, catalog.Context("EUR", trend_days=14))
    assert text == "engagement rising: 2 more touches in the last 14 days than in the 14 before"


@pytest.mark.parametrize(
    ("name", "value", "text"),
    [
        ("account_employees", 1, "company size: 1 employee"),
        ("account_employees", 250, "company size: 250 employees"),
        ("account_employees", 12000, "company size: 12,000 employees"),
        ("account_employees", NAN, "company size unknown"),
        ("account_annual_revenue", 850_000, "company revenue: 850,000 EUR"),
        ("account_annual_revenue", 12_500_000, "company revenue: 12.5 million EUR"),
        ("account_annual_revenue", 3e9, "company revenue: 3 billion EUR"),
        ("campaign_spend_per_lead", 85.2, "source campaign spends 85 EUR per lead"),
        ("campaign_spend_per_lead", 0.4, "source campaign spends 0.40 EUR per lead"),
        ("campaign_daily_spend", 1234.5, "source campaign spends 1,234 EUR a day"),
        ("campaign_daily_spend", NAN, "campaign spend unknown"),
        (
            "campaign_accepted_lift",
            1.43,
            "campaign track record: 1.4× the average share of leads accepted",
        ),
        ("channel_converted_lift", NAN, "no channel track record yet"),
        ("sales_recycled", 1, "recycled lead (assigned to sales again)"),
        ("sales_recycled", 0, "first time with sales"),
    ],
)
def test_units(name: str, value: float, text: str) -> None:
    assert words(name, value) == text


def test_money_without_a_currency() -> None:
    none = catalog.Context(currency="")
    assert words("campaign_spend_per_lead", 85, none) == "source campaign spends 85 per lead"
    assert words("account_annual_revenue", 2e6, none) == "company revenue: 2 million"


def test_the_engine_carries_currency_and_trend_period() -> None:
    """Wording follows the fitted engine (params ``data.currency``, ``features.trend_days``),
    never the process's working directory or environment."""
    from features.engine.engine import FeatureEngine

    engine = FeatureEngine(trend_days=3, currency="USD")
    context = engine.wording_context()
    assert context == catalog.Context(currency="USD", trend_days=3)
    assert (
        describe("campaign_daily_spend", 40, {}, context) == "source campaign spends 40 USD a day"
    )
    assert describe("touches_trend", 0, {}, context).endswith(
        "in the last 3 days as in the 3 before"
    )


@pytest.mark.parametrize(
    ("name", "value", "text"),
    [
        ("seniority", 2, "seniority: vp"),
        ("seniority", NAN, "seniority unknown"),
        ("seniority", 3, "seniority: other"),  # unseen or rare: the code after the vocabulary
        ("source", 1, "lead source: web"),
        ("channel", 1, "channel: paid social"),
        ("channel", NAN, "channel unknown"),
        ("industry", 0, "industry: software"),
        ("marital", 0, "marital: married"),  # a flat export's column
        ("marital", 2, "marital: other"),
    ],
)
def test_categorical(name: str, value: float, text: str) -> None:
    assert describe(name, value, VOCABULARIES) == text


@pytest.mark.parametrize(
    ("name", "value", "text"),
    [
        ("age", 41, "age: 41"),
        ("age", NAN, "age unknown"),
        ("nr.employed", 4991.6, "nr.employed: 4,992"),
        ("euribor3m", 4.857, "euribor3m: 4.857"),
        ("emp.var.rate", -1.8, "emp.var.rate: -1.8"),
        ("pdays", 999, "pdays: 999"),
        ("campaign", 3, "campaign: 3"),
        ("day_of_week", 2, "day of week: 2"),
    ],
)
def test_flat_columns_read_naturally(name: str, value: float, text: str) -> None:
    assert describe(name, value, VOCABULARIES) == text
