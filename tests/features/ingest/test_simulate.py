"""The simulator must look like a real CRM and be honest about its own truth."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import roc_auc_score

from features import contract
from features.ingest.defects import DEFECT_KINDS
from features.ingest.simulate import simulate
from features.params import GenerateParams, Params

TABLES = ("campaigns", "accounts", "leads", "touches", "sales_events")


def _read(directory: Path, name: str) -> pd.DataFrame:
    return pd.read_parquet(directory / f"{name}.parquet")


def _digest(directory: Path) -> dict[str, str]:
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.glob("*.parquet"))
    }


@pytest.fixture(scope="module")
def outcomes(synthetic_raw: Path, repo_params: Params) -> pd.DataFrame:
    """Per uncensored lead: truth probabilities and the outcomes drawn within the window."""
    window = pd.Timedelta(days=repo_params.quality_lead.window_days)
    leads = _read(synthetic_raw, "leads")[["lead_id", "created_at"]]
    events = _read(synthetic_raw, "sales_events").merge(leads, on="lead_id")
    horizon = max(events["occurred_at"].max(), _read(synthetic_raw, "touches")["occurred_at"].max())
    in_window = (events["occurred_at"] > events["created_at"]) & (
        events["occurred_at"] <= events["created_at"] + window
    )
    frame = leads.merge(_read(synthetic_raw, "truth"), on="lead_id")
    for target, definition in repo_params.targets.items():
        hits = events.loc[in_window & events["stage"].isin(definition.stages), "lead_id"]
        frame[target] = frame["lead_id"].isin(set(hits))
    return frame[frame["created_at"] + window <= horizon]


def test_same_seed_and_size_is_byte_identical(tmp_path: Path) -> None:
    settings = GenerateParams(leads=1500, seed=11)
    simulate(settings, tmp_path / "a")
    simulate(settings, tmp_path / "b")
    simulate(settings.model_copy(update={"seed": 12}), tmp_path / "c")
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a")["touches.parquet"] != _digest(tmp_path / "c")["touches.parquet"]


def test_tables_follow_the_contract_schema(synthetic_raw: Path) -> None:
    for name in TABLES:
        schema = pq.read_schema(synthetic_raw / f"{name}.parquet")
        expected = contract.TABLES[name].arrow_schema()
        assert schema.names == expected.names
        assert [f.type for f in schema] == [f.type for f in expected]
        frame = _read(synthetic_raw, name)
        for column in contract.TABLES[name]:
            values = frame[column.name]
            if not column.nullable:
                assert values.notna().all(), f"{name}.{column.name} has nulls"
            if column.unique:
                assert values.is_unique, f"{name}.{column.name} has duplicates"
            if column.min_value is not None:
                assert (values.dropna() >= column.min_value).all()
            if column.allowed is not None:
                assert set(values.dropna()) <= set(column.allowed)
            if column.known_values:
                assert set(values.dropna()) <= set(column.known_values)


def test_referential_integrity(synthetic_raw: Path) -> None:
    tables = {name: _read(synthetic_raw, name) for name in TABLES}
    for name in TABLES:
        for column in contract.TABLES[name]:
            if column.references:
                parent, key = column.references.split(".")
                children = tables[name][column.name].dropna()
                assert children.isin(tables[parent][key]).all(), f"{name}.{column.name} orphans"


def test_time_rules(synthetic_raw: Path) -> None:
    leads = _read(synthetic_raw, "leads")[["lead_id", "created_at"]]
    campaigns = _read(synthetic_raw, "campaigns")
    assert (
        campaigns["ended_at"].dropna() >= campaigns.loc[campaigns["ended_at"].notna(), "started_at"]
    ).all()
    events = {
        name: _read(synthetic_raw, name).merge(leads, on="lead_id")
        for name in contract.EVENT_TABLES
    }
    horizon = max(frame["occurred_at"].max() for frame in events.values())
    assert leads["created_at"].max() <= horizon
    sales = events["sales_events"]
    closed_at = (
        sales[sales["stage"].isin(contract.CLOSING_STAGES)].groupby("lead_id")["occurred_at"].min()
    )
    for name, frame in events.items():
        assert (frame["occurred_at"] >= frame["created_at"]).all(), f"{name} before creation"
        after_close = frame["occurred_at"] > frame["lead_id"].map(closed_at)
        assert not after_close.any(), f"{name} after won/lost"
    # Recent leads are still open at the horizon: censoring happens naturally.
    recent = leads[leads["created_at"] > horizon - pd.Timedelta(days=30)]
    closed = set(closed_at.index)
    assert recent["lead_id"].isin(closed).mean() < 0.1


def test_realistic_shape(synthetic_raw: Path) -> None:
    leads = _read(synthetic_raw, "leads")
    campaigns = _read(synthetic_raw, "campaigns")
    touches = _read(synthetic_raw, "touches")
    assert campaigns["channel"].nunique() >= 8
    spend_per_lead = (
        campaigns.groupby("channel")["spend"].sum()
        / leads.merge(campaigns, on="campaign_id").groupby("channel").size()
    )
    assert spend_per_lead.max() > 5 * spend_per_lead.min()
    span = leads["created_at"].max() - leads["created_at"].min()
    assert span >= pd.Timedelta(days=18 * 30)
    weekday = leads["created_at"].dt.day_of_week
    assert (weekday < 5).mean() > 0.8
    monthly = leads.groupby(leads["created_at"].dt.strftime("%Y-%m")).size()
    assert monthly.iloc[-4:-1].mean() > 1.3 * monthly.iloc[:3].mean()
    per_account = leads["account_id"].value_counts()
    assert per_account.max() >= 20
    assert per_account.median() <= 5
    assert set(touches["touch_type"]) == set(contract.TOUCH_TYPES)
    assert 15 <= len(touches) / len(leads) <= 25
    accounts = _read(synthetic_raw, "accounts")
    assert accounts["employees"].max() > 100 * accounts["employees"].median()


def test_base_rates_and_signal(outcomes: pd.DataFrame) -> None:
    assert 0.20 <= outcomes["accepted"].mean() <= 0.40
    assert 0.02 <= outcomes["converted"].mean() <= 0.08
    auc = roc_auc_score(outcomes["converted"], outcomes["p_converted"])
    assert 0.80 <= auc <= 0.92


@pytest.mark.parametrize("target", ["accepted", "converted"])
def test_truth_is_calibrated(outcomes: pd.DataFrame, target: str) -> None:
    probability = outcomes[f"p_{target}"]
    bins = pd.qcut(probability, 10, duplicates="drop")
    grouped = outcomes.groupby(bins, observed=True).agg(
        p=(f"p_{target}", "mean"), y=(target, "mean"), n=(target, "size")
    )
    tolerance = 4 * np.sqrt(grouped["p"] * (1 - grouped["p"]) / grouped["n"]) + 0.005
    assert ((grouped["p"] - grouped["y"]).abs() <= tolerance).all(), grouped


def test_sales_cycles_are_longer_for_larger_accounts(synthetic_raw: Path) -> None:
    leads = _read(synthetic_raw, "leads").merge(_read(synthetic_raw, "accounts"), on="account_id")
    won = _read(synthetic_raw, "sales_events").query("stage == 'won'").merge(leads, on="lead_id")
    days = (won["occurred_at"] - won["created_at"]).dt.total_seconds() / 86400
    assert days.min() < 14
    assert days.max() > 90
    large = won["employees"] >= won["employees"].quantile(0.8)
    assert days[large].median() > days[~large].median()
    reps = _read(synthetic_raw, "sales_events").pivot_table(
        index="owner_id", columns="stage", values="lead_id", aggfunc="count"
    )
    acceptance = reps["accepted"] / (reps["accepted"] + reps["rejected"])
    assert acceptance.max() - acceptance.min() > 0.15


def test_dirty_produces_every_defect_kind(dirty_raw: Path) -> None:
    manifest = _read(dirty_raw, "defects")
    assert set(manifest["kind"]) == set(DEFECT_KINDS)
    leads = _read(dirty_raw, "leads")
    touches = _read(dirty_raw, "touches")
    events = _read(dirty_raw, "sales_events")
    campaigns = _read(dirty_raw, "campaigns")
    assert leads["lead_id"].duplicated().any()
    assert leads["created_at"].isna().any()
    assert not touches["lead_id"].isin(leads["lead_id"]).all()
    created = touches["lead_id"].map(
        leads.drop_duplicates("lead_id").set_index("lead_id")["created_at"]
    )
    assert (touches["occurred_at"] < created).any()
    assert not set(events["stage"]) <= set(contract.SALES_STAGES)
    assert (campaigns["spend"] < 0).any()
    assert (events["amount"] < 0).any()
    assert not set(touches["touch_type"]) <= set(contract.TOUCH_TYPES)
    horizon = leads["created_at"].max()
    assert (events["occurred_at"] > horizon + pd.Timedelta(days=5)).any()
    # Defects stay rare, so validation quarantines rather than fails at default thresholds.
    assert len(manifest) < 0.01 * (len(leads) + len(touches) + len(events))
