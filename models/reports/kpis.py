"""The KPIs marketing and sales agree on, computed once from the validated tables.

By channel, by campaign and by month of lead creation, each with an ``all`` row:

- ``leads``: leads created;
- ``accepted`` / ``accepted_share``: leads with an ``accepted`` sales event (by the horizon);
- ``customers`` / ``conversion``: leads with a ``won`` sales event (lead-to-customer conversion);
- ``cycle_days_median`` / ``cycle_days_p75``: days from lead creation to its first ``won``, over
  the leads that were won;
- ``spend``, ``cost_per_lead``, ``cost_per_accepted``, ``cost_per_customer`` (in
  ``params.data.currency``): campaign spend is attributed to the leads the campaign brought
  (``leads.campaign_id``); a channel's spend is the sum of its campaigns' spend; a month's spend
  is each campaign's spend prorated by the share of its active time (``started_at`` →
  ``ended_at``, or → the horizon while it runs) that falls in that month (UTC calendar months;
  a campaign of zero duration counts in its start month). Leads without a campaign have no
  attributable spend: their costs are null, and they count in the ``all`` row's leads;
- ``predicted_conversion`` vs ``actual_conversion`` over ``matured_leads``: the mean calibrated
  probability of the primary target at the lead's first snapshot (its creation) against the
  share that reached the primary target within the window, for leads whose window ended by
  the horizon (uncensored). Months in the training slice are in-sample for the model.

Rates from recent months are low partly because those leads have had less time to be accepted
or won (right-censoring); ``matured_leads`` shows how many had a full window.

Flat exports (one row per lead, outcome columns, no campaigns or sales events) yield leads and
conversion (the export's outcome of the primary target); the other KPIs are listed as
unavailable with the reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from models.scorer import LeadScorer

ALL = "all"
NO_CAMPAIGN = "(no campaign)"
DEFINITIONS: dict[str, str] = {
    "leads": "leads created in the group",
    "accepted_share": "share of leads with an 'accepted' sales event by the horizon",
    "conversion": "share of leads won (a 'won' sales event) by the horizon",
    "cycle_days_median": "median days from lead creation to its first 'won' (won leads)",
    "cycle_days_p75": "75th percentile of days from creation to first 'won' (won leads)",
    "spend": "campaign spend attributed to the group (months: prorated by active time)",
    "cost_per_lead": "spend / leads",
    "cost_per_accepted": "spend / accepted leads",
    "cost_per_customer": "spend / won leads",
    "predicted_conversion": "mean predicted probability of the primary target at the lead's "
    "creation, over matured leads",
    "actual_conversion": "share of matured leads that reached the primary target within the window",
    "matured_leads": "leads whose window after creation ended by the horizon",
}
DAY_SECONDS = 86_400.0


def _ratio(numerator: float | None, denominator: float) -> float | None:
    if numerator is None or denominator == 0 or not np.isfinite(numerator):
        return None
    return float(numerator) / float(denominator)


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None or not np.isfinite(value) else round(float(value), digits)


def month_spend(campaigns: pd.DataFrame, horizon: pd.Timestamp) -> pd.Series:
    """Spend per 'YYYY-MM', each campaign prorated by its active time in each month."""
    totals: dict[str, float] = {}
    for row in campaigns.itertuples(index=False):
        start = pd.Timestamp(row.started_at)
        end = pd.Timestamp(row.ended_at) if pd.notna(row.ended_at) else horizon
        end = max(end, start)
        spend = float(row.spend)
        duration = (end - start).total_seconds()
        if duration <= 0:
            key = start.strftime("%Y-%m")
            totals[key] = totals.get(key, 0.0) + spend
            continue
        for period in pd.period_range(start.tz_convert(None), end.tz_convert(None), freq="M"):
            month_start = period.start_time.tz_localize("UTC")
            month_end = (period + 1).start_time.tz_localize("UTC")
            overlap = (min(end, month_end) - max(start, month_start)).total_seconds()
            if overlap > 0:
                key = period.strftime("%Y-%m")
                totals[key] = totals.get(key, 0.0) + spend * overlap / duration
    return pd.Series(totals, dtype="float64").sort_index()


def lead_frame(
    tables: Mapping[str, pd.DataFrame],
    primary_target: str,
    predictions: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per lead: group keys and outcomes (accepted, won, cycle days, predicted…)."""
    leads = tables["leads"]
    frame = pd.DataFrame(
        {
            "lead_id": leads["lead_id"].astype(str).to_numpy(),
            "created_at": pd.to_datetime(leads["created_at"], utc=True).to_numpy(),
        }
    )
    frame["month"] = pd.to_datetime(frame["created_at"], utc=True).dt.strftime("%Y-%m")
    campaign = (
        leads["campaign_id"].astype("object")
        if "campaign_id" in leads
        else pd.Series([None] * len(leads))
    )
    frame["campaign_id"] = campaign.where(campaign.notna(), None).to_numpy()
    if "campaigns" in tables:
        channel_of = dict(
            zip(
                tables["campaigns"]["campaign_id"].astype(str),
                tables["campaigns"]["channel"].astype(str).str.strip().str.lower(),
                strict=True,
            )
        )
        frame["channel"] = frame["campaign_id"].map(channel_of)
    elif "channel" in leads:
        frame["channel"] = leads["channel"].astype("object").to_numpy()
    else:
        frame["channel"] = None
    sales = tables.get("sales_events")
    if sales is not None:
        stage = sales["stage"].astype(str).str.strip().str.lower()
        accepted = set(sales.loc[stage == "accepted", "lead_id"].astype(str))
        won = sales[stage == "won"].groupby("lead_id", observed=True)["occurred_at"].min()
        won.index = won.index.astype(str)
        frame["accepted"] = frame["lead_id"].isin(accepted).astype("float64")
        frame["won"] = frame["lead_id"].isin(won.index).astype("float64")
        won_at = pd.to_datetime(frame["lead_id"].map(won), utc=True)
        frame["cycle_days"] = (won_at - frame["created_at"]).dt.total_seconds() / DAY_SECONDS
    else:
        frame["accepted"] = np.nan
        outcome = f"outcome_{primary_target}"
        frame["won"] = (
            pd.to_numeric(leads[outcome], errors="coerce").to_numpy(dtype="float64")
            if outcome in leads
            else np.nan
        )
        frame["cycle_days"] = np.nan
    frame["predicted"] = np.nan
    frame["actual"] = np.nan
    if predictions is not None and len(predictions):
        indexed = predictions.assign(lead_id=predictions["lead_id"].astype(str)).set_index(
            "lead_id"
        )
        frame["predicted"] = frame["lead_id"].map(indexed["predicted"]).astype("float64")
        frame["actual"] = frame["lead_id"].map(indexed["actual"]).astype("float64")
    return frame


def _summary(group: pd.DataFrame, spend: float | None) -> dict[str, Any]:
    leads = len(group)
    accepted = group["accepted"].sum() if group["accepted"].notna().any() else None
    customers = group["won"].sum() if group["won"].notna().any() else None
    cycle = group["cycle_days"].dropna()
    matured = group["actual"].notna() & group["predicted"].notna()
    return {
        "leads": int(leads),
        "accepted": None if accepted is None else int(accepted),
        "accepted_share": _round(_ratio(accepted, leads), 6),
        "customers": None if customers is None else int(customers),
        "conversion": _round(_ratio(customers, leads), 6),
        "cycle_days_median": _round(float(cycle.median()), 2) if len(cycle) else None,
        "cycle_days_p75": _round(float(cycle.quantile(0.75)), 2) if len(cycle) else None,
        "spend": _round(spend, 2),
        "cost_per_lead": _round(_ratio(spend, leads), 2),
        "cost_per_accepted": _round(_ratio(spend, accepted or 0), 2),
        "cost_per_customer": _round(_ratio(spend, customers or 0), 2),
        "matured_leads": int(matured.sum()),
        "predicted_conversion": _round(float(group.loc[matured, "predicted"].mean()), 6)
        if matured.any()
        else None,
        "actual_conversion": _round(float(group.loc[matured, "actual"].mean()), 6)
        if matured.any()
        else None,
    }


def _grouped(
    frame: pd.DataFrame,
    key: str,
    spend: Mapping[str, float] | None,
    total_spend: float | None,
    extra: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    labels = frame[key].astype("object").where(frame[key].notna(), NO_CAMPAIGN)
    names = set(labels.unique()) | set(spend or {})
    rows = []
    empty = frame.iloc[0:0]
    groups = dict(tuple(frame.groupby(labels.to_numpy(), sort=False)))
    for name in sorted(names, key=lambda n: (n == NO_CAMPAIGN, str(n))):
        group_spend = None if spend is None or name == NO_CAMPAIGN else spend.get(name, 0.0)
        row = {key: str(name), **(extra or {}).get(name, {})}
        row.update(_summary(groups.get(name, empty), group_spend))
        rows.append(row)
    rows.append({key: ALL, **_summary(frame, total_spend)})
    return rows


def compute_kpis(
    tables: Mapping[str, pd.DataFrame],
    horizon: pd.Timestamp,
    primary_target: str,
    window_days: int,
    currency: str,
    predictions: pd.DataFrame | None = None,
    timed: bool = True,
) -> dict[str, Any]:
    """The KPI report (JSON-ready): by channel, campaign and month, each with an ``all`` row.

    ``predictions``: per lead, ``lead_id``, ``predicted`` (probability of the primary target at
    its first snapshot) and ``actual`` (its label, NaN when censored). ``timed=False`` for data
    without real creation times (no by-month table)."""
    frame = lead_frame(tables, primary_target, predictions)
    campaigns = tables.get("campaigns")
    has_sales = "sales_events" in tables
    unavailable: dict[str, str] = {}
    if not has_sales:
        reason = "no sales_events table"
        unavailable.update(
            {
                "accepted_share": reason,
                "cycle_days_median": reason,
                "cycle_days_p75": reason,
                "cost_per_accepted": reason,
            }
        )
        if frame["won"].isna().all():
            unavailable["conversion"] = f"no sales_events table and no outcome_{primary_target}"
            unavailable["cost_per_customer"] = unavailable["conversion"]
    if campaigns is None:
        for name in ("spend", "cost_per_lead", "cost_per_accepted", "cost_per_customer"):
            unavailable.setdefault(name, "no campaigns table")
    if predictions is None or frame["actual"].isna().all():
        unavailable["predicted_conversion"] = "no matured (uncensored) scored leads"
        unavailable["actual_conversion"] = unavailable["predicted_conversion"]

    report: dict[str, Any] = {
        "currency": currency,
        "horizon": horizon.isoformat(),
        "window_days": window_days,
        "primary_target": primary_target,
        "definitions": DEFINITIONS,
        "unavailable": unavailable,
    }
    if campaigns is not None:
        campaign_spend = dict(
            zip(campaigns["campaign_id"].astype(str), campaigns["spend"].astype(float), strict=True)
        )
        channel = campaigns["channel"].astype(str).str.strip().str.lower()
        channel_spend = campaigns["spend"].astype(float).groupby(channel.to_numpy()).sum()
        total = float(campaigns["spend"].sum())
        names = campaigns["name"].astype("object") if "name" in campaigns else None
        extra = {
            str(cid): {
                "name": None if names is None or pd.isna(names.iloc[i]) else str(names.iloc[i]),
                "channel": str(channel.iloc[i]),
            }
            for i, cid in enumerate(campaigns["campaign_id"])
        }
        report["by_channel"] = _grouped(frame, "channel", channel_spend.to_dict(), total)
        report["by_campaign"] = _grouped(frame, "campaign_id", campaign_spend, total, extra)
        if timed:
            months = month_spend(campaigns, horizon).to_dict()
            report["by_month"] = _grouped(frame, "month", months, total)
    else:
        report["by_channel"] = (
            _grouped(frame, "channel", None, None) if frame["channel"].notna().any() else []
        )
        report["by_campaign"] = (
            _grouped(frame, "campaign_id", None, None) if frame["campaign_id"].notna().any() else []
        )
        if timed:
            report["by_month"] = _grouped(frame, "month", None, None)
    if not timed:
        report["by_month"] = []
        unavailable["by_month"] = "no real creation times (rows in random order)"
    if not report["by_channel"]:
        unavailable["by_channel"] = "no campaigns table and no channel column"
    if not report["by_campaign"]:
        unavailable["by_campaign"] = "no campaign_id on leads"
    return report


def first_snapshot_predictions(
    snapshots: pd.DataFrame, X: np.ndarray, scorer: LeadScorer
) -> pd.DataFrame:
    """Per lead: the primary target's probability at its first snapshot, and that
    snapshot's label (NaN when censored)."""
    primary = scorer.definition.target
    order = snapshots.sort_values(["lead_id", "as_of"], kind="stable")
    rows = order.drop_duplicates("lead_id").index.to_numpy()
    probabilities = scorer.probabilities(X[rows])[primary]
    return pd.DataFrame(
        {
            "lead_id": snapshots["lead_id"].to_numpy()[rows],
            "predicted": probabilities,
            "actual": snapshots[f"label_{primary}"].to_numpy(dtype=np.float64)[rows],
        }
    )
