"""Per-lead reasons: LightGBM's own SHAP contributions summed to business fields, worded
for people ("attended a webinar 3 days ago", "seniority: vp")."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from features.engine import NEVER_DAYS, OTHER

TOUCH_WORDS: dict[str, tuple[str, str]] = {
    "email_open": ("email opens", "opened an email"),
    "email_click": ("email clicks", "clicked an email"),
    "web_visit": ("website visits", "visited the website"),
    "pricing_page_visit": ("pricing-page visits", "visited the pricing page"),
    "content_download": ("content downloads", "downloaded content"),
    "webinar_registration": ("webinar registrations", "registered for a webinar"),
    "webinar_attendance": ("webinars attended", "attended a webinar"),
    "event_attendance": ("events attended", "attended an event"),
    "demo_request": ("demo requests", "requested a demo"),
    "form_submit": ("form submissions", "submitted a form"),
    "unsubscribe": ("unsubscribes", "unsubscribed from emails"),
    OTHER: ("other interactions", "had another interaction"),
}


@dataclass(frozen=True)
class Reason:
    field: str
    contribution: float
    text: str


def reason_records(reasons: Sequence[Reason]) -> list[dict[str, Any]]:
    """Reasons as the JSON objects every answer carries (API, bundle, batch scoring)."""
    return [
        {"field": r.field, "text": r.text, "contribution": float(r.contribution)} for r in reasons
    ]


def _days(value: float) -> str:
    if value < 1:
        return "today" if value >= 0 else "recently"
    whole = round(value)
    return f"{whole} day{'s' if whole != 1 else ''} ago"


def describe(
    name: str, value: float, categories: Mapping[str, Sequence[str]], description: str
) -> str:
    """One feature value in words."""
    if name in categories:
        if np.isnan(value):
            return f"{name.replace('_', ' ')} unknown"
        vocabulary = categories[name]
        code = int(value)
        label = vocabulary[code] if code < len(vocabulary) else "other"
        return f"{name.replace('_', ' ')}: {label}"
    for touch, (plural, verb) in TOUCH_WORDS.items():
        if not name.startswith(f"{touch}_"):
            continue
        suffix = name[len(touch) + 1 :]
        if suffix == "days_since":
            if np.isnan(value) or value >= NEVER_DAYS:
                return f"never {verb}"
            return f"{verb} {_days(value)}"
        count = 0 if np.isnan(value) else int(value)
        if suffix == "all":
            return f"{count} {plural} so far"
        return f"{count} {plural} in the last {suffix.removesuffix('d')} days"
    if np.isnan(value):
        return f"{description}: unknown"
    if name == "lead_age_days":
        return f"lead created {_days(value)}"
    if name == "touches_trend":
        if value == 0:
            return "engagement steady week over week"
        word = "rising" if value > 0 else "falling"
        return f"engagement {word} ({value:+.0f} touches vs the week before)"
    if name == "sales_days_since_last":
        return (
            "no sales activity yet"
            if value >= NEVER_DAYS
            else f"last sales activity {_days(value)}"
        )
    if name == "sales_recycled":
        return "recycled lead (assigned to sales again)" if value else "first time with sales"
    if name.startswith("sales_") and name.endswith("_count"):
        stage = name.removeprefix("sales_").removesuffix("_count")
        return f"{int(value)} earlier '{stage}' sales event{'s' if int(value) != 1 else ''}"
    if name.endswith("_lift"):
        level, target = name.removesuffix("_lift").split("_", 1)
        return f"{level} track record: {value:.1f}× the average share of leads {target}"
    if name == "account_employees":
        return f"company size: {value:,.0f} employees"
    if name == "account_annual_revenue":
        return f"company revenue: {value:,.0f}"
    if name == "account_earlier_leads":
        return f"{int(value)} earlier leads from the same account"
    if name == "account_opportunities":
        return f"{int(value)} earlier opportunities at the same account"
    if name == "account_wins":
        return f"{int(value)} earlier wins at the same account"
    if name == "campaign_spend_per_lead":
        return f"source campaign spends {value:,.0f} per lead"
    if name == "campaign_daily_leads":
        return f"source campaign brings {value:,.1f} leads a day"
    if name == "campaign_daily_spend":
        return f"source campaign spends {value:,.0f} a day"
    return f"{description}: {value:,.4g}"


def top_reasons(
    contributions: np.ndarray,
    values: np.ndarray,
    feature_names: Sequence[str],
    business_fields: Sequence[str],
    descriptions: Sequence[str],
    categories: Mapping[str, Sequence[str]],
    count: int = 3,
) -> tuple[list[Reason], list[Reason]]:
    """Top positive and negative reasons for one lead (contributions exclude the bias)."""
    totals: dict[str, float] = {}
    for field, contribution in zip(business_fields, contributions, strict=True):
        totals[field] = totals.get(field, 0.0) + float(contribution)
    reasons = []
    for field, total in totals.items():
        if total == 0.0:
            continue
        members = [i for i, f in enumerate(business_fields) if f == field]
        same_sign = [i for i in members if np.sign(contributions[i]) == np.sign(total)] or members
        lead_feature = max(same_sign, key=lambda i: abs(contributions[i]))
        text = describe(
            feature_names[lead_feature],
            float(values[lead_feature]),
            categories,
            descriptions[lead_feature],
        )
        reasons.append(Reason(field, total, text))
    positive = sorted((r for r in reasons if r.contribution > 0), key=lambda r: -r.contribution)
    negative = sorted((r for r in reasons if r.contribution < 0), key=lambda r: r.contribution)
    return positive[:count], negative[:count]
