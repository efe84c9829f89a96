"""Per-lead reasons: LightGBM's own SHAP contributions summed to business fields, worded
for people ("attended a webinar 3 days ago", "seniority: vp")."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from features.engine import catalog


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


def describe(
    name: str,
    value: float,
    categories: Mapping[str, Sequence[str]],
    context: catalog.Context | None = None,
) -> str:
    """One feature value in words, as the feature catalog (features/engine/catalog.py) words it;
    ``categories`` maps each categorical feature to its vocabulary; ``context`` is the fitted
    engine's (currency, trend period)."""
    return catalog.word(name, value, categories, context)


class ReasonTable:
    """The one reason algorithm: a lead's SHAP contributions (bias excluded) summed per
    business field, the fields with the largest positive and negative totals kept, each worded
    from its largest same-signed feature. Per-model lookups (the members of each field,
    vocabularies) are computed once; only the kept reasons are worded."""

    def __init__(
        self,
        feature_names: Sequence[str],
        business_fields: Sequence[str],
        categories: Mapping[str, Sequence[str]],
        context: catalog.Context | None = None,
    ) -> None:
        self.names = list(feature_names)
        self.context = context
        fields: list[str] = []
        index: dict[str, int] = {}
        for name in business_fields:
            if name not in index:
                index[name] = len(fields)
                fields.append(name)
        self.fields = fields
        self.field_of = [index[name] for name in business_fields]
        self.members = [
            [i for i, name in enumerate(business_fields) if name == field] for field in fields
        ]
        self.categories = {name: tuple(values) for name, values in categories.items()}

    def _totals(self, contributions: np.ndarray) -> list[float]:
        totals = [0.0] * len(self.fields)
        for field, value in zip(self.field_of, contributions.tolist(), strict=True):
            totals[field] += value
        return totals

    def _reason(
        self, field: int, total: float, contributions: np.ndarray, row: np.ndarray
    ) -> Reason:
        members = self.members[field]
        sign = np.sign(total)
        same_sign = [i for i in members if np.sign(contributions[i]) == sign] or members
        lead_feature = max(same_sign, key=lambda i: abs(contributions[i]))
        text = describe(
            self.names[lead_feature], float(row[lead_feature]), self.categories, self.context
        )
        return Reason(self.fields[field], total, text)

    def top(
        self, contributions: np.ndarray, row: np.ndarray, count: int
    ) -> tuple[list[Reason], list[Reason]]:
        """The ``count`` strongest positive and negative reasons of one lead, strongest first
        (ties keep feature order)."""
        totals = self._totals(contributions)
        order = range(len(totals))
        positive = sorted((f for f in order if totals[f] > 0), key=lambda f: -totals[f])
        negative = sorted((f for f in order if totals[f] < 0), key=lambda f: totals[f])
        return (
            [self._reason(f, totals[f], contributions, row) for f in positive[:count]],
            [self._reason(f, totals[f], contributions, row) for f in negative[:count]],
        )
