"""The dashboard's sales queue as sales works it: two views, search, filters, sort, a capacity
per rep, pages and a CSV export of exactly what is on screen, from ``queue.parquet``.

- *new*: leads sales has not decided on yet (no sales stage, or only ``assigned``; no
  ``accepted``/``rejected`` feedback since);
- *pipeline*: leads already accepted or in ``opportunity`` (or accepted through feedback);
- *all*: every queued lead.

The queue stage's order (the champion's :meth:`~models.scorer.LeadScorer.rank`) is the default
sort and the one ``capacity`` cuts in: with a capacity, each owner (and "unassigned" as one)
keeps only their best ``capacity`` leads of the view, whatever the sort shown.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from features import contract
from serving.artifacts import json_safe

View = Literal["new", "pipeline", "all"]
VIEWS: tuple[str, ...] = ("new", "pipeline", "all")
NEW_STAGES = frozenset({"assigned"})
PIPELINE_STAGES = frozenset({"accepted", "opportunity"})
SEARCHED = ("lead_id", *contract.IDENTITY_FIELDS, "job_title")
"""Columns the search box looks in (case-insensitive substring)."""
SORTABLE = (
    "rank",
    "score",
    "grade",
    "fit_score",
    "engagement_score",
    "grid",
    "priority",
    "expected_value",
    "expected_conversion_date",
    "segment",
    "created_at",
    "lead_id",
    "last_name",
    "company_name",
    "owner_id",
    "channel",
    "campaign_name",
    "last_stage",
    "verdict",
)
UNASSIGNED = "(none)"
REASON_COLUMNS = 3


@dataclass(frozen=True)
class QueueQuery:
    view: View = "new"
    search: str | None = None
    owner: str | None = None
    grades: tuple[str, ...] = ()
    channel: str | None = None
    campaign: str | None = None
    created_from: dt.date | None = None
    created_to: dt.date | None = None
    sort: str = "rank"
    descending: bool = False
    capacity: int | None = None
    """Leads per owner (the best ones by rank); None: no cut."""


def with_verdicts(frame: pd.DataFrame, verdicts: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """The queue with sales' latest feedback per lead (``verdict``, ``verdict_reason``,
    ``verdict_at``): ``{lead_id: {"verdict", "reason", "occurred_at"}}``, from the store."""
    ids = frame["lead_id"].astype(str)
    out = frame.copy()
    for column, key in (("verdict", "verdict"), ("verdict_reason", "reason")):
        out[column] = ids.map(lambda i, k=key: verdicts.get(i, {}).get(k)).astype("object")
    out["verdict_at"] = ids.map(lambda i: verdicts.get(i, {}).get("occurred_at")).astype("object")
    return out


def _stage(frame: pd.DataFrame) -> pd.Series:
    if "last_stage" not in frame:
        return pd.Series([None] * len(frame), index=frame.index, dtype="object")
    return frame["last_stage"].astype("object")


def in_view(frame: pd.DataFrame, view: View) -> np.ndarray:
    stage = _stage(frame)
    verdict = (
        frame["verdict"] if "verdict" in frame else pd.Series(None, index=frame.index)
    ).astype("object")
    decided = verdict.isin(["accepted", "rejected"])
    if view == "new":
        undecided = stage.isna() | stage.isin(NEW_STAGES)
        return (undecided & ~decided).to_numpy(dtype=bool)
    if view == "pipeline":
        accepted = stage.isin(PIPELINE_STAGES) | (verdict == "accepted")
        return (accepted & (verdict != "rejected")).to_numpy(dtype=bool)
    return np.ones(len(frame), dtype=bool)


def _text(frame: pd.DataFrame, column: str) -> pd.Series:
    return frame[column].astype("object").where(frame[column].notna(), "").astype(str)


def select(frame: pd.DataFrame, query: QueueQuery) -> pd.DataFrame:
    """The rows of the view that pass every filter, cut at the capacity per owner, in the
    asked order (ties keep the rank order)."""
    keep = np.array(in_view(frame, query.view), dtype=bool)  # pandas may hand out read-only views
    if query.search:
        needle = query.search.strip().casefold()
        hit = np.zeros(len(frame), dtype=bool)
        for column in (c for c in SEARCHED if c in frame):
            hit |= _text(frame, column).str.casefold().str.contains(needle, regex=False).to_numpy()
        if {"first_name", "last_name"} <= set(frame.columns):
            full = _text(frame, "first_name") + " " + _text(frame, "last_name")
            hit |= full.str.casefold().str.contains(needle, regex=False).to_numpy()
        keep &= hit
    if query.owner and "owner_id" in frame:
        owners = frame["owner_id"].astype("object")
        matches = owners.isna() if query.owner == UNASSIGNED else owners == query.owner
        keep &= matches.to_numpy(dtype=bool)
    if query.grades and "grade" in frame:
        keep &= frame["grade"].astype(str).isin(query.grades).to_numpy()
    for name, value in (("channel", query.channel), ("campaign_id", query.campaign)):
        if value and name in frame:
            keep &= (frame[name].astype("object") == value).to_numpy(dtype=bool)
    if (query.created_from or query.created_to) and "created_at" in frame:
        created = pd.to_datetime(frame["created_at"], utc=True)
        if query.created_from:
            keep &= (created >= pd.Timestamp(query.created_from, tz="UTC")).to_numpy()
        if query.created_to:
            end = pd.Timestamp(query.created_to, tz="UTC") + pd.Timedelta(days=1)
            keep &= (created < end).to_numpy()
    selected = frame[keep]
    if query.capacity is not None and len(selected):
        owner = (
            selected["owner_id"].astype("object").fillna(UNASSIGNED)
            if "owner_id" in selected
            else pd.Series(UNASSIGNED, index=selected.index)
        )
        selected = selected[owner.groupby(owner, sort=False).cumcount().to_numpy() < query.capacity]
    if query.sort != "rank" and query.sort in selected:
        selected = selected.iloc[_order(selected[query.sort], query.descending)]
    elif query.descending:
        selected = selected.iloc[::-1]
    return selected


def _order(values: pd.Series, descending: bool) -> np.ndarray:
    """A stable order by ``values`` (ties keep the rank order), missing values last either way."""
    if values.name == "created_at":
        values = pd.to_datetime(values, utc=True)
    ranks = np.array(values.rank(method="dense"), dtype=float)  # writable
    if descending:
        ranks = -ranks
    ranks[values.isna().to_numpy()] = np.inf
    return np.argsort(ranks, kind="stable")


def owners_of(frame: pd.DataFrame) -> list[str]:
    if "owner_id" not in frame:
        return []
    return sorted({str(v) for v in frame["owner_id"].dropna().unique()})


def choices(frame: pd.DataFrame) -> dict[str, list[Any]]:
    """What the filters offer: owners, grades, channels and campaigns present in the queue."""
    campaigns: list[dict[str, Any]] = []
    if "campaign_id" in frame:
        names = frame.get("campaign_name", frame["campaign_id"])
        pairs = pd.DataFrame({"id": frame["campaign_id"], "name": names}).dropna(subset=["id"])
        for cid, name in pairs.drop_duplicates("id").sort_values("id").itertuples(index=False):
            campaigns.append({"id": str(cid), "name": None if pd.isna(name) else str(name)})
    channels = sorted({str(v) for v in frame["channel"].dropna()}) if "channel" in frame else []
    grades = sorted({str(v) for v in frame["grade"].dropna()}) if "grade" in frame else []
    return {
        "owners": owners_of(frame),
        "grades": grades,
        "channels": channels,
        "campaigns": campaigns,
    }


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{str(k): json_safe(v) for k, v in row.items()} for row in frame.to_dict("records")]


def _reason_list(value: Any) -> list[str]:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    return [str(v.get("text") if isinstance(v, dict) else v) for v in list(value)]


CSV_COLUMNS = (
    "rank",
    "lead_id",
    *contract.IDENTITY_FIELDS,
    "job_title",
    "owner_id",
    "last_stage",
    "verdict",
    "verdict_reason",
    "channel",
    "campaign_id",
    "campaign_name",
    "created_at",
    "score",
    "grade",
    "handoff",
    "fit_score",
    "engagement_score",
    "grid",
    "priority",
    "segment",
    "expected_conversion_date",
    "expected_value",
)


def _csv_safe(value: Any) -> Any:
    """A CRM value opened in a spreadsheet must not run as a formula (``=HYPERLINK(…)``)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def to_csv(frame: pd.DataFrame, primary: str | None) -> str:
    """The selected rows as CSV: identity, state, probabilities and reasons as plain columns
    (``reason_1`` … , ``reason_negative_1`` …)."""
    probabilities = [c for c in frame.columns if str(c).startswith("p_")]
    columns = [c for c in CSV_COLUMNS if c in frame] + probabilities
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    header = [*columns]
    header += [f"reason_{i}" for i in range(1, REASON_COLUMNS + 1)]
    header += [f"reason_negative_{i}" for i in range(1, REASON_COLUMNS + 1)]
    writer.writerow(header)
    for row in frame.to_dict("records"):
        values = [json_safe(row.get(c)) for c in columns]
        positive = _reason_list(row.get("reasons_positive"))[:REASON_COLUMNS]
        negative = _reason_list(row.get("reasons_negative"))[:REASON_COLUMNS]
        values += positive + [""] * (REASON_COLUMNS - len(positive))
        values += negative + [""] * (REASON_COLUMNS - len(negative))
        writer.writerow([_csv_safe("" if v is None else v) for v in values])
    return out.getvalue()
