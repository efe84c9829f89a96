"""The wording table: every declared feature, worded at representative values (0, 1, many,
missing, below / at / above the average) on both sides of a contribution, read the way a
salesperson would read it; then the same rules on a trained model's reasons."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from features import contract
from features.engine import catalog
from features.engine.catalog import NEVER_DAYS, OTHER
from models.reasons import ReasonTable
from tests.serving.world import World

NAN = math.nan
EUR = catalog.Context(currency="EUR")
FLAT = ("marital",)
NUMERICS = ("age", "nr.employed", "emp.var.rate")
SHAPE = catalog.Shape(
    lead_attributes=(*contract.LEAD_ATTRIBUTES, *FLAT),
    numerics=NUMERICS,
    touches=True,
    sales=True,
    campaigns=True,
    accounts=True,
    touch_types=(*tuple(t for t in catalog.TOUCHES if t != OTHER), "chat"),
    targets=("accepted", "converted"),
)
FEATURES = catalog.features_of(SHAPE)
NUMERIC = [f for f in FEATURES if f.kind == "numeric"]
VALUES = (0.0, 1.0, 2.0, 7.0, 1234.0, 0.4, 0.6, 1.04, 1.7, -3.0, NEVER_DAYS, NAN)
VOCABULARIES = {f.name: ("alpha", "beta_gamma") for f in FEATURES if f.kind == "categorical"}
COUNT = re.compile(r"_(\d+d|decay\d+d|all|count)$|^account_(earlier_leads|opportunities|wins)$")
COUNTS = [f for f in NUMERIC if COUNT.search(f.name) or f.name == "distinct_campaigns"]
MONEY = [f for f in NUMERIC if "data.currency" in f.description]
LIFTS = [f for f in NUMERIC if f.name.endswith("_lift")]


def text(feature: catalog.Feature, value: float, context: catalog.Context = EUR) -> str:
    return feature.word(value, VOCABULARIES.get(feature.name), context)


def test_the_table_covers_every_declaration() -> None:
    covered = {id(f.declaration) for f in FEATURES}
    assert all(id(d) in covered for d in catalog.declarations())
    assert len(COUNTS) > 30
    assert len(MONEY) == 3
    assert len(LIFTS) == 4


@pytest.mark.parametrize("feature", FEATURES, ids=lambda f: f.name)
def test_no_jargon_at_any_value(feature: catalog.Feature) -> None:
    """No column names, no ``as_of``, no "unknown", never "0 things" (it reads "no things")."""
    values = (0.0, 1.0, NAN) if feature.kind == "categorical" else VALUES
    for value in values:
        words = text(feature, value)
        assert "_" not in words, words
        assert "as_of" not in words, words
        assert "unknown" not in words, words
        assert not re.search(r"(?<![\d.,])0 [a-z]", words), words
        assert not re.search(r"\b(lead age|nr\.|var\.)", words) or feature.name == "lead_age_days"


NOUNS = [f for f in NUMERIC if f not in MONEY + LIFTS and f.name != "sales_recycled"]


@pytest.mark.parametrize("feature", NOUNS, ids=lambda f: f.name)
def test_counts_agree_in_number(feature: catalog.Feature) -> None:
    """ "1 event", "2 events": the words for one are not the words for two with the digit
    swapped (and the other way round), unless the value is shown bare (``age: 2``). Money
    ("1 EUR"), ratios and the recycled flag have no noun that counts."""
    one, two = text(feature, 1.0), text(feature, 2.0)
    if re.search(r": -?[\d,.]+$", one):  # a plain measure, no noun to agree with
        assert feature.declaration.fallback, one
        return
    assert two.replace("2", "1") != one, (one, two)
    assert one.replace("1", "2") != two, (one, two)
    assert not re.search(r"(?<![\d.,])1 (days|touches|events|webinars|leads|employees)\b", one)


@pytest.mark.parametrize("feature", COUNTS, ids=lambda f: f.name)
def test_a_zero_count_is_a_plus_only_when_having_none_is_good(feature: catalog.Feature) -> None:
    """ "no earlier assignments to sales" as a plus contradicts itself: a zero count is offered
    as a plus only for what is better absent (unsubscribes), and always reads "no …"."""
    words = text(feature, 0.0)
    assert words.startswith(("no ", "attended no ", "interacted with no ")), words
    if feature.agrees(0.0, 1.0):
        assert feature.reads(0.0) == 1, words
        assert "unsubscribe" in words, words
    else:
        assert not feature.offered or feature.agrees(0.0, -1.0)


def test_the_only_counts_offered_as_a_plus_at_zero_are_unsubscribes() -> None:
    plus = sorted(f.name for f in COUNTS if f.agrees(0.0, 1.0))
    assert plus == [
        "unsubscribe_30d",
        "unsubscribe_7d",
        "unsubscribe_90d",
        "unsubscribe_all",
        "unsubscribe_decay30d",
        "unsubscribe_decay7d",
    ]


def test_stage_counts_are_features_but_never_reasons() -> None:
    stages = [f for f in FEATURES if f.name.startswith("sales_") and f.name.endswith("_count")]
    assert [f.name for f in stages] == [f"sales_{s}_count" for s in contract.SALES_STAGES]
    assert not any(f.offered for f in stages)
    assert all(f.offered for f in FEATURES if f not in stages)
    assert not any(f.agrees(v, s) for f in stages for v in (0.0, 1.0) for s in (1.0, -1.0))


@pytest.mark.parametrize("feature", MONEY, ids=lambda f: f.name)
@pytest.mark.parametrize("value", [0.4, 39.0, 1234.5, 12.5e6])
def test_money_has_its_currency(feature: catalog.Feature, value: float) -> None:
    assert re.search(r"\d( million)? EUR\b", text(feature, value))
    assert "(currency not known)" in text(feature, value, catalog.Context())


@pytest.mark.parametrize("feature", FEATURES, ids=lambda f: f.name)
def test_missing_values_read_not_known(feature: catalog.Feature) -> None:
    """A missing value reads "not known", or what missing means for the feature: never done
    (days since), no track record yet (a campaign or channel without matured leads)."""
    words = text(feature, NAN)
    if feature.declaration.missing is not None:
        assert words == text(feature, feature.declaration.missing)
        assert words.startswith(("never ", "no sales activity yet", "no engagement yet")), words
    elif feature in LIFTS:
        assert re.fullmatch(r"no (campaign|channel) track record yet", words)
    else:
        assert words.endswith(" not known"), words
    if feature.declaration.missing is None and feature.offered:  # not known: neither side
        assert feature.agrees(NAN, 1.0)
        assert feature.agrees(NAN, -1.0)


@pytest.mark.parametrize("feature", LIFTS, ids=lambda f: f.name)
@pytest.mark.parametrize(
    ("value", "shown", "plus", "minus"),
    [
        (1.7, "1.7× the average", True, False),
        (1.06, "1.1× the average", True, False),
        (1.04, "about the average", False, False),
        (0.96, "about the average", False, False),
        (0.94, "0.9× the average", False, True),
        (0.4, "0.4× the average", False, True),
    ],
)
def test_a_track_record_stands_on_the_side_it_reads(
    feature: catalog.Feature, value: float, shown: str, plus: bool, minus: bool
) -> None:
    """Better than average is never a reason for a lower score, worse never for a higher one;
    about average explains neither."""
    assert shown in text(feature, value)
    assert (feature.agrees(value, 1.0), feature.agrees(value, -1.0)) == (plus, minus)


@pytest.mark.parametrize(
    ("name", "value", "plus", "minus"),
    [
        ("demo_request_days_since", NEVER_DAYS, False, True),  # "never requested a demo"
        ("demo_request_days_since", 3.0, True, True),
        ("unsubscribe_days_since", NEVER_DAYS, True, False),  # "never unsubscribed"
        ("unsubscribe_days_since", 3.0, False, True),
        ("unsubscribe_all", 1.0, False, True),
        ("web_visit_7d", 3.0, True, True),
        ("account_wins", 1.0, True, False),
        ("account_wins", 0.0, False, True),
        ("account_earlier_leads", 0.0, False, True),
        ("touches_trend", 2.0, True, False),
        ("touches_trend", -2.0, False, True),
        ("touches_trend", 0.0, True, True),
        ("demo_request_decay7d", 0.0, False, True),  # "no demo requests"
        ("demo_request_decay7d", 0.004, True, True),  # "under 0.01 demo requests, …": an old one
        ("demo_request_decay7d", 1.8, True, True),
        ("unsubscribe_decay30d", 0.0, True, False),  # "no unsubscribes"
        ("unsubscribe_decay30d", 0.3, False, True),
        ("touches_days_since_last", 3.0, True, True),  # "last engaged 3 days ago"
        ("touches_days_since_last", 29.9, True, True),
        ("touches_days_since_last", 30.0, False, True),  # "engagement has cooled: …"
        ("touches_days_since_last", NEVER_DAYS, False, True),  # "no engagement yet"
        ("campaign_spend_per_lead", 0.0, True, True),
        ("age", 0.0, True, True),
    ],
)
def test_sides_of_other_readings(name: str, value: float, plus: bool, minus: bool) -> None:
    feature = catalog.lookup(name)
    assert (feature.agrees(value, 1.0), feature.agrees(value, -1.0)) == (plus, minus)


@pytest.mark.parametrize(
    ("name", "value", "shown"),
    [
        ("demo_request_decay7d", 0.0, "no demo requests"),
        (
            "demo_request_decay7d",
            0.004,
            "under 0.01 demo requests, weighted by recency (half-life 7 days)",
        ),
        (
            "demo_request_decay7d",
            0.25,
            "0.25 demo requests, weighted by recency (half-life 7 days)",
        ),
        ("demo_request_decay7d", 1.0, "1 demo request, weighted by recency (half-life 7 days)"),
        ("demo_request_decay7d", 1.8, "1.8 demo requests, weighted by recency (half-life 7 days)"),
        (
            "webinar_attendance_decay30d",
            2.0,
            "attended 2 webinars, weighted by recency (half-life 30 days)",
        ),
        ("unsubscribe_decay30d", 1.0, "unsubscribed once, weighted by recency (half-life 30 days)"),
        ("email_open_decay1d", 3.0, "3 email opens, weighted by recency (half-life 1 day)"),
        ("touches_days_since_last", 0.5, "last engaged today"),
        ("touches_days_since_last", 3.2, "last engaged 3 days ago"),
        ("touches_days_since_last", 30.0, "engagement has cooled: no touch in 30 days"),
        ("touches_days_since_last", 45.7, "engagement has cooled: no touch in 45 days"),
        ("touches_days_since_last", NEVER_DAYS, "no engagement yet"),
        ("touches_days_since_last", NAN, "no engagement yet"),
    ],
)
def test_decay_and_recency_read_plainly(name: str, value: float, shown: str) -> None:
    assert catalog.word(name, value, context=EUR) == shown


def test_engagement_cools_when_the_params_say() -> None:
    """``features.cooled_days`` travels in the wording context: it moves the words and the side
    they stand on together."""
    feature = catalog.lookup("touches_days_since_last")
    weekly = catalog.Context(cooled_days=7)
    assert feature.word(10.0, context=weekly) == "engagement has cooled: no touch in 10 days"
    assert feature.word(10.0) == "last engaged 10 days ago"
    assert feature.word(1.0, context=catalog.Context(cooled_days=1)) == (
        "engagement has cooled: no touch in 1 day"
    )
    assert (feature.agrees(10.0, 1.0, weekly), feature.agrees(10.0, -1.0, weekly)) == (False, True)
    assert (feature.agrees(10.0, 1.0), feature.agrees(10.0, -1.0)) == (True, True)
    table = ReasonTable(["touches_days_since_last"], ["engagement recency"], {}, weekly)
    assert table.readings(np.array([[3.0], [10.0], [NEVER_DAYS]])).ravel().tolist() == [0, -1, -1]
    up, down = table.top(np.array([0.4]), np.array([10.0]), 3)
    assert up == []
    assert [r.text for r in down] == []
    up, down = table.top(np.array([-0.4]), np.array([10.0]), 3)
    assert [r.text for r in down] == ["engagement has cooled: no touch in 10 days"]


# ---------------------------------------------------------------- flat exports
def test_flat_columns_are_de_jargoned_or_labelled() -> None:
    assert catalog.word("nr.employed", 4991.6) == "nr employed: 4,992"
    assert catalog.word("emp.var.rate", -1.8) == "emp var rate: -1.8"
    assert catalog.word("age", 41) == "age: 41"  # the client's age, not the lead's
    assert catalog.word("age", NAN) == "age not known"
    labels = {"nr.employed": "employed in the economy (thousands)", "marital": "marital status"}
    context = catalog.Context(currency="EUR", labels=labels)
    assert catalog.word("nr.employed", 5191, None, context) == (
        "employed in the economy (thousands): 5,191"
    )
    assert catalog.word("marital", 0, {"marital": ("married",)}, context) == (
        "marital status: married"
    )
    shape = catalog.Shape(lead_attributes=("marital",), numerics=NUMERICS, labels=labels)
    fields = {f.name: f.business_field for f in catalog.features_of(shape)}
    assert fields == {
        "marital": "marital status",
        "age": "age",
        "nr.employed": "employed in the economy (thousands)",
        "emp.var.rate": "emp var rate",
    }


# ---------------------------------------------------------------- reasons
NAMES = ["sales_opportunity_count", "demo_request_7d", "demo_request_days_since"]
NAMES += ["campaign_converted_lift", "campaign_accepted_lift", "seniority"]
FIELDS = ["earlier sales opportunity", "demo request", "demo request"]
FIELDS += ["campaign track record", "campaign track record", "seniority"]
TABLE = ReasonTable(NAMES, FIELDS, {"seniority": ("manager", "vp")}, EUR)


def reasons(contributions: list[float], row: list[float]) -> tuple[list[str], list[str]]:
    """The words of one lead's reasons, by both paths (which must agree)."""
    c, x = np.array([contributions]), np.array([row])
    one = TABLE.top(c[0], x[0], 3)
    many = TABLE.columns(np.repeat(c, 20, axis=0), np.repeat(x, 20, axis=0), 3).lists()
    assert all(answer == one for answer in many)
    return [r.text for r in one[0]], [r.text for r in one[1]]


def test_the_stage_is_never_a_reason_however_strong() -> None:
    assert "earlier sales opportunity" not in TABLE.fields
    up, down = reasons([3.0, 0.0, 0.0, 0.0, 0.0, 0.2], [1.0, 0, NAN, NAN, NAN, 1.0])
    assert up == ["seniority: vp"]
    assert down == []


def test_a_contradicting_feature_yields_to_an_agreeing_one_of_its_field() -> None:
    """No demo request this week is not why the score is higher; the demo requested 3 days ago
    (same field, also positive) is."""
    up, _ = reasons([0.0, 0.9, 0.3, 0.0, 0.0, 0.1], [0, 0.0, 3.0, NAN, NAN, 1.0])
    assert up == ["requested a demo 3 days ago", "seniority: vp"]


def test_a_field_with_no_agreeing_feature_is_not_offered_and_the_next_one_is() -> None:
    """A better-than-average campaign record pulling the score down is not worded as a minus;
    the record's worse-than-average other target is, and without one the field is skipped."""
    _, down = reasons([0, 0, 0, -0.9, -0.2, -0.1], [0, 0, NAN, 1.7, 0.6, 0.0])
    assert down == [
        "campaign track record: 0.6× the average share of leads accepted",
        "seniority: manager",
    ]
    _, down = reasons([0, 0, 0, -0.9, -0.2, -0.1], [0, 0, NAN, 1.7, 1.3, 0.0])
    assert down == ["seniority: manager"]


def test_a_trained_models_reasons_read_as_they_count(world: World) -> None:
    """On a trained model: no reason is a stage count, says "unknown", reads "never …" or
    "no …" as a plus (unsubscribes and "no … yet" aside), or a track record on the wrong side
    of average."""
    scorer = world.scorer
    X = scorer.engine.matrix_from_frame(world.snapshots.iloc[::3])
    answers = scorer.explain(X, count=5, num_threads=1)
    shown = 0
    for up, down in answers:
        for reason in [*up, *down]:
            shown += 1
            assert not reason.field.startswith("earlier sales ")
            assert "unknown" not in reason.text
            assert "_" not in reason.text
        for reason in up:
            if reason.text.startswith(("no ", "never ", "attended no ", "interacted with no")):
                # what is better absent, or an absence worded "no … yet" (a new campaign)
                assert "unsubscri" in reason.text or reason.text.endswith(" yet"), reason.text
            lift = re.search(r"track record: ([\d.]+)×", reason.text)
            assert lift is None or float(lift.group(1)) > 1
        for reason in down:
            lift = re.search(r"track record: ([\d.]+)×", reason.text)
            assert lift is None or float(lift.group(1)) < 1
            assert "about the average" not in reason.text
    assert shown > 5 * len(X)


def test_withheld_reasons_still_count_in_the_score(world: World) -> None:
    """Nothing is lost between SHAP and the score: the fields' totals plus the contributions of
    features that are never reasons are the model's log-odds minus its base value, and every
    reason shown carries its field's whole total."""
    scorer = world.scorer
    table = scorer.reason_table
    X = scorer.engine.matrix_from_frame(world.snapshots.iloc[:40])
    model = scorer.models[scorer.primary]
    contributions = scorer.contributions(X)  # the scorer's own (tables, pred_contrib ± 1e-9)
    totals = table.totals(contributions)
    never = contributions[:, table.field_of < 0].sum(axis=1)
    assert np.allclose(
        totals.sum(axis=1) + never, model.margin(X) - model.expected_value, atol=1e-9
    )
    assert (table.field_of < 0).sum() == len(contract.SALES_STAGES)
    for i, (up, down) in enumerate(scorer.explain(X, count=len(table.fields))):
        for reason in [*up, *down]:
            assert reason.contribution == totals[i, table.fields.index(reason.field)]


def test_a_mappings_labels_reach_the_fitted_engines_words() -> None:
    """``labels`` travel import.json → make_engine → the fitted engine's wording context and
    business fields (what every reason of a flat-export model reads)."""
    from features.engine.table import make_engine
    from features.params import Params

    labels = {"nr.employed": "employed in the economy (thousands)"}
    manifest = {"categorical": [], "numeric": ["nr.employed"], "labels": labels}
    engine = make_engine(Params(), manifest)
    assert engine.wording_context().labels == labels
    context = engine.wording_context()
    assert catalog.word("nr.employed", 5191, None, context) == (
        "employed in the economy (thousands): 5,191"
    )
    assert make_engine(Params(), {"categorical": [], "numeric": []}).wording_context().labels == {}
