"""The monitor stage end to end on simulated CRMs: a model trained on the data, the scores it
gave recorded in a SQLite score store, and ``pipelines.monitor.run`` reading both.

Three worlds (6,000 leads each, 20 months to 2025-09-01): the default drift-free one and a
drifted one (from 2025-04-01: paid_social's new leads accepted at 0.3 × their propensity,
webinar's volume × 6, a new poor webinar campaign), each with a model trained on all its data
and the scores of every snapshot of the test period recorded as given on their ``as_of``; and
the drifted world once more with a model trained on the data up to 2024-12-15 only, as a model
in production is, scoring everything after it.

Not asserted, because it does not happen: ``retrain_recommended`` in the drifted world. The
drift moves the channel mix and the outcomes, not the score (its PSI stays about 0.01–0.03:
the score hardly depends on the channel), and the matured-score AUC does not fall by
``monitor.retrain_auc_drop`` (a quality drop no feature shows is a calibration drift, which
the backtest by channel shows instead)."""

from __future__ import annotations

import datetime as dt
import fnmatch
import json
import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest
from threadpoolctl import threadpool_limits

from features import contract
from features.engine.snapshots import build_snapshots
from features.engine.table import build_feature_table
from features.errors import UserError
from features.ingest.simulate import simulate
from features.params import DriftParams, GenerateParams, Params, load_params
from features.partitions import write_dataset
from features.storage import read_validated
from models.reports.monitoring import monitor
from models.scorer import LeadScorer
from models.store import ENV_VAR, ScoreRecord, ScoreStore
from models.training import train_all
from pipelines import monitor as stage

REPO = Path(__file__).resolve().parents[2]
PARAMS = REPO / "params.yaml"
LEADS = 6000
DRIFT = DriftParams(after=dt.date(2025, 4, 1), quality_factor=0.3, volume_factor=6.0)
DRIFTED_FEATURES = ("channel", "source", "campaign_daily_leads")
# Features whose distribution moves with the age of the data even in a world that does not
# change: outcome rates of campaigns and channels (none has matured in the first window of the
# data, so the oldest snapshots, the train slice, hold their prior), an account's history
# (it only accumulates) and campaign volume and spend rates (the simulated market grows 80 %).
# Against the train-slice reference they are major in the drift-free world too.
AGEING: tuple[str, ...] = ("*_lift", "account_earlier_leads", "account_opportunities")
AGEING += ("account_wins", "campaign_daily_*", "campaign_spend_per_lead")


def _ageing(name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in AGEING)


def _fast(params: Params) -> Params:
    settings = {"num_threads": 1, "learning_rate": 0.1, "max_rounds": 150}
    settings |= {"early_stopping_rounds": 20}
    return params.model_copy(update={"train": params.train.model_copy(update=settings)})


def _until(tables: dict[str, pd.DataFrame], cutoff: pd.Timestamp) -> dict[str, pd.DataFrame]:
    """The CRM as exported at ``cutoff``."""
    out = dict(tables)
    out["leads"] = tables["leads"][tables["leads"]["created_at"] <= cutoff].reset_index(drop=True)
    for name in ("touches", "sales_events"):
        rows = tables[name]["occurred_at"] <= cutoff
        out[name] = tables[name][rows.to_numpy()].reset_index(drop=True)
    return out


def record_scores(
    store: ScoreStore, scorer: LeadScorer, tables: dict[str, pd.DataFrame], points: pd.DataFrame
) -> int:
    """Score ``points`` (lead_id, as_of) as the queue does and record each as given on its
    as_of."""
    X = scorer.engine.transform(points, tables["leads"], tables["touches"], tables["sales_events"])
    summary = scorer.summarise(X)
    primary = summary.probabilities[scorer.primary]
    records = [
        ScoreRecord(
            lead_id=str(lead),
            as_of=as_of.to_pydatetime(),
            scored_at=as_of.to_pydatetime(),
            model_name="lead-scoring",
            model_version="1",
            probabilities={t: float(p[i]) for t, p in summary.probabilities.items()},
            probability=float(primary[i]),
            score=int(summary.score[i]),
            grade=summary.grade[i],
            handoff=bool(summary.handoff[i]),
            source="rescore",
        )
        for i, (lead, as_of) in enumerate(zip(points["lead_id"], points["as_of"], strict=True))
    ]
    return store.record(records)


@dataclass
class Scored:
    root: Path
    raw: Path
    model: Path
    store_url: str
    scorer: LeadScorer
    scores: int


def _scored_world(root: Path, drift: DriftParams, cutoff: pd.Timestamp | None = None) -> Scored:
    params = _fast(load_params(PARAMS))
    raw = root / "raw"
    simulate(GenerateParams(leads=LEADS, seed=5, drift=drift), raw)
    tables = read_validated(raw)
    known = tables if cutoff is None else _until(tables, cutoff)
    engine, snapshots = build_feature_table(known, params, None)
    with threadpool_limits(1):
        scorer, _ = train_all(snapshots, engine, params)
    model = root / "train"
    model.mkdir()
    with (model / "scorer.pkl").open("wb") as handle:
        pickle.dump(scorer, handle, protocol=pickle.HIGHEST_PROTOCOL)
    horizon = contract.data_horizon(tables)
    every = build_snapshots(
        tables["leads"],
        tables["sales_events"],
        params.snapshots.offsets_days,
        horizon,
        params.quality_lead.window_days,
        {},
    )
    since = snapshots.loc[snapshots["split"] == "test", "as_of"].min() if cutoff is None else cutoff
    points = every[every["as_of"] > since].reset_index(drop=True)
    url = f"sqlite:///{root / 'scores.db'}"
    with ScoreStore(url) as store:
        count = record_scores(store, scorer, tables, points)
    return Scored(root, raw, model, url, scorer, count)


def _monitor(world: Scored, out: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setenv(ENV_VAR, world.store_url)
    stage.run(world.raw, out, PARAMS, model=str(world.model), project_dir=world.root)
    text = (out / "monitoring.json").read_text()
    return json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in the JSON"))


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Scored:
    return _scored_world(tmp_path_factory.mktemp("plain"), DriftParams())


@pytest.fixture(scope="module")
def drifted(tmp_path_factory: pytest.TempPathFactory) -> Scored:
    return _scored_world(tmp_path_factory.mktemp("drifted"), DRIFT)


@pytest.fixture(scope="module")
def reports(
    plain: Scored, drifted: Scored, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, dict[str, Any]]]:
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield {
            "plain": _monitor(plain, tmp_path_factory.mktemp("out-plain"), monkeypatch),
            "drifted": _monitor(drifted, tmp_path_factory.mktemp("out-drifted"), monkeypatch),
        }


def test_observed_conversion_falls_grade_by_grade(reports: dict[str, dict[str, Any]]) -> None:
    backtest = reports["plain"]["backtest"]
    assert backtest["matured"] > 1000
    rows = {row["grade"]: row for row in backtest["by_grade"]}
    observed = [rows[g]["observed"] for g in "ABCD"]
    assert all(rows[g]["scored"] >= 30 for g in "ABCD")
    assert observed == sorted(observed, reverse=True), observed
    for row in rows.values():  # promised vs observed, with an interval around the observed
        assert row["observed_low"] <= row["observed"] <= row["observed_high"]
    assert backtest["roc_auc"] > 0.75
    assert backtest["ece"] < 0.05
    assert backtest["by_month"]
    assert backtest["by_channel"]
    assert sum(m["scored"] for m in backtest["by_month"]) == backtest["matured"]
    assert {c["channel"] for c in backtest["by_channel"]} <= set(contract.CHANNELS)


def test_psi_for_every_feature_and_nothing_major_in_a_world_that_does_not_change(
    reports: dict[str, dict[str, Any]], plain: Scored
) -> None:
    report = reports["plain"]
    features = report["drift"]["features"]
    assert set(features) == set(plain.scorer.engine.feature_names_)
    assert all(entry["psi"] is not None for entry in features.values())
    assert report["drift"]["score"]["band"] == "stable"
    major = {name for name, entry in features.items() if entry["band"] == "major"}
    assert {name for name in major if not _ageing(name)} == set()
    assert report["drift"]["major"] == []  # the trending ones are reported, never counted
    assert set(report["drift"]["trending_major"]) == major
    assert all(features[name]["trending"] for name in major)
    assert report["retrain_rules"]["major_features"]["triggered"] is False
    for name in DRIFTED_FEATURES[:2]:
        assert features[name]["band"] == "stable"
    assert report["retrain_recommended"] is False
    assert report["retrain_reasons"] == []
    assert report["retrain_rules"]["auc_drop"]["applied"] is True
    assert report["expected"]["label"].startswith("estimate")


def test_the_drifted_features_are_flagged(reports: dict[str, dict[str, Any]]) -> None:
    report = reports["drifted"]
    features = report["drift"]["features"]
    for name in DRIFTED_FEATURES:
        assert features[name]["psi"] > 0.25, (name, features[name])
        assert features[name]["band"] == "major"
    assert {"channel", "source"} <= set(report["drift"]["major"])
    assert "campaign_daily_leads" in report["drift"]["trending_major"]  # grows by construction
    # the channel and source mix changed: retraining is recommended, and the reason says why
    assert report["retrain_recommended"] is True
    assert report["retrain_rules"]["major_features"]["triggered"] is True
    assert any("channel" in reason for reason in report["retrain_reasons"])


def test_the_backtest_shows_the_channel_whose_quality_fell(
    reports: dict[str, dict[str, Any]],
) -> None:
    def social(name: str) -> dict[str, Any]:
        rows = reports[name]["backtest"]["by_channel"]
        return next(row for row in rows if row["channel"] == "paid_social")

    drifted, plain = social("drifted"), social("plain")
    assert drifted["observed_high"] < drifted["predicted"]  # promised more than it delivered
    assert drifted["observed"] / drifted["predicted"] < plain["observed"] / plain["predicted"]


def test_a_model_months_after_training_meets_campaigns_it_does_not_know(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Trained on the export of 2024-12-15 and scoring the drifted world until 2025-09: most
    recent leads come from campaigns started after training, whose figures the engine's fitted
    state does not have, and the monitor says so loudly (PSI > 1), with the drift on top."""
    world = _scored_world(tmp_path, DRIFT, cutoff=pd.Timestamp("2024-12-15", tz="UTC"))
    report = _monitor(world, tmp_path / "out", monkeypatch)
    features = report["drift"]["features"]
    for name in ("campaign_daily_leads", "campaign_daily_spend"):
        assert features[name]["psi"] > 1.0
    for name in DRIFTED_FEATURES:
        assert features[name]["band"] == "major"
    # the matured scores are all after training: the AUC rule compares them with the test AUC
    rule = report["retrain_rules"]["auc_drop"]
    assert rule["applied"] is True
    assert rule["test_roc_auc"] == world.scorer.metadata["reference"]["test_roc_auc"]
    assert report["retrain_recommended"] == bool(report["retrain_reasons"])


def test_the_stage_writes_the_plots_tables(
    reports: dict[str, dict[str, Any]], plain: Scored, tmp_path: Path
) -> None:
    del reports  # the stage has run
    out = next(plain.root.parent.glob("out-plain*"))
    by_grade = pd.read_csv(out / "plots" / "backtest_by_grade.csv")
    assert list(by_grade["grade"]) == ["A", "B", "C", "D"]
    assert {"predicted", "observed", "observed_low", "observed_high"} <= set(by_grade.columns)
    drift = pd.read_csv(out / "plots" / "drift.csv")
    assert len(drift) == len(plain.scorer.engine.feature_names_) + 1
    assert drift["psi"].notna().all()


def test_an_empty_store_gives_a_valid_report(
    plain: Scored, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = Scored(
        plain.root, plain.raw, plain.model, f"sqlite:///{tmp_path / 'empty.db'}", plain.scorer, 0
    )
    report = _monitor(empty, tmp_path / "out", monkeypatch)
    assert report["backtest"]["matured"] == 0
    assert "nothing to backtest yet" in report["backtest"]["message"]
    assert [row["scored"] for row in report["backtest"]["by_grade"]] == [0, 0, 0, 0]
    assert report["retrain_recommended"] is False
    assert report["drift"]["score"]["psi"] is None
    assert (tmp_path / "out" / "plots" / "drift.csv").exists()


def test_user_errors_are_one_line(
    plain: Scored, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_VAR, plain.store_url)
    with pytest.raises(UserError) as no_model:
        stage.run(plain.raw, tmp_path, PARAMS, model=str(tmp_path / "nowhere"))
    monkeypatch.setenv(ENV_VAR, "off")  # recording off: an empty report, so dvc repro completes
    off_report = stage.run(
        plain.raw, tmp_path / "off", PARAMS, model=str(plain.model), project_dir=tmp_path
    )
    assert off_report["backtest"]["matured"] == 0
    assert "nothing to backtest yet" in off_report["backtest"]["message"]
    monkeypatch.setenv(ENV_VAR, f"sqlite:///{tmp_path / 'missing' / 'dir' / 'scores.db'}")
    with pytest.raises(UserError) as unreachable:
        stage.run(plain.raw, tmp_path, PARAMS, model=str(plain.model), project_dir=tmp_path)
    for error in (no_model, unreachable):
        assert "\n" not in str(error.value)
    assert not (tmp_path / "monitoring.json").exists()


def _partitioned_copy(raw: Path, out: Path, partitions: int) -> Path:
    """The validated tables of ``raw`` in the layout ``engine.kind: dask`` writes: the lead
    tables as lead-partitioned datasets, campaigns and accounts single files."""
    out.mkdir()
    for name, frame in read_validated(raw).items():
        spec = contract.TABLES[name]
        if "lead_id" not in spec.column_names:
            frame.to_parquet(out / f"{name}.parquet", index=False)
            continue
        latest = frame[spec.time_column].max() if spec.time_column else None
        table = pa.Table.from_pandas(frame, preserve_index=False)
        write_dataset(out / name, table, partitions, latest)
    return out


def test_touches_are_read_only_for_the_recently_scored_leads_in_either_layout(
    reports: dict[str, dict[str, Any]],
    plain: Scored,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The stage reads touches for the recently scored leads only, and its report is the one
    computed from every table whole; from lead-partitioned tables it is the same report."""
    params = load_params(PARAMS)
    whole = read_validated(plain.raw)
    horizon = contract.data_horizon(whole, params.data.horizon)
    with ScoreStore(plain.store_url) as store:
        scores = store.scores_between(stage.EPOCH, dt.datetime.now(dt.UTC) + dt.timedelta(days=1))
    expected = json.loads(json.dumps(monitor(scores, whole, horizon, plain.scorer, params)))
    written = dict(reports["plain"])
    written.pop("model")  # which model it names: the direct call is given none
    expected.pop("model")
    assert written == expected

    reads: list[tuple[list[str], int | None]] = []
    real_read = stage.read_validated

    def spy(directory: Path, names: Any = None, lead_ids: Any = None) -> dict[str, pd.DataFrame]:
        reads.append((list(names or contract.TABLES), None if lead_ids is None else len(lead_ids)))
        return real_read(directory, names, lead_ids)

    monkeypatch.setattr(stage, "read_validated", spy)
    partitioned = _partitioned_copy(plain.raw, tmp_path / "validated", 4)
    report = _monitor(plain, tmp_path / "out", monkeypatch)  # single files, spied
    report_partitioned = _monitor(
        Scored(partitioned, partitioned, plain.model, plain.store_url, plain.scorer, plain.scores),
        tmp_path / "out-partitioned",
        monkeypatch,
    )
    assert report == reports["plain"]
    assert report_partitioned == reports["plain"]
    touch_reads = [count for names, count in reads if "touches" in names]
    recent = report["drift"]["recent_scores"]
    assert touch_reads == [recent, recent]
    assert 0 < recent < whole["leads"]["lead_id"].nunique() / 2
