"""The feature engine never sees the future, and training and serving compute the same bits."""

from __future__ import annotations

import datetime as dt
import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features import contract
from features.engine import engine as engine_module
from features.engine.catalog import NEVER_DAYS, OTHER
from features.engine.engine import FeatureEngine, lead_ranges
from features.engine.snapshots import build_snapshots
from features.engine.timelines import timestamp_ms
from features.ingest.simulate import simulate
from features.params import GenerateParams, Params

TARGETS = {"accepted": ("accepted", "opportunity", "won"), "converted": ("won",)}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pd.DataFrame]:
    out = tmp_path_factory.mktemp("engine-world")
    simulate(GenerateParams(leads=3000, seed=5), out)
    return {name: pd.read_parquet(out / f"{name}.parquet") for name in contract.TABLES}


@pytest.fixture(scope="module")
def horizon(world: dict[str, pd.DataFrame]) -> pd.Timestamp:
    return contract.data_horizon(world)


@pytest.fixture(scope="module")
def engine(world: dict[str, pd.DataFrame], horizon: pd.Timestamp) -> FeatureEngine:
    return FeatureEngine(targets=TARGETS).fit(world, horizon)


@pytest.fixture(scope="module")
def snapshots(world: dict[str, pd.DataFrame], horizon: pd.Timestamp) -> pd.DataFrame:
    return build_snapshots(
        world["leads"], world["sales_events"], (0, 7, 14, 30), horizon, 90, TARGETS
    )


@pytest.fixture(scope="module")
def batch(
    engine: FeatureEngine, world: dict[str, pd.DataFrame], snapshots: pd.DataFrame
) -> np.ndarray:
    return engine.transform(snapshots, world["leads"], world["touches"], world["sales_events"])


def _records(frame: pd.DataFrame) -> list[dict]:
    return frame.to_dict("records")


def _history(world: dict[str, pd.DataFrame], lead_id: str) -> tuple[dict, list, list]:
    lead = world["leads"].set_index("lead_id", drop=False).loc[lead_id].to_dict()
    touches = world["touches"][world["touches"]["lead_id"] == lead_id]
    sales = world["sales_events"][world["sales_events"]["lead_id"] == lead_id]
    return lead, _records(touches), _records(sales)


def test_train_serve_equality_bit_for_bit(
    engine: FeatureEngine,
    world: dict[str, pd.DataFrame],
    snapshots: pd.DataFrame,
    batch: np.ndarray,
) -> None:
    rng = np.random.default_rng(0)
    for row in rng.choice(len(snapshots), size=300, replace=False):
        snapshot = snapshots.iloc[row]
        lead, touches, sales = _history(world, snapshot["lead_id"])
        as_of = snapshot["as_of"]
        # The API receives the lead's history up to as_of.
        single = engine.transform_one(
            lead,
            [t for t in touches if t["occurred_at"] < as_of],
            [s for s in sales if s["occurred_at"] < as_of],
            as_of,
        )
        assert np.array_equal(single, batch[row], equal_nan=True), snapshot.to_dict()
        assert single.dtype == batch.dtype == np.float64


def test_categories_survive_into_frames(engine: FeatureEngine, batch: np.ndarray) -> None:
    frame = engine.feature_frame(batch[:50])
    for name in engine.categorical_features_:
        assert list(frame[name].cat.categories) == [*engine.vocabulary(name), OTHER]


events_strategy = st.lists(
    st.tuples(
        st.integers(min_value=-40 * 24, max_value=40 * 24),  # hours from as_of
        st.sampled_from([*contract.TOUCH_TYPES, "Demo_Request", "carrier_pigeon"]),
    ),
    max_size=25,
)
stage_strategy = st.lists(
    st.tuples(
        st.integers(min_value=-40 * 24, max_value=40 * 24), st.sampled_from(contract.SALES_STAGES)
    ),
    max_size=6,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    past=events_strategy,
    future=events_strategy,
    past_sales=stage_strategy,
    future_sales=stage_strategy,
    lead_row=st.integers(min_value=0, max_value=2999),
    offset_hours=st.integers(min_value=0, max_value=60 * 24),
)
def test_events_at_or_after_as_of_never_change_features(
    engine: FeatureEngine,
    world: dict[str, pd.DataFrame],
    past: list,
    future: list,
    past_sales: list,
    future_sales: list,
    lead_row: int,
    offset_hours: int,
) -> None:
    lead = world["leads"].iloc[lead_row].to_dict()
    as_of = lead["created_at"] + pd.Timedelta(hours=offset_hours)
    campaigns = world["campaigns"]["campaign_id"].tolist()

    def touches(events: list, future_side: bool) -> list[dict]:
        out = []
        for i, (hours, kind) in enumerate(events):
            when = (
                as_of + pd.Timedelta(hours=abs(hours))
                if future_side
                else (as_of - pd.Timedelta(hours=abs(hours), milliseconds=1))
            )
            out.append(
                {
                    "occurred_at": when,
                    "touch_type": kind,
                    "campaign_id": campaigns[i % len(campaigns)],
                }
            )
        return out

    def sales(events: list, future_side: bool) -> list[dict]:
        return [
            {
                "occurred_at": as_of + pd.Timedelta(hours=abs(h))
                if future_side
                else as_of - pd.Timedelta(hours=abs(h), milliseconds=1),
                "stage": stage,
            }
            for h, stage in events
        ]

    before = engine.transform_one(lead, touches(past, False), sales(past_sales, False), as_of)
    with_future = engine.transform_one(
        lead,
        touches(past, False) + touches(future, True),
        sales(past_sales, False) + sales(future_sales, True),
        as_of,
    )
    assert np.array_equal(before, with_future, equal_nan=True)
    # Exactly at as_of counts as the future too.
    at_as_of = [{"occurred_at": as_of, "touch_type": "demo_request", "campaign_id": None}]
    same = engine.transform_one(
        lead, touches(past, False) + at_as_of, sales(past_sales, False), as_of
    )
    assert np.array_equal(before, same, equal_nan=True)


def test_batch_ignores_future_rows(
    engine: FeatureEngine,
    world: dict[str, pd.DataFrame],
    snapshots: pd.DataFrame,
    batch: np.ndarray,
) -> None:
    sample = snapshots.sample(400, random_state=1)
    as_of = sample.set_index("lead_id")["as_of"].groupby(level=0).min()
    past_touches = world["touches"][
        world["touches"]["occurred_at"] < world["touches"]["lead_id"].map(as_of)
    ]
    past_sales = world["sales_events"][
        world["sales_events"]["occurred_at"] < world["sales_events"]["lead_id"].map(as_of)
    ]
    earliest = sample[sample["as_of"] == sample["lead_id"].map(as_of)]
    trimmed = engine.transform(earliest, world["leads"], past_touches, past_sales)
    assert np.array_equal(trimmed, batch[earliest.index.to_numpy()], equal_nan=True)


def test_rates_never_use_outcomes_maturing_at_or_after_as_of(
    world: dict[str, pd.DataFrame],
    horizon: pd.Timestamp,
) -> None:
    leads = world["leads"]
    cut = leads["created_at"].quantile(0.6) + pd.Timedelta(days=90)
    reference = FeatureEngine(targets=TARGETS).fit(world, horizon)
    # Flip every outcome that matures at or after the cut: wins become losses and vice versa.
    matures_late = leads.loc[leads["created_at"] + pd.Timedelta(days=90) >= cut, "lead_id"]
    sales = world["sales_events"].copy()
    late = sales["lead_id"].isin(set(matures_late))
    sales.loc[late & (sales["stage"] == "won"), "stage"] = "lost"
    changed = FeatureEngine(targets=TARGETS).fit({**world, "sales_events": sales}, horizon)
    probe = leads.sample(200, random_state=2)
    rate_columns = [n for n in reference.feature_names_ if n.endswith("_lift")]
    columns = [reference.feature_names_.index(n) for n in rate_columns]
    for as_of in (cut - pd.Timedelta(days=30), cut):
        snaps = pd.DataFrame({"lead_id": probe["lead_id"], "as_of": as_of})
        a = reference.transform(snaps, leads)[:, columns]
        b = changed.transform(snaps, leads)[:, columns]
        assert np.array_equal(a, b, equal_nan=True)
    later = pd.DataFrame({"lead_id": probe["lead_id"], "as_of": horizon})
    converted = [i for i, n in zip(columns, rate_columns, strict=True) if "converted" in n]
    assert not np.array_equal(
        reference.transform(later, leads)[:, converted],
        changed.transform(later, leads)[:, converted],
        equal_nan=True,
    )


def test_unknown_everything_gives_defined_values(engine: FeatureEngine) -> None:
    lead = {
        "lead_id": "new",
        "created_at": dt.datetime(2031, 1, 1, tzinfo=dt.UTC),
        "campaign_id": "campaign-never-seen",
        "account_id": "account-never-seen",
        "source": "carrier pigeon",
        "seniority": "Galactic Emperor",
        "country": None,
    }
    row = engine.transform_one(lead, [], [], dt.datetime(2031, 1, 2, tzinfo=dt.UTC))
    names = engine.feature_names_
    frame = engine.feature_frame(row[None, :])
    assert frame.loc[0, "source"] == OTHER
    assert frame.loc[0, "seniority"] == OTHER
    assert pd.isna(frame.loc[0, "country"])
    assert row[names.index("lead_age_days")] == 1.0
    assert row[names.index("demo_request_all")] == 0.0
    assert row[names.index("demo_request_days_since")] == NEVER_DAYS
    assert np.isnan(row[names.index("account_earlier_leads")])
    lift = row[names.index("campaign_converted_lift")]
    assert lift == pytest.approx(1.0)  # an unknown campaign has the global matured rate


def test_mixed_case_and_unknown_touch_types(
    engine: FeatureEngine, world: dict[str, pd.DataFrame]
) -> None:
    lead = world["leads"].iloc[10].to_dict()
    as_of = lead["created_at"] + pd.Timedelta(days=10)
    when = as_of - pd.Timedelta(days=1)
    row = engine.transform_one(
        lead,
        [
            {"occurred_at": when, "touch_type": " Demo_Request "},
            {"occurred_at": when, "touch_type": "carrier_pigeon"},
        ],
        [],
        as_of,
    )
    names = engine.feature_names_
    assert row[names.index("demo_request_7d")] == 1.0
    assert row[names.index(f"{OTHER}_7d")] == 1.0
    assert row[names.index("demo_request_days_since")] == pytest.approx(1.0)


def test_flat_mode_uses_declared_columns_only(tmp_path: Path) -> None:
    leads = pd.DataFrame(
        {
            "lead_id": [f"row-{i}" for i in range(40)],
            "created_at": pd.date_range("2020-01-01", periods=40, freq="min", tz="UTC"),
            "job": ["admin", "technician"] * 20,
            "age": np.arange(40, dtype=float),
            "outcome_converted": [True, False] * 20,
        }
    )
    engine = FeatureEngine(
        min_category_count=1, extra_categorical=("job",), extra_numeric=("age",)
    ).fit({"leads": leads}, leads["created_at"].max())
    assert engine.feature_names_ == ["job", "age"]
    row = engine.transform_one({"created_at": "2020-01-01", "job": "admin", "age": 3}, as_of=None)
    assert list(row) == [0.0, 3.0]


def test_engine_init_only_stores_params() -> None:
    engine = FeatureEngine(windows_days=(3,), rate_smoothing=5.0)
    assert engine.windows_days == (3,)
    assert not [name for name in vars(engine) if name.endswith("_")]


def test_fit_holds_all_state_transforms_only_read_it(
    world: dict[str, pd.DataFrame], horizon: pd.Timestamp, snapshots: pd.DataFrame
) -> None:
    engine = FeatureEngine(targets=TARGETS).fit(world, horizon)
    names = engine.feature_names_
    assert engine.feature_positions_ == {name: i for i, name in enumerate(names)}
    assert set(engine.vocabulary_index_) == set(engine.vocabularies_)
    assert list(engine.kind_index_["touch_type"]) == list(engine.touch_types_)
    assert list(engine.kind_index_["stage"]) == list(contract.SALES_STAGES)
    state = dict(vars(engine))
    lookups = {
        name: {key: dict(value) for key, value in getattr(engine, name).items()}
        for name in ("vocabulary_index_", "kind_index_")
    }
    engine.transform(snapshots.iloc[:200], world["leads"], world["touches"], world["sales_events"])
    lead, touches, sales = _history(world, snapshots["lead_id"].iloc[0])
    engine.transform_one(lead, touches, sales, horizon)
    assert vars(engine).keys() == state.keys()
    assert all(vars(engine)[name] is value for name, value in state.items())
    assert engine.feature_positions_ == {name: i for i, name in enumerate(names)}
    for name, value in lookups.items():
        assert getattr(engine, name) == value


def test_partitions_equal_whole(
    engine: FeatureEngine,
    world: dict[str, pd.DataFrame],
    snapshots: pd.DataFrame,
    batch: np.ndarray,
    repo_params: Params,
) -> None:
    del repo_params
    leads = world["leads"]
    half = leads["lead_id"].iloc[: len(leads) // 2]
    rows = snapshots["lead_id"].isin(set(half)).to_numpy()
    part = engine.transform(
        snapshots[rows],
        leads[leads["lead_id"].isin(half)],
        world["touches"][world["touches"]["lead_id"].isin(half)],
        world["sales_events"][world["sales_events"]["lead_id"].isin(half)],
    )
    assert np.array_equal(part, batch[rows], equal_nan=True)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=st.lists(st.integers(0, 2999), min_size=1, max_size=20, unique=True),
    text=st.one_of(st.none(), st.text(max_size=40)),
)
def test_identity_fields_never_change_features(
    engine: FeatureEngine,
    world: dict[str, pd.DataFrame],
    horizon: pd.Timestamp,
    rows: list[int],
    text: str | None,
) -> None:
    """Names, e-mails, phones and companies are shown to sales, never learned from: the
    engine fitted on them has no feature of theirs, and any value in them (or none) leaves
    every feature of every lead as it was."""
    assert all(name in world["leads"] for name in contract.IDENTITY_FIELDS)  # simulated
    assert not set(contract.IDENTITY_FIELDS) & set(engine.feature_names_)
    assert not set(contract.IDENTITY_FIELDS) & set(engine.lead_categoricals_)
    leads = world["leads"].iloc[rows]
    snapshots = pd.DataFrame({"lead_id": leads["lead_id"].to_numpy(), "as_of": horizon})
    before = engine.transform(snapshots, leads, world["touches"], world["sales_events"])
    changed = leads.assign(**dict.fromkeys(contract.IDENTITY_FIELDS, text))
    after = engine.transform(snapshots, changed, world["touches"], world["sales_events"])
    assert np.array_equal(before, after, equal_nan=True)
    dropped = leads.drop(columns=list(contract.IDENTITY_FIELDS))
    single = engine.transform_one(dropped.iloc[0].to_dict(), [], [], horizon)
    with_identity = engine.transform_one(changed.iloc[0].to_dict(), [], [], horizon)
    assert np.array_equal(single, with_identity, equal_nan=True)


def test_distinct_campaigns_equals_its_definition(
    engine: FeatureEngine,
    world: dict[str, pd.DataFrame],
    snapshots: pd.DataFrame,
    batch: np.ndarray,
) -> None:
    """Per snapshot: the number of different known campaigns the lead touched before as_of
    (millisecond resolution, as every time in the engine), counted here the plain way."""
    touches = world["touches"]
    known = touches["campaign_id"].astype("object").isin(set(engine.campaign_ids_))
    touches = touches[known.to_numpy()]
    touched_ms = pd.to_datetime(touches["occurred_at"], utc=True).dt.as_unit("ms").astype("int64")
    by_lead = {
        str(lead): (ms.to_numpy(), group.to_numpy())
        for (lead, ms), (_, group) in zip(
            touched_ms.groupby(touches["lead_id"].astype(str)),
            touches["campaign_id"].groupby(touches["lead_id"].astype(str)),
            strict=True,
        )
    }
    as_of_ms = pd.to_datetime(snapshots["as_of"], utc=True).dt.as_unit("ms").astype("int64")
    expected = []
    for lead, cut in zip(snapshots["lead_id"].astype(str), as_of_ms, strict=True):
        ms, campaigns = by_lead.get(lead, (np.array([], np.int64), np.array([], object)))
        expected.append(len(set(campaigns[ms < cut])))
    column = engine.feature_names_.index("distinct_campaigns")
    assert batch[:, column].tolist() == [float(v) for v in expected]
    assert max(expected) >= 3  # leads with several campaigns are part of the check


def test_both_ways_of_finding_first_touches_agree(
    engine: FeatureEngine,
    world: dict[str, pd.DataFrame],
    snapshots: pd.DataFrame,
    batch: np.ndarray,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The hashed pairs (batches) and the lexsort (few touches, one lead) give the same bits."""
    from features.engine import engine as module

    assert (world["touches"]["campaign_id"].notna()).sum() >= module.HASHED_PAIRS  # hashed
    monkeypatch.setattr(module, "HASHED_PAIRS", 10**12)
    sorted_way = engine.transform(
        snapshots, world["leads"], world["touches"], world["sales_events"]
    )
    assert np.array_equal(sorted_way, batch, equal_nan=True)


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(threads=st.integers(2, 7), seed=st.integers(0, 2**32 - 1))
def test_threads_give_the_same_bits_as_one(
    engine: FeatureEngine,
    world: dict[str, pd.DataFrame],
    snapshots: pd.DataFrame,
    batch: np.ndarray,
    threads: int,
    seed: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Any subset of snapshots in any order, cut into lead ranges (and the events into row
    # slices) on several threads, gives the rows one thread gives.
    monkeypatch.setattr(engine_module, "PARALLEL_SNAPSHOTS", 1)
    monkeypatch.setattr(engine_module, "PARALLEL_EVENTS", 1)
    rng = np.random.default_rng(seed)
    rows = rng.permutation(len(snapshots))[: rng.integers(1, len(snapshots) + 1)]
    matrix = engine.transform(
        snapshots.iloc[rows],
        world["leads"],
        world["touches"],
        world["sales_events"],
        threads=threads,
    )
    assert np.array_equal(matrix, batch[rows], equal_nan=True)


@given(
    leads=st.lists(st.integers(0, 30), min_size=1, max_size=200),
    parts=st.integers(1, 9),
)
def test_lead_ranges_cover_every_query_once_and_never_split_a_lead(
    leads: list[int], parts: int
) -> None:
    query_lead = np.sort(np.array(leads, dtype=np.int64))
    ranges = lead_ranges(query_lead, 31, parts)
    assert 1 <= len(ranges) <= parts
    assert ranges[0][0] == 0
    assert ranges[-1][1] == 31
    assert ranges[0][2] == 0
    assert ranges[-1][3] == len(query_lead)
    for (_, end, _, stop), (first, _, start, _) in itertools.pairwise(ranges):
        assert end == first
        assert stop == start
    for first, end, start, stop in ranges:
        assert stop > start
        assert ((query_lead[start:stop] >= first) & (query_lead[start:stop] < end)).all()


# ------------------------------------------------------------ decay and recency (issue 17)
def _touch(as_of: pd.Timestamp, days: float, kind: str = "demo_request") -> dict:
    return {"occurred_at": as_of - pd.Timedelta(days=days), "touch_type": kind}


def _features(engine: FeatureEngine, lead: dict, touches: list[dict], as_of: pd.Timestamp) -> dict:
    return dict(
        zip(engine.feature_names_, engine.transform_one(lead, touches, [], as_of), strict=True)
    )


def test_a_touch_weighs_half_after_one_half_life(
    engine: FeatureEngine, world: dict[str, pd.DataFrame]
) -> None:
    assert engine.half_lives_days == (7, 30)
    lead = world["leads"].iloc[3].to_dict()
    as_of = lead["created_at"] + pd.Timedelta(days=70)
    row = _features(engine, lead, [_touch(as_of, 7)], as_of)
    assert row["demo_request_decay7d"] == 0.5
    assert row["demo_request_decay30d"] == pytest.approx(0.5 ** (7 / 30), abs=1e-12)
    row = _features(engine, lead, [_touch(as_of, 30), _touch(as_of, 60)], as_of)
    assert row["demo_request_decay30d"] == 0.5 + 0.25
    assert row["demo_request_decay7d"] == pytest.approx(
        0.5 ** (30 / 7) + 0.5 ** (60 / 7), abs=2e-12
    )
    assert row["web_visit_decay7d"] == 0.0  # other types have their own counts
    assert _features(engine, lead, [], as_of)["demo_request_decay7d"] == 0.0


def test_touches_at_or_after_as_of_weigh_nothing(
    engine: FeatureEngine, world: dict[str, pd.DataFrame]
) -> None:
    lead = world["leads"].iloc[4].to_dict()
    as_of = lead["created_at"] + pd.Timedelta(days=20)
    past = [_touch(as_of, 2), _touch(as_of, 9, "web_visit")]
    later = [_touch(as_of, 0), _touch(as_of, -3), _touch(as_of, -0.001, "web_visit")]
    assert np.array_equal(
        engine.transform_one(lead, past + later, [], as_of),
        engine.transform_one(lead, past, [], as_of),
        equal_nan=True,
    )
    just_before = _features(engine, lead, [_touch(as_of, 0.001 / 86_400)], as_of)  # 1 ms
    assert 0.999 < just_before["demo_request_decay7d"] < 1.0


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ages=st.lists(st.floats(min_value=0.001, max_value=400.0), max_size=30),
    newer=st.floats(min_value=0.001, max_value=400.0),
)
def test_a_more_recent_demo_request_raises_the_decayed_count(
    engine: FeatureEngine, world: dict[str, pd.DataFrame], ages: list[float], newer: float
) -> None:
    """Another demo request never lowers a decayed count of demo requests (the monotone
    constraints ask the score to follow), raises it unless it is too old to weigh 1e-12, and
    a more recent one raises it by as much or more; each count is its definition."""
    lead = world["leads"].iloc[5].to_dict()
    as_of = lead["created_at"] + pd.Timedelta(days=500)
    history = [_touch(as_of, age) for age in ages]
    before = _features(engine, lead, history, as_of)
    after = _features(engine, lead, [*history, _touch(as_of, newer)], as_of)
    older = _features(engine, lead, [*history, _touch(as_of, newer + 1)], as_of)
    for days in engine.half_lives_days:
        name = f"demo_request_decay{days}d"
        assert after[name] > before[name] or (after[name] == before[name] and newer / days > 39)
        assert after[name] >= older[name] >= before[name]
        ms = [timestamp_ms(t["occurred_at"]) for t in history]
        expected = sum(0.5 ** ((timestamp_ms(as_of) - t) / (days * 86_400_000)) for t in ms)
        assert before[name] == pytest.approx(expected, abs=1e-12 * (len(ms) + 1))


def test_days_since_the_last_engagement(
    engine: FeatureEngine, world: dict[str, pd.DataFrame]
) -> None:
    """Any touch type but unsubscribes (and rare types, as in the trend) is engagement."""
    lead = world["leads"].iloc[6].to_dict()
    as_of = lead["created_at"] + pd.Timedelta(days=90)
    name = "touches_days_since_last"
    assert _features(engine, lead, [], as_of)[name] == NEVER_DAYS
    disengaged = [_touch(as_of, 1, "unsubscribe"), _touch(as_of, 2, "carrier_pigeon")]
    assert _features(engine, lead, disengaged, as_of)[name] == NEVER_DAYS
    engaged = [*disengaged, _touch(as_of, 45, "email_open"), _touch(as_of, 12.5, "web_visit")]
    assert _features(engine, lead, engaged, as_of)[name] == 12.5
    assert _features(engine, lead, [*engaged, _touch(as_of, 0, "web_visit")], as_of)[name] == 12.5


def test_decayed_counts_batch_equal_one_lead_over_long_histories(
    engine: FeatureEngine,
    world: dict[str, pd.DataFrame],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Hundreds of touches of one type (longer than numpy's pairwise-sum blocks), given in any
    order, among other leads, in chunks of any size: the same bits as the lead alone."""
    from features.engine import timelines

    leads = world["leads"].iloc[:40]
    rng = np.random.default_rng(3)
    rows = []
    for i, lead_id in enumerate(leads["lead_id"]):
        created = leads["created_at"].iloc[i]
        n = 300 if i % 10 == 0 else int(rng.integers(0, 30))
        for _ in range(n):
            rows.append(
                {
                    "lead_id": lead_id,
                    "occurred_at": created + pd.Timedelta(minutes=int(rng.integers(0, 200 * 1440))),
                    "touch_type": str(rng.choice(["demo_request", "web_visit", "unsubscribe"])),
                    "campaign_id": None,
                }
            )
    touches = pd.DataFrame(rows).sample(frac=1.0, random_state=4)
    snapshots = pd.DataFrame(
        {
            "lead_id": np.repeat(leads["lead_id"].to_numpy(), 3),
            "as_of": np.concatenate(
                [
                    created + pd.to_timedelta([10, 90, 250], unit="D")
                    for created in leads["created_at"]
                ]
            ),
        }
    )
    batch = engine.transform(snapshots, leads, touches, None)
    monkeypatch.setattr(timelines, "DECAY_CHUNK_PAIRS", 7)
    assert np.array_equal(engine.transform(snapshots, leads, touches, None), batch, equal_nan=True)
    decayed = [i for i, name in enumerate(engine.feature_names_) if "_decay" in name]
    assert (batch[:, decayed] > 0).any()
    by_lead = {lead_id: group.to_dict("records") for lead_id, group in touches.groupby("lead_id")}
    for row, snapshot in enumerate(snapshots.itertuples()):
        lead = leads.set_index("lead_id", drop=False).loc[snapshot.lead_id].to_dict()
        history = by_lead.get(snapshot.lead_id, [])[::-1]  # any order
        single = engine.transform_one(lead, history, [], snapshot.as_of)
        assert np.array_equal(single, batch[row], equal_nan=True), snapshot


def test_half_lives_and_cooling_come_from_params() -> None:
    from features.engine.table import make_engine
    from features.errors import UserError
    from features.params import parse_params

    params = parse_params({"features": {"half_lives_days": [14], "cooled_days": 10}})
    engine = make_engine(params, None)
    assert (engine.half_lives_days, engine.cooled_days) == ((14,), 10)
    assert engine.wording_context().cooled_days == 10
    leads = pd.DataFrame(
        {
            "lead_id": ["a", "b"],
            "created_at": pd.to_datetime(["2024-01-01", "2024-01-02"], utc=True),
        }
    )
    touches = pd.DataFrame(
        {"lead_id": ["a"], "occurred_at": leads["created_at"].iloc[:1], "touch_type": ["web_visit"]}
    )
    tables = {"leads": leads, "touches": touches}
    fitted = engine.fit(tables, pd.Timestamp("2024-02-01", tz="UTC"))
    assert [n for n in fitted.feature_names_ if "decay" in n] == [
        f"{t}_decay14d" for t in (*fitted.touch_types_, OTHER)
    ]
    none = make_engine(parse_params({"features": {"half_lives_days": []}}), None)
    assert not [
        n
        for n in none.fit(tables, pd.Timestamp("2024-02-01", tz="UTC")).feature_names_
        if "decay" in n
    ]
    for bad, message in (([7, 30, 7], "must differ: 7"), ([0], "greater than or equal to 1")):
        with pytest.raises(UserError, match=message):
            parse_params({"features": {"half_lives_days": bad}})
