"""Feature values worded for people (the catalog's wording, through ``describe``)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.engine import catalog
from features.engine.catalog import NEVER_DAYS, OTHER
from models.reasons import Reason, ReasonTable, describe
from tests.serving.world import World

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
        ("lead_age_days", NAN, "lead age not known"),
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
        ("campaign_daily_leads", 0.0, "source campaign has brought no leads yet"),
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
        ("account_employees", NAN, "company size not known"),
        ("account_annual_revenue", 850_000, "company revenue: 850,000 EUR"),
        ("account_annual_revenue", 12_500_000, "company revenue: 12.5 million EUR"),
        ("account_annual_revenue", 3e9, "company revenue: 3 billion EUR"),
        ("campaign_spend_per_lead", 85.2, "source campaign spends 85 EUR per lead"),
        ("campaign_spend_per_lead", 0.4, "source campaign spends 0.40 EUR per lead"),
        ("campaign_daily_spend", 1234.5, "source campaign spends 1,234 EUR a day"),
        ("campaign_daily_spend", NAN, "campaign spend not known"),
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


def test_money_without_a_currency_says_so() -> None:
    """A bare number reads as any currency: without params ``data.currency`` it says so."""
    none = catalog.Context(currency="")
    assert (
        words("campaign_spend_per_lead", 85, none)
        == "source campaign spends 85 (currency not known) per lead"
    )
    assert (
        words("account_annual_revenue", 2e6, none)
        == "company revenue: 2 million (currency not known)"
    )


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


def test_the_engine_carries_when_engagement_cools() -> None:
    """``features.cooled_days`` reaches the words through the fitted engine; an engine pickled
    before it existed words as the default (30 days)."""
    from features.engine.engine import FeatureEngine

    engine = FeatureEngine(cooled_days=14)
    context = engine.wording_context()
    assert context.cooled_days == 14
    assert describe("touches_days_since_last", 20, {}, context) == (
        "engagement has cooled: no touch in 20 days"
    )
    del engine.cooled_days
    assert engine.wording_context().cooled_days == 30
    assert describe("touches_days_since_last", 20, {}, engine.wording_context()) == (
        "last engaged 20 days ago"
    )


@pytest.mark.parametrize(
    ("name", "value", "text"),
    [
        ("seniority", 2, "seniority: vp"),
        ("seniority", NAN, "seniority not known"),
        ("seniority", 3, "seniority: other"),  # unseen or rare: the code after the vocabulary
        ("source", 1, "lead source: web"),
        ("channel", 1, "channel: paid social"),
        ("channel", NAN, "channel not known"),
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
        ("age", NAN, "age not known"),
        ("nr.employed", 4991.6, "nr employed: 4,992"),
        ("euribor3m", 4.857, "euribor3m: 4.857"),
        ("emp.var.rate", -1.8, "emp var rate: -1.8"),
        ("pdays", 999, "pdays: 999"),
        ("campaign", 3, "campaign: 3"),
        ("day_of_week", 2, "day of week: 2"),
    ],
)
def test_flat_columns_read_naturally(name: str, value: float, text: str) -> None:
    assert describe(name, value, VOCABULARIES) == text


# ------------------------------------------------- the fast path and the reference algorithm
def reference_top(
    table: ReasonTable, contributions: np.ndarray, row: np.ndarray, count: int
) -> tuple[list[Reason], list[Reason]]:
    """The reason algorithm written plainly, one lead at a time: the oracle the fast path must
    equal bit for bit. Features the catalog never offers belong to no field; a field is offered
    on a side when one of its same-signed features has words that agree with that side."""
    names = table.names
    fields: list[str] = []
    for i, name in enumerate(names):
        field = table.fields[table.field_of[i]] if table.field_of[i] >= 0 else None
        if catalog.lookup(name, name in table.categories).offered:
            assert field is not None
            if field not in fields:
                fields.append(field)
        else:
            assert field is None  # never part of a field's total
    assert fields == table.fields

    def members(field: int) -> list[int]:
        return [i for i in range(len(names)) if table.field_of[i] == field]

    totals = [0.0] * len(fields)
    for f in range(len(fields)):
        for i in members(f):
            totals[f] += contributions[i]

    def eligible(field: int, sign: float) -> list[int]:
        out = []
        for i in members(field):
            feature = catalog.lookup(names[i], names[i] in table.categories)
            if np.sign(contributions[i]) == sign and feature.agrees(float(row[i]), sign):
                out.append(i)
        return out

    def reason(field: int, sign: float) -> Reason:
        lead = max(eligible(field, sign), key=lambda i: abs(contributions[i]))
        words = describe(names[lead], float(row[lead]), table.categories, table.context)
        return Reason(fields[field], totals[field], words)

    order = range(len(totals))
    positive = sorted(
        (f for f in order if totals[f] > 0 and eligible(f, 1.0)), key=lambda f: -totals[f]
    )
    negative = sorted(
        (f for f in order if totals[f] < 0 and eligible(f, -1.0)), key=lambda f: totals[f]
    )
    return (
        [reason(f, 1.0) for f in positive[:count]],
        [reason(f, -1.0) for f in negative[:count]],
    )


def _exact(reasons: list[Reason]) -> list[tuple[str, str, str]]:
    """Field, words and the contribution's exact bits (``float.hex``: -0.0 ≠ 0.0)."""
    return [(r.field, r.text, float(r.contribution).hex()) for r in reasons]


def _assert_identical(table: ReasonTable, contributions: np.ndarray, X: np.ndarray) -> None:
    """The columns (batch scoring), one row at a time (an API request) and ``explain`` (which
    picks one of them by size) all give the reference's reasons, bit for bit."""
    for count in (1, 3, len(table.fields)):
        fast = table.columns(contributions, X, count).lists()
        picked = table.explain(contributions, X, count)
        assert len(fast) == len(picked) == len(X)
        for i, (positive, negative) in enumerate(fast):
            good, bad = reference_top(table, contributions[i], X[i], count)
            assert _exact(positive) == _exact(good), (i, count)
            assert _exact(negative) == _exact(bad), (i, count)
            one = table.top(contributions[i], X[i], count)
            assert (_exact(one[0]), _exact(one[1])) == (_exact(good), _exact(bad)), (i, count)
            assert (_exact(picked[i][0]), _exact(picked[i][1])) == (_exact(good), _exact(bad))


def test_the_fast_path_equals_the_reference_on_a_trained_model(world: World) -> None:
    scorer = world.scorer
    X = scorer.engine.matrix_from_frame(world.snapshots.iloc[::9])
    contributions = scorer.contributions(X)
    assert len(X) > 500
    _assert_identical(scorer.reason_table, contributions, X)
    # The scorer's API path (API, bundle, queue) and the batch columns are the same answers.
    assert scorer.explain(X[:50]) == [
        reference_top(scorer.reason_table, contributions[i], X[i], 3) for i in range(50)
    ]


NAMES = ["seniority", "age", "demo_request_days_since", "demo_request_7d", "demo_request_all"]
NAMES += ["campaign", "pdays", "sales_opportunity_count", "channel_converted_lift"]
NAMES += ["channel_accepted_lift", "unsubscribe_all", "touches_trend"]
FIELDS = ["seniority", "age", *["demo request"] * 3, "campaign", "campaign"]
FIELDS += ["earlier sales opportunity", *["channel track record"] * 2, "unsubscribe"]
FIELDS += ["engagement trend"]


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 40).flatmap(
        lambda n: st.tuples(
            st.lists(
                st.sampled_from([-1.0, -0.5, -0.0, 0.0, 0.25, 0.5, 1.0]),
                min_size=n * len(NAMES),
                max_size=n * len(NAMES),
            ),
            st.lists(
                st.sampled_from([NAN, -0.0, 0.0, 1.0, 2.0, 3.5, 9999.0]),
                min_size=n * len(NAMES),
                max_size=n * len(NAMES),
            ),
        )
    )
)
def test_the_fast_path_equals_the_reference_on_ties_zeros_and_nans(
    draw: tuple[list[float], list[float]],
) -> None:
    """Ties between fields and between a field's features, exact zeros of both signs, fields
    with no same-signed feature, missing values, a feature that is never a reason (the stage
    count) and values whose words agree with one side only (no demo requests, 2.0× or 1.0× the
    average, unsubscribes): the same reasons, in the same order."""
    contributions = np.array(draw[0]).reshape(-1, len(NAMES))
    X = np.array(draw[1]).reshape(-1, len(NAMES))
    table = ReasonTable(NAMES, FIELDS, {"seniority": ("director", "manager", "vp")}, EUR)
    _assert_identical(table, contributions, X)


def test_no_rows_and_no_reasons() -> None:
    table = ReasonTable(NAMES, FIELDS, {"seniority": ("vp",)}, EUR)
    empty = np.zeros((0, len(NAMES)))
    assert table.columns(empty, empty, 3).lists() == []
    assert table.columns(np.zeros((2, len(NAMES))), np.zeros((2, len(NAMES))), 3).lists() == [
        ([], []),
        ([], []),
    ]
