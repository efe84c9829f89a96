"""Per-lead reasons: LightGBM's own SHAP contributions summed to business fields, worded
for people ("attended a webinar 3 days ago", "seniority: vp")."""

from __future__ import annotations

import itertools
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


@dataclass(frozen=True)
class ReasonSide:
    """One side (positive or negative) of the reasons of n rows, flat: row ``i``'s reasons are
    ``offsets[i]:offsets[i + 1]``, strongest first; per reason its business field (an index
    into :attr:`ReasonTable.fields`), the field's total contribution and its words."""

    offsets: np.ndarray
    field: np.ndarray
    contribution: np.ndarray
    text: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1


@dataclass(frozen=True)
class ReasonColumns:
    """The reasons of n rows, both sides, as columns (no Python object per reason): batch
    scoring writes them to Arrow or JSON directly; :meth:`lists` gives :class:`Reason` lists."""

    fields: tuple[str, ...]
    positive: ReasonSide
    negative: ReasonSide

    def __len__(self) -> int:
        return len(self.positive)

    def lists(self) -> list[tuple[list[Reason], list[Reason]]]:
        sides = []
        for side in (self.positive, self.negative):
            names = [self.fields[f] for f in side.field.tolist()]
            reasons = [
                Reason(name, total, text)
                for name, total, text in zip(
                    names, side.contribution.tolist(), side.text.tolist(), strict=True
                )
            ]
            bounds = side.offsets.tolist()
            sides.append([reasons[a:b] for a, b in itertools.pairwise(bounds)])
        return list(zip(*sides, strict=True)) if sides[0] else []


class ReasonTable:
    """The one reason algorithm: a lead's SHAP contributions (bias excluded) summed per
    business field, the fields with the largest positive and negative totals kept (ties in
    field order), each worded from its largest same-signed feature (the first of equals).

    Only what a person can trust is offered: features the catalog never offers as reasons (the
    lead's own sales-stage counts, which restate its stage) belong to no field; and a feature
    stands for a reason only on the side its words agree with (``Feature.agrees``: "no demo
    requests" is never a plus, "2.3× the average share" never a minus), so a field none of
    whose same-signed features agrees is not offered for that lead and the next field is.
    Both count in the score all the same.

    Per-model lookups (the members of each field, vocabularies) are computed once; rows are
    handled a chunk at a time with numpy, and each distinct (feature, value) is worded once."""

    def __init__(
        self,
        feature_names: Sequence[str],
        business_fields: Sequence[str],
        categories: Mapping[str, Sequence[str]],
        context: catalog.Context | None = None,
    ) -> None:
        self.names = list(feature_names)
        self.context = context
        self.categories = {name: tuple(values) for name, values in categories.items()}
        self.features = [catalog.lookup(name, name in self.categories) for name in self.names]
        shown = [i for i, feature in enumerate(self.features) if feature.offered]
        fields: list[str] = []
        index: dict[str, int] = {}
        for i in shown:
            if business_fields[i] not in index:
                index[business_fields[i]] = len(fields)
                fields.append(business_fields[i])
        self.fields = fields
        # -1: a feature that is no reason's (it counts in the score, never in a field's total).
        self.field_of = np.full(len(self.names), -1, dtype=np.int64)
        self.field_of[shown] = [index[business_fields[i]] for i in shown]
        self.members = [
            np.array([i for i in shown if business_fields[i] == field], np.int64)
            for field in fields
        ]
        # The members of every field in one padded matrix (-1: no member), and the features
        # grouped by their rank inside their field, so totals are a few vector additions.
        width = max((len(m) for m in self.members), default=0)
        self.padded = np.full((len(fields), width), -1, dtype=np.int64)
        for field, members in enumerate(self.members):
            self.padded[field, : len(members)] = members
        self.ranks = [
            (self.padded[:, r][self.padded[:, r] >= 0], np.flatnonzero(self.padded[:, r] >= 0))
            for r in range(width)
        ]
        self.member_lists = [members.tolist() for members in self.members]
        # Features whose values a reader takes as a plus or a minus (the rest agree with both).
        self.judged = [i for i in shown if self.features[i].declaration.reads is not None]

    def totals(self, contributions: np.ndarray) -> np.ndarray:
        """Per row and business field, the sum of its features' contributions, added in
        feature order from 0.0: the same float, bit for bit, as adding them one by one (each
        step adds every field's next member at once)."""
        totals = np.zeros((len(contributions), len(self.fields)))
        for features, fields in self.ranks:
            totals[:, fields] += contributions[:, features]
        return totals

    def readings(self, X: np.ndarray) -> np.ndarray:
        """Per row and feature, how a reader takes its value (1 a plus, -1 a minus, 0 either),
        from the catalog, each distinct value of a feature read once."""
        out = np.zeros(X.shape, dtype=np.int8)
        for j in self.judged:
            values, inverse = np.unique(X[:, j], return_inverse=True)
            feature = self.features[j]
            readings = [feature.reads(v, self.context) for v in values.tolist()]
            out[:, j] = np.array(readings, np.int8)[inverse.ravel()]
        return out

    def columns(self, contributions: np.ndarray, X: np.ndarray, count: int) -> ReasonColumns:
        """The ``count`` strongest positive and negative reasons of every row."""
        contributions = np.asarray(contributions, dtype=np.float64)
        X = np.asarray(X, dtype=np.float64)
        totals = self.totals(contributions)
        readings = self.readings(X)
        count = max(0, min(count, len(self.fields)))
        sides = []
        for sign in (1.0, -1.0):
            # A feature may stand for its field on this side: same sign, words that agree.
            eligible = (np.sign(contributions) == sign) & ((readings == 0) | (readings == sign))
            offered = np.zeros(totals.shape, dtype=bool)
            for features, fields in self.ranks:
                offered[:, fields] |= eligible[:, features]
            ranked = np.where(offered, totals, 0.0)  # a field not offered is never kept
            # Stable sorts: among equal totals the earlier field first, as sorted() did.
            order = np.argsort(-sign * ranked, axis=1, kind="stable")[:, :count]
            kept = np.take_along_axis(ranked, order, axis=1)
            keep = kept * sign > 0  # the strongest come first, so the kept ones lead each row
            rows = np.nonzero(keep)[0]
            fields = order[keep]
            sides.append((rows, fields, kept[keep], sign, eligible))
        leads = [self._lead_features(contributions, *side[:2], side[4]) for side in sides]
        texts = self._words(np.concatenate([sides[0][0], sides[1][0]]), np.concatenate(leads), X)
        split = len(sides[0][0])
        out = []
        for (rows, fields, total, _sign, _eligible), words in zip(
            sides, (texts[:split], texts[split:]), strict=True
        ):
            offsets = np.zeros(len(X) + 1, dtype=np.int64)
            np.cumsum(np.bincount(rows, minlength=len(X)), out=offsets[1:])
            out.append(ReasonSide(offsets, fields, total, words))
        return ReasonColumns(tuple(self.fields), out[0], out[1])

    def _lead_features(
        self, contributions: np.ndarray, rows: np.ndarray, fields: np.ndarray, eligible: np.ndarray
    ) -> np.ndarray:
        """Per kept reason, its field's largest eligible feature (same sign, agreeing words),
        the first of equals as ``max`` picks it; a kept field always has one."""
        candidates = self.padded[fields]
        safe = np.maximum(candidates, 0)
        ok = (candidates >= 0) & eligible[rows[:, None], safe]
        size = np.abs(contributions[rows[:, None], safe])
        pick = np.argmax(np.where(ok, size, -1.0), axis=1)
        return candidates[np.arange(len(rows)), pick]

    def _words(self, rows: np.ndarray, features: np.ndarray, X: np.ndarray) -> np.ndarray:
        """The words of each (feature, value) pair, each distinct pair worded once (keyed by
        the value's bits, so 0.0 and -0.0 or two NaNs are never confused)."""
        values = X[rows, features]
        bits = values.view(np.int64)
        if len(rows) <= 256:  # one API request: a dict costs less than sorting
            memo: dict[tuple[int, int], str] = {}
            out = np.empty(len(rows), dtype=object)
            for i, key in enumerate(zip(features.tolist(), bits.tolist(), strict=True)):
                if key not in memo:
                    memo[key] = self._say(key[0], float(values[i]))
                out[i] = memo[key]
            return out
        unique, inverse = np.unique(np.stack([features, bits], axis=1), axis=0, return_inverse=True)
        numbers = unique[:, 1].copy().view(np.float64)
        pairs = zip(unique[:, 0].tolist(), numbers.tolist(), strict=True)
        words = np.array([self._say(feature, value) for feature, value in pairs], dtype=object)
        return words[inverse.reshape(-1)]

    def _say(self, feature: int, value: float) -> str:
        return describe(self.names[feature], value, self.categories, self.context)

    def top(
        self, contributions: np.ndarray, row: np.ndarray, count: int
    ) -> tuple[list[Reason], list[Reason]]:
        """The ``count`` strongest positive and negative reasons of one lead, strongest first
        (ties keep feature order): :meth:`columns`' answer for one row, in plain Python, which
        costs a third of numpy's per-call overhead for one API request (tested equal, bit for
        bit, on a trained model and on ties, zeros and NaNs)."""
        values = contributions.tolist()
        totals = [0.0] * len(self.fields)
        for field, value in zip(self.field_of.tolist(), values, strict=True):
            if field >= 0:
                totals[field] += value
        order = range(len(totals))
        positive = sorted((f for f in order if totals[f] > 0), key=lambda f: -totals[f])
        negative = sorted((f for f in order if totals[f] < 0), key=lambda f: totals[f])
        cells = row.tolist()
        return (
            self._side(positive, 1.0, totals, values, cells, count),
            self._side(negative, -1.0, totals, values, cells, count),
        )

    def _side(
        self,
        fields: list[int],
        sign: float,
        totals: list[float],
        contributions: list[float],
        row: list[float],
        count: int,
    ) -> list[Reason]:
        """The first ``count`` of ``fields`` (strongest first) that are offered, each worded
        from its largest eligible feature (the first of equals)."""
        out: list[Reason] = []
        for field in fields:
            if len(out) == count:
                break
            eligible = [
                i
                for i in self.member_lists[field]
                if contributions[i] * sign > 0
                and self.features[i].agrees(row[i], sign, self.context)
            ]
            if eligible:
                lead = max(eligible, key=lambda i: abs(contributions[i]))
                out.append(Reason(self.fields[field], totals[field], self._say(lead, row[lead])))
        return out

    def explain(
        self, contributions: np.ndarray, X: np.ndarray, count: int
    ) -> list[tuple[list[Reason], list[Reason]]]:
        """Reasons of every row as :class:`Reason` lists: one row at a time for a few rows
        (an API request), as columns for many."""
        if len(X) <= SMALL:
            return [self.top(contributions[i], X[i], count) for i in range(len(X))]
        return self.columns(contributions, X, count).lists()


SMALL = 8
"""Up to this many rows, :meth:`ReasonTable.top` row by row beats the columns' numpy calls."""
