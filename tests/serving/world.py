"""A small trained world for the serving tests: simulator data (3,000 leads), a quickly trained
scorer, its model bundle, the evaluate stage's reports and the sales queue, all in one
directory made once per test session (per xdist worker) and shared by the serving and
integration tests."""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from features import contract
from features.engine.table import build_feature_table
from features.ingest.simulate import simulate
from features.params import GenerateParams, Params, load_params
from features.storage import read_validated, write_parquet
from models.packaging.bundle import example_input, save_bundle
from models.scorer import LeadScorer
from models.training import train_all

REPO = Path(__file__).resolve().parents[2]
LEADS = 3000
SEED = 5


@dataclass
class World:
    root: Path
    raw: Path
    bundle: Path
    train: Path
    artifacts: Path
    params_path: Path

    @property
    def tables(self) -> dict[str, pd.DataFrame]:
        return _tables(self.raw)

    @property
    def scorer(self) -> LeadScorer:
        return _scorer(self.train)

    @property
    def snapshots(self) -> pd.DataFrame:
        return pd.read_parquet(self.root / "snapshots.parquet")


_TABLES: dict[Path, dict[str, pd.DataFrame]] = {}
_SCORERS: dict[Path, LeadScorer] = {}


def _tables(raw: Path) -> dict[str, pd.DataFrame]:
    if raw not in _TABLES:
        _TABLES[raw] = read_validated(raw)
    return _TABLES[raw]


def _scorer(train: Path) -> LeadScorer:
    if train not in _SCORERS:
        with (train / "scorer.pkl").open("rb") as handle:
            _SCORERS[train] = pickle.load(handle)
    return _SCORERS[train]


def fast(params: Params) -> Params:
    settings = {"num_threads": 1, "learning_rate": 0.1, "max_rounds": 150}
    settings |= {"early_stopping_rounds": 20}
    return params.model_copy(update={"train": params.train.model_copy(update=settings)})


def _build(root: Path) -> None:
    from models.queue import open_lead_features, sales_queue
    from models.reports.evaluation import evaluate
    from models.reports.grid import grid_report
    from models.reports.kpis import compute_kpis, first_snapshot_predictions
    from models.reports.timing import pipeline_forecast, timing_report
    from models.timing import durations

    params = fast(load_params(REPO / "params.yaml"))
    raw = root / "raw"
    simulate(GenerateParams(leads=LEADS, seed=SEED), raw)
    tables = read_validated(raw)
    engine, snapshots = build_feature_table(tables, params, None)
    horizon = pd.Timestamp(engine.horizon_ms_, unit="ms", tz="UTC")
    stages = params.targets[params.quality_lead.target].stages
    outcomes = durations(snapshots, tables["sales_events"], stages, horizon)
    with threadpool_limits(1):
        scorer, trained = train_all(snapshots, engine, params, outcomes=outcomes)
    snapshots.to_parquet(root / "snapshots.parquet")
    train = root / "train"
    train.mkdir()
    with (train / "scorer.pkl").open("wb") as handle:
        pickle.dump(scorer, handle, protocol=pickle.HIGHEST_PROTOCOL)
    save_bundle(scorer, root / "model", example_input(tables, 3, scorer=scorer))

    artifacts = root / "artifacts"
    (artifacts / "plots").mkdir(parents=True)
    X = engine.matrix_from_frame(snapshots)
    baselines = {t: {"rules": r.rules, "logistic": r.logistic} for t, r in trained.items()}
    with threadpool_limits(1):
        evaluation = evaluate(snapshots, X, scorer, baselines, params, shap_rows=200)
    horizon = contract.data_horizon(tables)
    kpis = compute_kpis(
        tables,
        horizon=horizon,
        primary_target=scorer.definition.target,
        window_days=scorer.definition.window_days,
        currency=params.data.currency,
        predictions=first_snapshot_predictions(snapshots, X, scorer),
    )
    kpis["grid"] = grid_report(snapshots, X, scorer)
    stamp = pd.Timestamp(horizon)
    timing = timing_report(snapshots, X, tables["sales_events"], scorer, stages, stamp)
    _, _, X_open = open_lead_features(tables, scorer, stamp)
    kpis["forecast"] = pipeline_forecast(X_open, scorer, stamp, timing)
    (artifacts / "metrics.json").write_text(json.dumps(evaluation.metrics, default=_plain))
    (artifacts / "kpis.json").write_text(json.dumps(kpis, default=_plain))
    for name, frame in evaluation.plots.items():
        frame.to_csv(artifacts / "plots" / f"{name}.csv", index=False)
    (artifacts / "model_card.md").write_text("# Model card\n\nA test model.\n")
    ref = {"name": "lead-scoring", "version": "1"}
    write_parquet(artifacts / "queue.parquet", sales_queue(tables, scorer, horizon, ref))


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def make_world(tmp_path_factory: pytest.TempPathFactory) -> World:
    """The session's world (built on first use; later callers reuse the directory)."""
    base = tmp_path_factory.getbasetemp()
    root = base / "serving-world"
    if not (root / "done").exists():  # each xdist worker has its own base directory
        root.mkdir(exist_ok=True)
        _build(root)
        (root / "done").write_text("ok")
    return World(
        root=root,
        raw=root / "raw",
        bundle=root / "model",
        train=root / "train",
        artifacts=root / "artifacts",
        params_path=REPO / "params.yaml",
    )


def request_for(
    tables: dict[str, pd.DataFrame], lead_id: str, as_of: pd.Timestamp | None = None
) -> dict[str, Any]:
    """The API request of one lead of the canonical tables (its history before ``as_of``)."""
    from models.packaging.bundle import bundle_input

    leads = tables["leads"]
    lead = leads[leads["lead_id"] == lead_id]
    history = {
        name: tables[name][tables[name]["lead_id"] == lead_id]
        for name in ("touches", "sales_events")
        if name in tables
    }
    frame = bundle_input(lead, history.get("touches"), history.get("sales_events"), as_of=as_of)
    record = json.loads(json.dumps(frame.to_dict("records")[0], default=_plain))
    body: dict[str, Any] = {
        "lead": {
            k: v
            for k, v in record.items()
            if k not in ("touches", "sales_events", "as_of") and v is not None
        },
        "touches": record.get("touches", []),
        "sales_events": record.get("sales_events", []),
    }
    if as_of is not None:
        body["as_of"] = record["as_of"]
    return body


def _timelines(events: pd.DataFrame) -> dict[str, tuple[np.ndarray, list[dict[str, Any]]]]:
    """Per lead: its events' times (sorted) and the events as the API takes them."""
    events = events.sort_values(["lead_id", "occurred_at"], kind="stable")
    when = pd.to_datetime(events["occurred_at"], utc=True)
    columns = [c for c in events.columns if c not in ("lead_id", "occurred_at")]
    rows = events[columns].astype(object).where(events[columns].notna(), None)
    records = [
        {"occurred_at": at.isoformat(), **{k: v for k, v in row.items() if v is not None}}
        for at, row in zip(when, rows.to_dict("records"), strict=True)
    ]
    ids = events["lead_id"].astype(str).to_numpy()
    stamps = when.dt.tz_localize(None).to_numpy()  # UTC, as numpy compares them
    out = {}
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]]) if len(ids) else np.array([], int)
    for start, end in zip(starts, [*starts[1:], len(ids)], strict=True):
        out[str(ids[start])] = (stamps[start:end], records[start:end])
    return out


def requests_for(tables: dict[str, pd.DataFrame], points: pd.DataFrame) -> list[dict[str, Any]]:
    """:func:`request_for` of many (lead, as_of) points at once (one pass over the events,
    not one filter per lead: 14k points in 4 s instead of 60 s), each as of
    ``max(as_of, created_at)``: the pipeline's snapshots are at millisecond resolution, so
    the first one of a lead can be up to 1 ms before its created_at, which the API refuses."""
    leads = tables["leads"].astype(object).where(tables["leads"].notna(), None)
    created = pd.to_datetime(tables["leads"]["created_at"], utc=True)
    attributes = {}
    for row, at in zip(leads.to_dict("records"), created, strict=True):
        body = {k: v for k, v in row.items() if v is not None}
        body["created_at"] = at.isoformat()
        attributes[str(row["lead_id"])] = (at, body)
    timelines = {name: _timelines(tables[name]) for name in ("touches", "sales_events")}
    nothing: tuple[np.ndarray, list[dict[str, Any]]] = (np.array([], "datetime64[ns]"), [])
    out = []
    for lead_id, as_of in zip(points["lead_id"].astype(str), points["as_of"], strict=True):
        at, body = attributes[lead_id]
        when = max(pd.Timestamp(as_of), at)
        item: dict[str, Any] = {"lead": body, "as_of": when.isoformat()}
        for name, timeline in timelines.items():
            stamps, records = timeline.get(lead_id, nothing)
            upto = np.searchsorted(stamps, when.tz_localize(None).to_datetime64(), side="right")
            item[name] = records[:upto]
        out.append(item)
    return out


def open_lead_ids(
    tables: dict[str, pd.DataFrame],
    n: int,
    seed: int = 0,
    created_before: pd.Timestamp | None = None,
) -> list[str]:
    """``n`` leads with touches, spread over the data (deterministic); only leads created
    before ``created_before`` when given (a lead cannot be scored before it exists)."""
    touched = tables["touches"]["lead_id"].astype(str).unique()
    if created_before is not None:
        leads = tables["leads"]
        created = pd.to_datetime(leads["created_at"], utc=True)
        existing = set(leads.loc[created < created_before, "lead_id"].astype(str))
        touched = np.array([lead for lead in touched if lead in existing])
    rng = np.random.default_rng(seed)
    return [str(v) for v in rng.choice(np.sort(touched), size=n, replace=False)]


def batch_answers(
    scorer: LeadScorer,
    tables: dict[str, pd.DataFrame],
    lead_ids: list[str],
    as_of: list[pd.Timestamp] | pd.Timestamp,
    reasons: int = 3,
) -> list[dict[str, Any]]:
    """The batch path's answer per lead (``engine.transform`` on the tables → ``summarise`` →
    ``explain``), in the API's words: the oracle that every one-lead path must equal."""
    from models.reasons import reason_records

    stamps = as_of if isinstance(as_of, list) else [as_of] * len(lead_ids)
    snapshots = pd.DataFrame(
        {"lead_id": lead_ids, "as_of": pd.Series(pd.to_datetime(stamps, utc=True)).dt.as_unit("us")}
    )
    X = scorer.engine.transform(
        snapshots, tables["leads"], tables.get("touches"), tables.get("sales_events")
    )
    summary = scorer.summarise(X)
    explained = scorer.explain(X, count=reasons)
    timing = summary.timing_columns(snapshots["as_of"])
    out = []
    for i, lead_id in enumerate(lead_ids):
        answer: dict[str, Any] = {"lead_id": lead_id}
        answer |= {f"p_{t}": float(summary.probabilities[t][i]) for t in scorer.targets}
        answer["score"] = int(summary.score[i])
        answer["grade"] = str(summary.grade[i])
        answer["handoff"] = bool(summary.handoff[i])
        answer["fit_score"] = int(summary.fit_score[i])
        answer["engagement_score"] = int(summary.engagement_score[i])
        answer["grid"] = str(summary.grid[i])
        answer["priority"] = None  # scored alone, not in a queue
        answer["p_converted_by"] = summary.converted_by(i)
        answer["expected_conversion_date"] = timing["expected_conversion_date"][i]
        value = timing["expected_value"][i]
        answer["expected_value"] = None if pd.isna(value) else float(value)
        answer["segment"] = summary.segment_of(i)
        answer["reasons_positive"] = reason_records(explained[i][0])
        answer["reasons_negative"] = reason_records(explained[i][1])
        out.append(answer)
    return out
