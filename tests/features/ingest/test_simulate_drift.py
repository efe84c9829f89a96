"""The simulator's drift (``generate.drift``): a genuine change of the world after a date, and
none at all by default."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.ingest.simulate import NEW_CAMPAIGN_SHARE, simulate
from features.params import DriftParams, GenerateParams

AFTER = dt.date(2024, 7, 1)
# Content digests of every table of GenerateParams(leads=1200, seed=11, months=6), taken from
# the simulator before drift existed: the default must stay the drift-free world, value for
# value (of the values, not the Parquet bytes, so a pyarrow upgrade does not break the test).
DRIFT_FREE = {
    "accounts": "f516079832ab025d",
    "campaigns": "dcec5153aac08f2e",
    "leads": "372291e3cbd04ce4",
    "sales_events": "357545769b4a12b4",
    "touches": "39689f1315548a57",
    "truth": "b69a1ed79dfb1d4e",
}


def _small(drift: DriftParams | None = None) -> GenerateParams:
    return GenerateParams(leads=1200, seed=11, months=6, drift=drift or DriftParams())


def _digest(directory: Path) -> dict[str, str]:
    out = {}
    for path in sorted(directory.glob("*.parquet")):
        frame = pd.read_parquet(path)
        digest = hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
        digest.update(",".join(map(str, frame.columns)).encode())
        out[path.stem] = digest.hexdigest()[:16]
    return out


def _bytes(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


def _leads(directory: Path) -> pd.DataFrame:
    """Leads with their channel, truth probabilities and whether created from AFTER on."""
    leads = pd.read_parquet(directory / "leads.parquet")
    campaigns = pd.read_parquet(directory / "campaigns.parquet")
    truth = pd.read_parquet(directory / "truth.parquet")
    out = leads.merge(campaigns[["campaign_id", "channel"]], on="campaign_id").merge(
        truth, on="lead_id"
    )
    out["drifted"] = out["created_at"] >= pd.Timestamp(AFTER, tz="UTC")
    return out


@pytest.fixture(scope="module")
def worlds(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The same seed without and with drift from AFTER (12 months, drift in the second half)."""
    settings = GenerateParams(leads=8000, seed=4, months=12)
    plain, drifted = tmp_path_factory.mktemp("plain"), tmp_path_factory.mktemp("drifted")
    simulate(settings, plain)
    simulate(settings.model_copy(update={"drift": DriftParams(after=AFTER)}), drifted)
    return plain, drifted


def test_the_default_world_is_the_drift_free_one(tmp_path: Path) -> None:
    simulate(_small(), tmp_path)
    assert _digest(tmp_path) == DRIFT_FREE


def test_drift_after_the_horizon_changes_nothing(tmp_path: Path) -> None:
    plain, late = tmp_path / "plain", tmp_path / "late"
    simulate(_small(), plain)
    later = DriftParams(after=dt.date(2030, 1, 1), quality_factor=0.1, volume_factor=10.0)
    simulate(_small(later), late)
    assert _bytes(plain) == _bytes(late)


def test_quality_channel_is_accepted_and_converts_at_the_factor(
    worlds: tuple[Path, Path],
) -> None:
    plain, drifted = (_leads(w) for w in worlds)
    for world in (plain, drifted):
        assert len(world) == 8000
    social = lambda frame: frame[(frame["channel"] == "paid_social") & frame["drifted"]]  # noqa: E731
    ratio_accept = social(drifted)["p_accepted"].mean() / social(plain)["p_accepted"].mean()
    ratio_convert = social(drifted)["p_converted"].mean() / social(plain)["p_converted"].mean()
    factor = DriftParams().quality_factor
    assert ratio_accept == pytest.approx(factor, abs=0.08)
    assert ratio_convert == pytest.approx(factor, abs=0.12)
    # the other channels and the leads before the date keep their quality
    others = drifted[(drifted["channel"] != "paid_social") & drifted["drifted"]]
    others_plain = plain[(plain["channel"] != "paid_social") & plain["drifted"]]
    assert others["p_accepted"].mean() == pytest.approx(others_plain["p_accepted"].mean(), rel=0.1)
    early = drifted[(drifted["channel"] == "paid_social") & ~drifted["drifted"]]
    early_plain = plain[(plain["channel"] == "paid_social") & ~plain["drifted"]]
    assert early["p_accepted"].mean() == pytest.approx(early_plain["p_accepted"].mean(), rel=0.1)


def test_quality_drift_is_in_the_sales_events_not_only_in_truth(worlds: tuple[Path, Path]) -> None:
    """Fewer of the drifted channel's new leads are actually accepted by sales."""
    rates = []
    for world in worlds:
        leads = _leads(world)
        events = pd.read_parquet(world / "sales_events.parquet")
        accepted = set(events.loc[events["stage"] == "accepted", "lead_id"])
        social = leads[(leads["channel"] == "paid_social") & leads["drifted"]]
        rates.append(social["lead_id"].isin(accepted).mean())
    assert rates[1] < 0.7 * rates[0]


def test_volume_channel_grows_by_the_factor(worlds: tuple[Path, Path]) -> None:
    plain, drifted = (_leads(w) for w in worlds)

    def per_day_ratio(frame: pd.DataFrame, channel: str) -> float:
        rows = frame[frame["channel"] == channel]
        before, after = (~rows["drifted"]).sum(), rows["drifted"].sum()
        days_before = (pd.Timestamp(AFTER, tz="UTC") - pd.Timestamp("2024-01-01", tz="UTC")).days
        days_after = (pd.Timestamp("2025-01-01", tz="UTC") - pd.Timestamp(AFTER, tz="UTC")).days
        return float((after / days_after) / (before / days_before))

    growth = per_day_ratio(drifted, "webinar") / per_day_ratio(plain, "webinar")
    assert growth == pytest.approx(DriftParams().volume_factor, rel=0.2)
    # the other channels' daily volume keeps its course (within noise)
    assert per_day_ratio(drifted, "paid_search") == pytest.approx(
        per_day_ratio(plain, "paid_search"), rel=0.15
    )


def test_a_new_campaign_starts_on_the_date(worlds: tuple[Path, Path]) -> None:
    plain, drifted = worlds
    before = pd.read_parquet(plain / "campaigns.parquet")
    after = pd.read_parquet(drifted / "campaigns.parquet")
    new = sorted(set(after["campaign_id"]) - set(before["campaign_id"]))
    assert len(new) == 1
    # every old campaign keeps its id, channel and dates
    pd.testing.assert_frame_equal(
        after[after["campaign_id"] != new[0]][["campaign_id", "channel", "started_at"]],
        before[["campaign_id", "channel", "started_at"]],
    )
    campaign = after.set_index("campaign_id").loc[new[0]]
    assert campaign["channel"] == "webinar"
    assert campaign["started_at"] == pd.Timestamp(AFTER, tz="UTC")
    leads = _leads(drifted)
    its = leads[leads["campaign_id"] == new[0]]
    assert len(its) > 100
    assert its["drifted"].all()
    webinar_after = leads[(leads["channel"] == "webinar") & leads["drifted"]]
    assert len(its) / len(webinar_after) == pytest.approx(NEW_CAMPAIGN_SHARE, abs=0.08)


def test_drift_is_deterministic(tmp_path: Path) -> None:
    settings = _small(DriftParams(after=dt.date(2024, 4, 1)))
    simulate(settings, tmp_path / "a")
    simulate(settings, tmp_path / "b")
    assert _bytes(tmp_path / "a") == _bytes(tmp_path / "b")
    assert _digest(tmp_path / "a") != DRIFT_FREE
    assert np.isfinite(pd.read_parquet(tmp_path / "a" / "truth.parquet")["p_converted"]).all()
