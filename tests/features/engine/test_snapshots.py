"""Snapshots and labels: the window, censoring, closed leads, and the time-ordered split."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from features import contract
from features.engine.snapshots import SPLITS, assign_split, build_snapshots
from features.params import SplitParams

START = pd.Timestamp("2024-01-01", tz="UTC")
TARGETS = {"accepted": ("accepted", "opportunity", "won"), "converted": ("won",)}
OFFSETS = (0, 7, 14, 30)
WINDOW = 90

event = st.tuples(
    st.integers(min_value=0, max_value=200 * 24), st.sampled_from(contract.SALES_STAGES)
)


@settings(max_examples=200, deadline=None)
@given(events=st.lists(event, max_size=8), horizon_days=st.integers(min_value=0, max_value=250))
def test_labels_window_censoring_and_closed_leads(events: list, horizon_days: int) -> None:
    leads = pd.DataFrame({"lead_id": ["L1"], "created_at": [START]})
    sales = pd.DataFrame(
        {
            "lead_id": ["L1"] * len(events),
            "occurred_at": pd.to_datetime(
                [START + pd.Timedelta(hours=h) for h, _ in events], utc=True
            ),
            "stage": pd.Series([stage for _, stage in events], dtype=object),
        }
    )
    horizon = START + pd.Timedelta(days=horizon_days)
    snaps = build_snapshots(leads, sales, OFFSETS, horizon, WINDOW, TARGETS)
    expected_offsets = []
    for offset in OFFSETS:
        as_of = START + pd.Timedelta(days=offset)
        if as_of > horizon:
            continue
        earlier = sales[sales["occurred_at"] < as_of].sort_values("occurred_at", kind="stable")
        if len(earlier) and earlier["stage"].iloc[-1] in contract.CLOSED_STAGES:
            continue  # closed: no snapshot
        expected_offsets.append(offset)
        row = snaps[snaps["as_of"] == as_of]
        assert len(row) == 1
        for target, stages in TARGETS.items():
            label = row[f"label_{target}"].iloc[0]
            if as_of + pd.Timedelta(days=WINDOW) > horizon:
                assert np.isnan(label)  # censored
                continue
            inside = sales[
                (sales["occurred_at"] > as_of)
                & (sales["occurred_at"] <= as_of + pd.Timedelta(days=WINDOW))
                & sales["stage"].isin(stages)
            ]
            assert label == float(len(inside) > 0)
    assert len(snaps) == len(expected_offsets)


def test_label_window_edges() -> None:
    leads = pd.DataFrame({"lead_id": ["a", "b", "c"], "created_at": [START] * 3})
    sales = pd.DataFrame(
        {
            "lead_id": ["a", "b", "c"],
            "occurred_at": [
                START,
                START + pd.Timedelta(days=WINDOW),
                START + pd.Timedelta(days=WINDOW, milliseconds=1),
            ],
            "stage": ["won", "won", "won"],
        }
    )
    horizon = START + pd.Timedelta(days=400)
    snaps = build_snapshots(leads, sales, (0,), horizon, WINDOW, TARGETS).set_index("lead_id")
    # At as_of itself: not in (as_of, as_of + window]; exactly at the end: inside; after: not.
    assert snaps.loc["a", "label_converted"] == 0.0
    assert snaps.loc["b", "label_converted"] == 1.0
    assert snaps.loc["c", "label_converted"] == 0.0


def test_time_ordered_split_respects_time_and_shares() -> None:
    rng = np.random.default_rng(0)
    as_of = START + pd.to_timedelta(rng.integers(0, 500, 5000), unit="D")
    snaps = pd.DataFrame(
        {"as_of": as_of, "label_converted": (rng.random(5000) < 0.1).astype(float)}
    )
    snaps.loc[snaps["as_of"] > START + pd.Timedelta(days=450), "label_converted"] = np.nan
    split = assign_split(snaps, SplitParams(), "label_converted")
    order = {name: i for i, name in enumerate(SPLITS)}
    ranks = split.map(order)
    latest = snaps.groupby(ranks)["as_of"].max()
    earliest = snaps.groupby(ranks)["as_of"].min()
    assert (latest.iloc[:-1].to_numpy() <= earliest.iloc[1:].to_numpy()).all()
    labelled = snaps["label_converted"].notna()
    shares = split[labelled].value_counts(normalize=True)
    assert abs(shares["train"] - 0.6) < 0.02
    assert abs(shares["test"] - 0.2) < 0.02
    assert (split[~labelled] == "test").all()


def test_random_split_is_stratified() -> None:
    labels = np.r_[np.ones(100), np.zeros(900)]
    snaps = pd.DataFrame({"as_of": START, "label_converted": labels})
    split = assign_split(snaps, SplitParams(), "label_converted", random=True)
    rates = snaps.groupby(split)["label_converted"].mean()
    assert set(split) == set(SPLITS)
    assert (abs(rates - 0.1) < 0.02).all()
