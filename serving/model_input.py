"""Request → model input: a lead object of the API (attributes, touches, sales events, as_of)
becomes a feature row of the served model's engine (``FeatureEngine.transform_one``, the same
features as the batch path), and scored rows become the JSON answers.

Scoring itself is :class:`~models.scorer.LeadScorer`'s (``summarise``, ``explain``, ``rank``),
as for every other caller. Single leads and batches go through the same functions, so a lead
gets the same answer alone or in a batch of a thousand.

What depends on the served model is checked here, at request time (the request models of
:mod:`serving.schemas` are built before any model loads, and a reload may change it):

- **lead fields**: the contract's lead columns (used by the model or not) and the extra
  attributes the model declares as features (``engine.lead_categoricals_``,
  ``engine.numerics_``: a flat-export model's columns). Any other field is a 422 naming it (a
  typo such as ``senority`` would otherwise be ignored and the lead scored without it);
- **unseen values**: a categorical value the model has no code for (a new ``country``, an
  unknown ``campaign_id``…) is scored as the model's "other" and listed in the answer's
  ``unseen``, normalised as the engine looks it up.
"""

from __future__ import annotations

import datetime as dt
import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from features import contract
from models.reasons import reason_records
from models.scorer import LeadScorer, Reasons, Summary

MAX_LISTED_FIELDS = 30
"""Accepted field names listed in an unknown-field message (a flat model may have hundreds)."""


class LeadInputError(ValueError):
    """A lead field the served model cannot use (e.g. text in one of its numeric columns).

    ``loc`` is the field's path inside the lead object; the API turns it into a 422."""

    def __init__(self, loc: tuple[str | int, ...], message: str, value: Any = None) -> None:
        super().__init__(message)
        self.loc = loc
        self.message = message
        self.value = value


@dataclass(frozen=True)
class Prepared:
    """One lead ready for the model: its id, as_of, feature row and the categorical values
    the model has no code for (``{"field", "value"}``, in request order, each once)."""

    lead_id: str
    as_of: dt.datetime
    row: np.ndarray
    unseen: tuple[dict[str, str], ...] = ()


def _text(value: Any) -> str:
    """A categorical value as the engine looks it up (``FeatureEngine.transform_one``)."""
    return str(value).strip()


class ModelInput:
    """Turns API lead objects into the feature rows of one scorer's engine."""

    def __init__(self, scorer: LeadScorer) -> None:
        engine = self.engine = scorer.engine
        self.numerics = frozenset(engine.numerics_)
        self.categoricals = tuple(engine.lead_categoricals_)
        self.lowercase = frozenset(
            c.name for c in contract.LEADS if c.lowercase and c.name in self.categoricals
        )
        # Ids the model has history for; none when it was trained without that table (every
        # id then reads "unknown" by design, which is not news to report per lead).
        self.ids: dict[str, Mapping[str, int]] = {}
        if engine.has_campaigns_:
            self.ids["campaign_id"] = engine.campaign_ids_
        if engine.has_accounts_:
            self.ids["account_id"] = engine.account_ids_

    @property
    def lead_fields(self) -> frozenset[str]:
        """The lead fields this model accepts: the contract's, and its own extra features."""
        return frozenset(contract.LEADS.column_names) | set(self.categoricals) | self.numerics

    def check_fields(self, lead: Mapping[str, Any]) -> None:
        """:class:`LeadInputError` on the first lead field that is neither a contract column
        nor one of the model's features, with the closest accepted name."""
        accepted = self.lead_fields
        unknown = [name for name in lead if name not in accepted]
        if not unknown:
            return
        name = unknown[0]
        close = difflib.get_close_matches(name.lower(), sorted(accepted), n=1, cutoff=0.6)
        hint = f"did you mean '{close[0]}'? " if close else ""
        extras = sorted(accepted - set(contract.LEADS.column_names))
        takes = f"the contract's lead fields ({', '.join(contract.LEADS.column_names)})"
        if extras:
            listed = ", ".join(extras[:MAX_LISTED_FIELDS])
            more = (
                f" and {len(extras) - MAX_LISTED_FIELDS} more"
                if len(extras) > MAX_LISTED_FIELDS
                else ""
            )
            takes += f" and its own: {listed}{more}"
        else:
            takes += " and no other attribute"
        others = f" (also unknown: {', '.join(unknown[1:6])})" if len(unknown) > 1 else ""
        raise LeadInputError(
            (name,),
            f"unknown lead field '{name}': {hint}this model takes {takes}{others}",
            lead[name],
        )

    def unseen(
        self, lead: Mapping[str, Any], touches: Sequence[Mapping[str, Any]] = ()
    ) -> tuple[dict[str, str], ...]:
        """The categorical values of a request the model has no code for, as the engine
        normalises them (a value it maps to a code is not listed, whatever its case)."""
        found: dict[tuple[str, str], None] = {}  # ordered, each pair once
        index = self.engine.vocabulary_index_
        for name in self.categoricals:
            value = lead.get(name)
            if value is None:
                continue
            text = _text(value)
            text = text.lower() if name in self.lowercase else text
            if text and text not in index[name]:
                found[(name, text)] = None
        for name, ids in self.ids.items():
            value = lead.get(name)
            if value and value not in ids:  # ids are looked up as sent
                found[(name, str(value))] = None
        campaigns = self.ids.get("campaign_id")
        if campaigns is not None and self.engine.has_touches_:
            for touch in touches:
                value = touch.get("campaign_id")
                if value and value not in campaigns:
                    found[("touches.campaign_id", str(value))] = None
        return tuple({"field": field, "value": value} for field, value in found)

    def coerce_lead(self, lead: Mapping[str, Any]) -> dict[str, Any]:
        """The lead as the engine takes it; a flat model's numeric columns must be numbers
        (numeric text is accepted), else :class:`LeadInputError`."""
        out = dict(lead)
        for name in self.numerics:
            value = out.get(name)
            if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
                continue
            if isinstance(value, bool):
                out[name] = float(value)
                continue
            try:
                number = float(str(value).strip())
            except ValueError:
                raise LeadInputError(
                    (name,),
                    f"'{name}' is a numeric feature of this model: expected a number",
                    value,
                ) from None
            if not np.isfinite(number):
                raise LeadInputError((name,), f"'{name}' must be a finite number", value)
            out[name] = number
        return out

    def prepare(
        self,
        lead: Mapping[str, Any],
        touches: Sequence[Mapping[str, Any]],
        sales_events: Sequence[Mapping[str, Any]],
        as_of: dt.datetime | None,
    ) -> Prepared:
        self.check_fields(lead)
        when = as_of if as_of is not None else dt.datetime.now(dt.UTC)
        row = self.engine.transform_one(self.coerce_lead(lead), touches, sales_events, when)
        return Prepared(str(lead["lead_id"]), when, row, self.unseen(lead, touches))


def unseen_fields(prepared: Iterable[Prepared]) -> list[str]:
    """The field of every unseen value of these leads (one entry per lead and value): what
    :meth:`serving.metrics.ApiMetrics.count_unseen` counts."""
    return [item["field"] for p in prepared for item in p.unseen]


def answers(
    scorer: LeadScorer,
    prepared: Sequence[Prepared],
    model: Mapping[str, str],
    reasons: int = 3,
    capacity: int | None = None,
    ranked: bool = False,
) -> list[dict[str, Any]]:
    """JSON-ready answers on one thread (an API worker). In the order given; with ``ranked``,
    in :meth:`LeadScorer.rank` order and cut at ``capacity`` (every lead is predicted once,
    only the kept ones are explained), each with its ``priority`` among all the leads given
    (null otherwise: one lead alone has no queue to be ranked in)."""
    X = np.vstack([p.row for p in prepared]) if prepared else np.zeros((0, 0))
    priority: list[int | None] = [None] * len(prepared)
    if ranked:
        summary = scorer.summarise(X, num_threads=1)
        primary = summary.probabilities[scorer.primary]
        order = scorer.rank([p.lead_id for p in prepared], primary)
        rows = order[:capacity] if capacity is not None else order
        priority = [int(v) for v in scorer.priority(primary).tolist()]
        explained = scorer.explain(X[rows], count=reasons, num_threads=1)
    else:  # every lead explained: its tree decisions serve its scores and reasons at once
        rows = np.arange(len(prepared))
        summary, explained = scorer.summarise_explained(X, count=reasons, num_threads=1)
    return [
        answer(prepared[row], row, summary, explained[k], scorer.targets, model, priority[row])
        for k, row in enumerate(rows.tolist())
    ]


def answer(
    prepared: Prepared,
    i: int,
    summary: Summary,
    reasons: Reasons,
    targets: Sequence[str],
    model: Mapping[str, str],
    priority: int | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {"lead_id": prepared.lead_id, "as_of": prepared.as_of.isoformat()}
    for target in targets:
        out[f"p_{target}"] = float(summary.probabilities[target][i])
    out["score"] = int(summary.score[i])
    out["grade"] = str(summary.grade[i])
    out["handoff"] = bool(summary.handoff[i])
    fit, engagement = summary.fit_score[i], summary.engagement_score[i]
    out["fit_score"] = None if np.isnan(fit) else int(fit)
    out["engagement_score"] = None if np.isnan(engagement) else int(engagement)
    out["grid"] = summary.grid[i]
    out["priority"] = priority
    out["p_converted_by"] = summary.converted_by(i)
    days = np.nan if summary.expected_days is None else float(summary.expected_days[i])
    out["expected_conversion_date"] = (
        None if days != days else (prepared.as_of + dt.timedelta(days=days)).date().isoformat()
    )
    value = np.nan if summary.expected_value is None else float(summary.expected_value[i])
    out["expected_value"] = None if value != value else round(value, 2)
    out["segment"] = summary.segment_of(i)
    out["reasons_positive"] = reason_records(reasons[0])
    out["reasons_negative"] = reason_records(reasons[1])
    out["unseen"] = [dict(item) for item in prepared.unseen]
    out["model"] = dict(model)
    return out
