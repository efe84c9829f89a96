"""The sales queue: every lead still open at the data horizon, scored as of the horizon, best
first (:meth:`~models.scorer.LeadScorer.rank`: the primary target's probability, descending,
ties by lead id), with its owner, channel, campaign, the top three positive and negative reasons
and the model (name and version) that ranked it.

- *Open* (CRM tables): the lead was created by the horizon and its latest sales event at or
  before the horizon is not ``won``, ``lost`` or ``rejected`` (a lead without sales events is
  open). Every open lead is scored, censored or not, however old: leads older than the largest
  snapshot offset are scored beyond the ages the model was trained on.
- *Flat exports* have no pipeline state (no sales events): every row is scored, at the horizon,
  from its attributes alone.
- Identity fields (name, e-mail, phone, company) and ``job_title`` are carried as they are
  (null when the data has none): shown to sales, never features.
- ``owner_id``: the last non-null owner among the lead's sales events (null if none);
  ``last_stage``: its latest sales stage (null if none).

Reasons come from SHAP (about 0.7 ms per lead), computed in chunks with a progress bar.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from features import contract
from models.scorer import LeadScorer

REASON_CHUNK = 2000
"""Leads per SHAP call: bounds memory (rows × features × 8 bytes) and paces the progress bar."""
REASONS = 3
SHOWN_LEAD_COLUMNS: tuple[str, ...] = (*contract.IDENTITY_FIELDS, "job_title")
"""Lead columns carried into the queue as they are, so a rep knows whom to call."""


def sales_state(sales: pd.DataFrame | None, horizon: pd.Timestamp) -> pd.DataFrame:
    """Per lead with sales events by the horizon: latest stage and last non-null owner."""
    if sales is None or not len(sales):
        return pd.DataFrame(columns=["last_stage", "owner_id"], index=pd.Index([], name="lead_id"))
    events = sales[pd.to_datetime(sales["occurred_at"], utc=True) <= horizon]
    events = events.assign(
        stage=events["stage"].astype(str).str.strip().str.lower(),
        _order=np.arange(len(events)),
    ).sort_values(["occurred_at", "_order"], kind="stable")
    by_lead = events.groupby("lead_id", sort=False, observed=True)
    state = pd.DataFrame({"last_stage": by_lead["stage"].last()})
    if "owner_id" in events:
        owners = events[events["owner_id"].notna()].groupby("lead_id", sort=False, observed=True)
        state["owner_id"] = owners["owner_id"].last().reindex(state.index)
    else:
        state["owner_id"] = None
    state.index = state.index.astype(str)
    return state


def open_leads(
    tables: Mapping[str, pd.DataFrame], horizon: pd.Timestamp, flat: bool
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The leads to queue (flat: all) and their sales state (indexed by lead_id)."""
    leads = tables["leads"]
    state = sales_state(tables.get("sales_events"), horizon)
    if flat:
        return leads.reset_index(drop=True), state
    created = pd.to_datetime(leads["created_at"], utc=True)
    last_stage = leads["lead_id"].astype(str).map(state["last_stage"])
    is_open = (created <= horizon) & ~last_stage.isin(contract.CLOSED_STAGES)
    return leads[is_open.to_numpy()].reset_index(drop=True), state


def reason_texts(scorer: LeadScorer, X: np.ndarray) -> tuple[list[list[str]], list[list[str]]]:
    positive: list[list[str]] = []
    negative: list[list[str]] = []
    starts = range(0, len(X), REASON_CHUNK)
    for start in tqdm(starts, desc="reasons", unit="chunk", disable=None):
        for good, bad in scorer.explain(X[start : start + REASON_CHUNK], count=REASONS):
            positive.append([r.text for r in good])
            negative.append([r.text for r in bad])
    return positive, negative


def _engine_transform(engine: Any, *tables: pd.DataFrame | None) -> np.ndarray:
    return np.asarray(engine.transform(*tables))


def open_lead_features(
    tables: Mapping[str, pd.DataFrame],
    scorer: LeadScorer,
    horizon: pd.Timestamp,
    flat: bool = False,
    partition: int = 250_000,
    transform: Callable[..., np.ndarray] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """The open leads (:func:`open_leads`), their sales state and their feature rows as of
    ``horizon``, ``partition`` leads at a time (``transform``: a backend's, e.g. a Dask
    cluster's reading the touches from their lead partitions; default the engine's own)."""
    leads, state = open_leads(tables, horizon, flat)
    touches = tables.get("touches")
    sales = tables.get("sales_events")
    parts = []
    for start in range(0, len(leads), partition):
        part = leads.iloc[start : start + partition]
        part_ids = set(part["lead_id"].astype(str))
        snapshots = pd.DataFrame({"lead_id": part["lead_id"].to_numpy(), "as_of": horizon})
        matrix = (transform or _engine_transform)(
            scorer.engine,
            snapshots,
            part,
            touches[touches["lead_id"].astype(str).isin(part_ids)] if touches is not None else None,
            sales[sales["lead_id"].astype(str).isin(part_ids)] if sales is not None else None,
        )
        parts.append(matrix)
    n_features = len(scorer.engine.feature_names_)
    X = np.vstack(parts) if parts else np.zeros((0, n_features))
    return leads, state, X


def sales_queue(
    tables: Mapping[str, pd.DataFrame],
    scorer: LeadScorer,
    horizon: pd.Timestamp,
    model: Mapping[str, str],
    flat: bool = False,
    partition: int = 250_000,
) -> pd.DataFrame:
    """The queue, best first (:meth:`LeadScorer.rank`): one row per open lead, each with the
    ``model_name`` and ``model_version`` that ranked it (``model``: ``{"name", "version"}``)."""
    return ranked(queue_rows(tables, scorer, horizon, model, flat, partition), scorer)


def queue_rows(
    tables: Mapping[str, pd.DataFrame],
    scorer: LeadScorer,
    horizon: pd.Timestamp,
    model: Mapping[str, str],
    flat: bool = False,
    partition: int = 250_000,
) -> pd.DataFrame:
    """The queue's rows, not yet ranked (no ``priority`` or ``rank``): each row depends on its
    lead's history only, so the rows of lead partitions, put together, are the rows of the
    whole (:func:`ranked` then orders them)."""
    leads, state, X = open_lead_features(tables, scorer, horizon, flat, partition)
    ids = leads["lead_id"].astype(str)
    summary = scorer.summarise(X)
    positive, negative = reason_texts(scorer, X)

    campaign_id = (
        leads["campaign_id"].astype("object").where(leads["campaign_id"].notna(), None)
        if "campaign_id" in leads
        else pd.Series([None] * len(leads), dtype="object")
    )
    channel: pd.Series
    campaign_name: pd.Series
    if "campaigns" in tables:
        campaigns = tables["campaigns"].set_index(tables["campaigns"]["campaign_id"].astype(str))
        channel = campaign_id.map(campaigns["channel"].astype(str).str.strip().str.lower())
        campaign_name = campaign_id.map(campaigns["name"]) if "name" in campaigns else campaign_id
    else:
        channel = (
            leads["channel"].astype("object")
            if "channel" in leads
            else pd.Series([None] * len(leads), dtype="object")
        )
        campaign_name = pd.Series([None] * len(leads), dtype="object")
    queue = pd.DataFrame(
        {
            "lead_id": ids.to_numpy(),
            "created_at": pd.to_datetime(leads["created_at"], utc=True).to_numpy(),
            "as_of": pd.Series([horizon] * len(leads), dtype="datetime64[us, UTC]").to_numpy(),
            "owner_id": ids.map(state["owner_id"]).astype("object").to_numpy(),
            "last_stage": ids.map(state["last_stage"]).astype("object").to_numpy(),
            "channel": channel.astype("object").to_numpy(),
            "campaign_id": campaign_id.to_numpy(),
            "campaign_name": campaign_name.astype("object").to_numpy(),
        }
    )
    for column in SHOWN_LEAD_COLUMNS:  # who the lead is, for sales (never features)
        queue[column] = (
            leads[column].astype("object").where(leads[column].notna(), None).to_numpy()
            if column in leads
            else None
        )
    queue = pd.concat([queue, summary.frame(), summary.timing_columns(queue["as_of"])], axis=1)
    queue["reasons_positive"] = pd.Series(positive, dtype="object")
    queue["reasons_negative"] = pd.Series(negative, dtype="object")
    for column in ("owner_id", "last_stage", "channel", "campaign_id", "campaign_name"):
        queue[column] = queue[column].where(queue[column].notna(), None)
    queue["model_name"] = pd.Series([str(model["name"])] * len(queue), dtype="object")
    queue["model_version"] = pd.Series([str(model["version"])] * len(queue), dtype="object")
    return queue


def ranked(rows: pd.DataFrame, scorer: LeadScorer) -> pd.DataFrame:
    """:func:`queue_rows`' rows (of one or many partitions) as the queue: each lead's priority
    among all of them, best first, numbered from 1."""
    p = rows[f"p_{scorer.primary}"].to_numpy(dtype=np.float64)
    queue = rows.reset_index(drop=True)
    queue["priority"] = scorer.priority(p)
    order = scorer.rank(queue["lead_id"].to_numpy(), p)
    queue = queue.iloc[order].reset_index(drop=True)
    queue.insert(0, "rank", np.arange(1, len(queue) + 1))
    return queue
