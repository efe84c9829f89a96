"""The feature catalog declares each feature once, and the engine lists its features from it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features import contract
from features.engine import catalog
from features.engine.catalog import OTHER
from features.engine.engine import FeatureEngine
from features.ingest.simulate import simulate
from features.params import GenerateParams

TARGETS = {"accepted": ("accepted", "opportunity", "won"), "converted": ("won",)}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pd.DataFrame]:
    out = tmp_path_factory.mktemp("catalog-world")
    simulate(GenerateParams(leads=600, seed=5), out)
    return {name: pd.read_parquet(out / f"{name}.parquet") for name in contract.TABLES}


@pytest.fixture(scope="module")
def engine(world: dict[str, pd.DataFrame]) -> FeatureEngine:
    return FeatureEngine(targets=TARGETS).fit(world, contract.data_horizon(world))


@pytest.fixture(scope="module")
def flat_engine() -> FeatureEngine:
    leads = pd.DataFrame(
        {
            "lead_id": [f"row-{i}" for i in range(40)],
            "created_at": pd.date_range("2020-01-01", periods=40, freq="min", tz="UTC"),
            "seniority": ["vp", "manager"] * 20,
            "marital": ["married", "single"] * 20,
            "age": np.arange(40, dtype=float),
            "nr.employed": np.full(40, 4991.6),
        }
    )
    return FeatureEngine(
        min_category_count=1, extra_categorical=("marital",), extra_numeric=("age", "nr.employed")
    ).fit({"leads": leads}, leads["created_at"].max())


def _historic_names(engine: FeatureEngine) -> list[str]:
    """The engine's feature layout, written out (the model's matrix depends on it): the
    layout before the catalog, with each touch type's decayed counts after its days since and
    the days since the last engagement after the trend (issue 17)."""
    names = [*engine.lead_categoricals_, *engine.numerics_, "lead_age_days"]
    names += ["channel", "campaign_daily_spend", "campaign_daily_leads", "campaign_spend_per_lead"]
    names += ["industry", "account_employees", "account_annual_revenue", "account_earlier_leads"]
    names += ["account_opportunities", "account_wins"]
    for touch in (*engine.touch_types_, OTHER):
        names += [f"{touch}_{days}d" for days in engine.windows_days]
        names += [f"{touch}_all", f"{touch}_days_since"]
        names += [f"{touch}_decay{days}d" for days in engine.half_lives_days]
    names += ["touches_trend", "touches_days_since_last", "distinct_campaigns"]
    names += [f"sales_{stage}_count" for stage in contract.SALES_STAGES]
    names += ["sales_recycled", "sales_days_since_last"]
    names += [f"{level}_{t}_lift" for t in TARGETS for level in ("campaign", "channel")]
    return names


def test_feature_names_and_order_unchanged(engine: FeatureEngine) -> None:
    assert engine.feature_names_ == _historic_names(engine)
    assert engine.categorical_features_ == [*engine.lead_categoricals_, "channel", "industry"]


def test_every_engine_feature_has_exactly_one_declaration(
    engine: FeatureEngine, flat_engine: FeatureEngine
) -> None:
    for fitted in (engine, flat_engine):
        attributes = {*fitted.lead_categoricals_, *fitted.numerics_}
        assert len(set(fitted.feature_names_)) == len(fitted.feature_names_)
        for info in fitted.features_:
            claims = [
                d
                for d in catalog.declarations()
                if not d.fallback and d.kind == info.kind and d.pattern.fullmatch(info.name)
            ]
            # Lead attributes are the names no other declaration claims.
            assert len(claims) == (0 if info.name in attributes else 1), info.name
            found = catalog.lookup(info.name, info.kind == "categorical")
            # from its name alone, the trend's period is unknown ("N"); the engine knows it
            described = info.description
            if info.name == "touches_trend":
                described = described.replace(f" {fitted.trend_days} days", " N days")
            assert (found.family, found.kind, found.business_field, found.description) == (
                info.family,
                info.kind,
                info.business_field,
                described,
            ), info.name


def test_contract_columns_take_the_contracts_business_field(engine: FeatureEngine) -> None:
    fields = {info.name: info.business_field for info in engine.features_}
    for name in engine.lead_categoricals_:
        assert fields[name] == contract.LEADS.column(name).business_field
    assert fields["industry"] == contract.ACCOUNTS.column("industry").business_field
    assert fields["account_employees"] == contract.ACCOUNTS.column("employees").business_field
    assert fields["channel"] == contract.CAMPAIGNS.column("channel").business_field
    assert fields["lead_age_days"] == contract.LEADS.column("created_at").business_field
    assert fields["campaign_spend_per_lead"] == contract.CAMPAIGNS.column("spend").business_field
    for declaration in catalog.declarations():
        if declaration.source is None or "{" in declaration.source:
            continue
        table, column = declaration.source.split(".")
        assert contract.TABLES[table].column(column).business_field, declaration.source


def test_company_revenue_is_its_own_field(engine: FeatureEngine) -> None:
    info = engine.features_[engine.feature_names_.index("account_annual_revenue")]
    assert info.business_field == "company revenue"
    assert info.business_field == contract.ACCOUNTS.column("annual_revenue").business_field
    text = catalog.word("account_annual_revenue", 2.5e6, context=catalog.Context("EUR"))
    assert text == "company revenue: 2.5 million EUR"
    assert text.startswith(f"{info.business_field}:")
    size = engine.features_[engine.feature_names_.index("account_employees")]
    assert size.business_field == "company size" != info.business_field


def test_flat_exports_read_their_columns_plainly(flat_engine: FeatureEngine) -> None:
    assert flat_engine.feature_names_ == ["seniority", "marital", "age", "nr.employed"]
    spec = {f["name"]: f for f in flat_engine.feature_spec()}
    assert spec["seniority"]["business_field"] == "seniority"
    assert spec["marital"]["business_field"] == "marital"
    assert spec["age"]["business_field"] == "age"
    assert spec["age"]["type"] == "numeric"
    assert "flat export" in spec["nr.employed"]["description"]
    assert spec["seniority"]["description"] == contract.LEADS.column("seniority").description


def test_adding_a_declaration_adds_a_feature_description(
    engine: FeatureEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    added = catalog.Declaration(
        "campaign_age_days",
        "campaign",
        "days since the source campaign started",
        lambda value, slots, context: f"source campaign started {catalog.days_ago(value)}",
        field="source campaign",
        when=lambda shape: shape.campaigns,
    )
    before = engine._describe_features()
    monkeypatch.setattr(catalog, "CATALOG", (*catalog.CATALOG, added))
    after = engine._describe_features()
    assert after[: len(before)] == before
    [new] = after[len(before) :]
    assert (new.name, new.family, new.kind, new.business_field, new.description) == (
        "campaign_age_days",
        "campaign",
        "numeric",
        "source campaign",
        "days since the source campaign started",
    )


def test_touch_features_follow_the_engines_touch_types() -> None:
    shape = catalog.Shape(
        touches=True, touch_types=("web_visit", "chat"), windows_days=(1, 14), half_lives_days=(3,)
    )
    touches = [f for f in catalog.features_of(shape) if f.family == "touches"]
    assert [f.name for f in touches][:10] == [
        "web_visit_1d",
        "web_visit_14d",
        "web_visit_all",
        "web_visit_days_since",
        "web_visit_decay3d",
        "chat_1d",
        "chat_14d",
        "chat_all",
        "chat_days_since",
        "chat_decay3d",
    ]
    chat = touches[5]
    assert chat.business_field == "chat"
    assert chat.word(2.0) == "2 'chat' touches in the last day"
    assert touches[9].business_field == "chat"
    assert touches[9].word(1.25) == "1.2 'chat' touches, weighted by recency (half-life 3 days)"
    lead_level = [f.name for f in touches[-3:]]
    assert lead_level == ["touches_trend", "touches_days_since_last", "distinct_campaigns"]
    without = catalog.Shape(touches=True, touch_types=("chat",), half_lives_days=())
    assert not [f for f in catalog.features_of(without) if "decay" in f.name]


def test_every_contract_touch_type_and_stage_has_words() -> None:
    assert set(catalog.TOUCHES) == {*contract.TOUCH_TYPES, OTHER}
    assert set(catalog.STAGE_WORDS) == set(contract.SALES_STAGES)
    fields = [catalog.touch_words(t).field for t in catalog.TOUCHES]
    assert len(set(fields)) == len(fields)


def test_feature_spec_and_model_card_descriptions_come_from_the_catalog(
    engine: FeatureEngine,
) -> None:
    spec = {f["name"]: f for f in engine.feature_spec()}
    assert spec["demo_request_days_since"]["description"] == catalog.description(
        "demo_request_days_since"
    )
    assert "last 7 days minus the 7 days before" in spec["touches_trend"]["description"]
    assert "last N days minus the N days before" in catalog.description("touches_trend")
    assert catalog.description("age") == "`age`, a column declared in the flat export's mapping"
