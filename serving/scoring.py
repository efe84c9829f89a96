"""The API's scoring path: the trained :class:`~models.scorer.LeadScorer`, minus pandas.

``LeadScorer.score_lead`` builds a one-row DataFrame to grade one lead (about 1.3 ms of its
3 ms); here the same pieces are called on numpy arrays: the engine's ``transform_one``, the
scorer's ``probabilities`` (each target's booster on one thread + its calibrator), ``grade``,
``handoff`` and ``reasons``. Only the 0–100 score is computed here, with the formula of
``LeadScorer.score_matrix`` (``rint(100 p)`` of the primary target, clipped); the tests check
that every answer equals ``score_lead``'s for the same lead, bit for bit.

Single leads and batches go through the same functions, so a lead gets the same answer alone
or in a batch of a thousand.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.reasons import Reason, describe, reason_records
from models.scorer import LeadScorer


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


@dataclass(frozen=True)
class Summary:
    """Scores of n rows (no reasons)."""

    probabilities: dict[str, np.ndarray]
    score: np.ndarray
    grade: np.ndarray
    handoff: np.ndarray


class FastScorer:
    """Wraps a LeadScorer for serving: one thread, numpy in, JSON-ready answers out."""

    def __init__(self, scorer: LeadScorer, reasons: int = 3) -> None:
        self.scorer = scorer
        self.engine = scorer.engine
        self.targets = tuple(scorer.models)
        self.primary = scorer.definition.target
        self.reason_count = reasons
        self.numerics = frozenset(self.engine.numerics_)
        self.width = len(self.engine.feature_names_)
        self.reasons = ReasonTable(scorer)

    # ----------------------------------------------------------- features
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

    # ------------------------------------------------------------ scoring
    def summarise(self, X: np.ndarray, num_threads: int = 1) -> Summary:
        """Probabilities, score, grade and handoff of every row: one thread for the API's
        worker; batch scoring passes 0 (all cores)."""
        probabilities = self.scorer.probabilities(X, num_threads=num_threads)
        primary = probabilities[self.primary]
        # LeadScorer.score_matrix's score: the primary target's probability × 100, rounded.
        score = np.clip(np.rint(primary * 100), 0, 100).astype(np.int64)
        grades = self.scorer.grade(primary)
        return Summary(probabilities, score, grades, self.scorer.handoff(grades))

    def explain(
        self, X: np.ndarray, count: int | None = None, num_threads: int = 1
    ) -> list[tuple[list[Reason], list[Reason]]]:
        """Top reasons per row: the primary target's SHAP contributions, worded by
        :class:`ReasonTable` (the same reasons as ``LeadScorer.reasons``). One thread for the
        API's worker; batch scoring passes 0 (all cores)."""
        count = self.reason_count if count is None else count
        if not count or not len(X):
            return [([], []) for _ in range(len(X))]
        model = self.scorer.models[self.primary]
        contributions = np.asarray(
            model.booster.predict(
                X, num_iteration=model.best_iteration, pred_contrib=True, num_threads=num_threads
            )
        )[:, :-1]
        return [self.reasons.top(contributions[i], X[i], count) for i in range(len(X))]

    def matrix(self, prepared: Sequence[Prepared]) -> np.ndarray:
        if not prepared:
            return np.zeros((0, self.width))
        return np.vstack([p.row for p in prepared])

    def answers(
        self,
        prepared: Sequence[Prepared],
        model: Mapping[str, str],
        with_reasons: bool = True,
    ) -> list[dict[str, Any]]:
        """JSON-ready answers, in the order given."""
        X = self.matrix(prepared)
        rows = np.arange(len(prepared))
        return self._answers(prepared, X, self.summarise(X), rows, model, with_reasons)

    def ranking(self, prepared: Sequence[Prepared]) -> tuple[np.ndarray, Summary]:
        """Order of the leads by the primary target's probability (descending; ties by
        lead_id, as the pipeline's queue), and their scores."""
        summary = self.summarise(self.matrix(prepared))
        return self._order(prepared, summary), summary

    def ranked_answers(
        self, prepared: Sequence[Prepared], model: Mapping[str, str], capacity: int | None
    ) -> list[dict[str, Any]]:
        """The answers of the first ``capacity`` leads of :meth:`ranking` (all without a
        capacity), best first: every lead is predicted once, only the kept ones explained."""
        X = self.matrix(prepared)
        summary = self.summarise(X)
        order = self._order(prepared, summary)
        kept = order[:capacity] if capacity is not None else order
        return self._answers(prepared, X, summary, kept, model, with_reasons=True)

    def _order(self, prepared: Sequence[Prepared], summary: Summary) -> np.ndarray:
        primary = summary.probabilities[self.primary]
        ids = np.array([p.lead_id for p in prepared], dtype=object)
        return np.lexsort((ids, -primary)) if len(prepared) else np.zeros(0, np.int64)

    def _answers(
        self,
        prepared: Sequence[Prepared],
        X: np.ndarray,
        summary: Summary,
        rows: np.ndarray,
        model: Mapping[str, str],
        with_reasons: bool,
    ) -> list[dict[str, Any]]:
        """Answers of ``rows`` (indices into ``prepared``, ``X`` and ``summary``), in that
        order."""
        reasons = self.explain(X[rows]) if with_reasons else [([], [])] * len(rows)
        return [
            answer(prepared[row], row, summary, reasons[k], self.targets, model)
            for k, row in enumerate(rows.tolist())
        ]


class ReasonTable:
    """``models.reasons.top_reasons`` with its per-model lookups computed once.

    ``top_reasons`` rebuilds each field's member list and words every field of every lead
    (about 0.3 ms a lead); here members are precomputed and only the reasons kept are worded.
    Same sums (in feature order), same ordering, same ties, same text: the tests compare
    both on many leads."""

    def __init__(self, scorer: LeadScorer) -> None:
        engine = scorer.engine
        spec = engine.features_
        self.names = list(engine.feature_names_)
        self.descriptions = [f.description for f in spec]
        fields: list[str] = []
        index: dict[str, int] = {}
        for info in spec:
            if info.business_field not in index:
                index[info.business_field] = len(fields)
                fields.append(info.business_field)
        self.fields = fields
        self.field_of = np.array([index[f.business_field] for f in spec], dtype=np.int64)
        self.members = [
            [i for i, info in enumerate(spec) if info.business_field == field] for field in fields
        ]
        self.categories = {name: engine.vocabulary(name) for name in engine.categorical_features_}

    def _totals(self, contributions: np.ndarray) -> list[float]:
        totals = [0.0] * len(self.fields)
        for field, value in zip(self.field_of.tolist(), contributions.tolist(), strict=True):
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
            self.names[lead_feature],
            float(row[lead_feature]),
            self.categories,
            self.descriptions[lead_feature],
        )
        return Reason(self.fields[field], total, text)

    def top(
        self, contributions: np.ndarray, row: np.ndarray, count: int
    ) -> tuple[list[Reason], list[Reason]]:
        totals = self._totals(contributions)
        order = range(len(totals))
        positive = sorted((f for f in order if totals[f] > 0), key=lambda f: -totals[f])
        negative = sorted((f for f in order if totals[f] < 0), key=lambda f: totals[f])
        return (
            [self._reason(f, totals[f], contributions, row) for f in positive[:count]],
            [self._reason(f, totals[f], contributions, row) for f in negative[:count]],
        )


def answer(
    prepared: Prepared,
    i: int,
    summary: Summary,
    reasons: tuple[list[Reason], list[Reason]],
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
