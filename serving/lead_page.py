"""One lead as sales sees it on its page: who it is, its queue row (score, grade, reasons), and
its timeline — touches and sales events from the validated tables, sales' feedback and the
scores leadscore gave it, newest first."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from features import contract
from features.storage import read_validated, validated_present
from serving.artifacts import json_safe

MAX_EVENTS = 500
"""Timeline entries shown per lead (the newest)."""


def _campaign_names(validated: Path) -> dict[str, str]:
    path = validated / "campaigns.parquet"
    if not path.exists():
        return {}
    campaigns = pd.read_parquet(path, columns=["campaign_id", "name"])
    return {
        str(cid): str(name)
        for cid, name in campaigns.itertuples(index=False)
        if pd.notna(cid) and pd.notna(name)
    }


def read_history(validated: Path, lead_id: str) -> dict[str, Any] | None:
    """The lead's row and events from the validated tables (a filtered read of one lead);
    None when the lead is not there (or there are no validated tables)."""
    validated = Path(validated)
    if not validated_present(validated, "leads"):
        return None
    tables = read_validated(validated, ["leads", *contract.EVENT_TABLES], [lead_id])
    leads = tables["leads"]
    if not len(leads):
        return None
    names = _campaign_names(validated)
    events: list[dict[str, Any]] = []
    touches = tables.get("touches")
    if touches is not None:
        for row in touches.to_dict("records"):
            campaign = row.get("campaign_id")
            events.append(
                {
                    "kind": "touch",
                    "at": row["occurred_at"],
                    "what": str(row["touch_type"]).replace("_", " "),
                    "detail": names.get(str(campaign), campaign) if pd.notna(campaign) else None,
                }
            )
    sales = tables.get("sales_events")
    if sales is not None:
        for row in sales.to_dict("records"):
            detail = [
                f"{key} {row[key]}"
                for key in ("owner_id", "reason", "amount")
                if key in row and pd.notna(row[key])
            ]
            events.append(
                {
                    "kind": "sales",
                    "at": row["occurred_at"],
                    "what": str(row["stage"]),
                    "detail": ", ".join(detail) or None,
                }
            )
    lead = {str(k): json_safe(v) for k, v in leads.iloc[0].to_dict().items()}
    return {"lead": lead, "events": events}


def timeline(
    history: dict[str, Any] | None,
    feedback: Sequence[dict[str, Any]],
    scores: Sequence[dict[str, Any]],
) -> list[dict[str, Any]]:
    """Events, feedback and scores in one list, newest first, at most :data:`MAX_EVENTS`."""
    entries = list(history["events"]) if history else []
    for item in feedback:
        entries.append(
            {
                "kind": "feedback",
                "at": item["occurred_at"],
                "what": str(item["verdict"]),
                "detail": "; ".join(
                    str(item[k]) for k in ("reason", "note", "actor") if item.get(k)
                )
                or None,
            }
        )
    for item in scores:
        entries.append(
            {
                "kind": "score",
                "at": item["scored_at"],
                "what": f"scored {item['score']} ({item['grade']})",
                "detail": f"model version {item['model_version']}, {item['source']}",
            }
        )
    entries.sort(key=lambda e: contract.utc(e["at"]), reverse=True)
    return [{**e, "at": json_safe(contract.utc(e["at"]))} for e in entries[:MAX_EVENTS]]
