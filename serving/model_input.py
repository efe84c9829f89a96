"""Request → model input: a lead object of the API (attributes, touches, sales events, as_of)
becomes a feature row of the served model's engine (``FeatureEngine.transform_one``, the same
features as the batch path), and scored rows become the JSON answers.

Scoring itself is :class:`~models.scorer.LeadScorer`'s (``summarise``, ``explain``, ``rank``),
as for every other caller. Single leads and batches go through the same functions, so a lead
gets the same answer alone or in a batch of a thousand.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.reasons import reason_records
from models.scorer import LeadScorer, Reasons, Summary


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
    """One lead ready for the model: its id, as_of and feature row."""

    lead_id: str
    as_of: dt.datetime
    row: np.ndarray


class ModelInput:
    """Turns API lead objects into the feature rows of one scorer's engine."""

    def __init__(self, scorer: LeadScorer) -> None:
        self.engine = scorer.engine
        self.numerics = frozenset(self.engine.numerics_)

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
        when = as_of if as_of is not None else dt.datetime.now(dt.UTC)
        row = self.engine.transform_one(self.coerce_lead(lead), touches, sales_events, when)
        return Prepared(str(lead["lead_id"]), when, row)


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
    only the kept ones are explained)."""
    X = np.vstack([p.row for p in prepared]) if prepared else np.zeros((0, 0))
    summary = scorer.summarise(X, num_threads=1)
    if ranked:
        order = scorer.rank([p.lead_id for p in prepared], summary.probabilities[scorer.primary])
        rows = order[:capacity] if capacity is not None else order
    else:
        rows = np.arange(len(prepared))
    explained = scorer.explain(X[rows], count=reasons, num_threads=1)
    return [
        answer(prepared[row], row, summary, explained[k], scorer.targets, model)
        for k, row in enumerate(rows.tolist())
    ]


def answer(
    prepared: Prepared,
    i: int,
    summary: Summary,
    reasons: Reasons,
    targets: Sequence[str],
    model: Mapping[str, str],
) -> dict[str, Any]:
    out: dict[str, Any] = {"lead_id": prepared.lead_id, "as_of": prepared.as_of.isoformat()}
    for target in targets:
        out[f"p_{target}"] = float(summary.probabilities[target][i])
    out["score"] = int(summary.score[i])
    out["grade"] = str(summary.grade[i])
    out["handoff"] = bool(summary.handoff[i])
    out["reasons_positive"] = reason_records(reasons[0])
    out["reasons_negative"] = reason_records(reasons[1])
    out["model"] = dict(model)
    return out
