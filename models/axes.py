"""Fit and engagement: the two sides of a lead marketing reads, from the primary model itself.

Every feature is on one axis (the feature catalog's :data:`~features.engine.catalog.AXES`):
*fit* is who the lead is (lead and account attributes, the source campaign and the campaign and
channel track records); *engagement* is what the lead does (touches, recency, trend, its own
sales events, its age).

A lead's effect on an axis is the model's expected log-odds when only that axis's features
follow the lead (the others split as the training rows did at every tree node), less the
expected log-odds of any lead: TreeSHAP's own ``v(S)`` with ``S`` the axis's features
(:meth:`models.treeshap.PathTable.group_effects`). It depends on the lead's values of that
axis's features only, so a lead whose only change is a more recent demo request moves on the
engagement axis and nowhere else, and a new job title moves it on the fit axis only. (Summing
each axis's SHAP values would split the interactions between the axes half and half, so a new
touch would shift the fit score too.) The interaction of the two sides is in neither score.

Each effect becomes a 0–100 score: its mid-rank percentile among the effects of the training
slice's rows (50 = a typical training lead). Two scores make the grid cell, a fit letter and an
engagement digit from the bands in ``params.yaml`` ``grid`` ("A1": best fit, most engaged).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from features.engine import catalog

FIT, ENGAGEMENT = catalog.AXES


@dataclass(frozen=True)
class GridBands:
    """Score floors of the grid's fit letters and engagement digits (below the last: D, 4)."""

    fit: tuple[tuple[str, float], ...] = (("A", 75.0), ("B", 50.0), ("C", 25.0))
    engagement: tuple[tuple[str, float], ...] = (("1", 75.0), ("2", 50.0), ("3", 25.0))
    fit_last: str = "D"
    engagement_last: str = "4"

    @classmethod
    def from_floors(cls, fit: Mapping[str, float], engagement: Mapping[str, float]) -> GridBands:
        return cls(
            tuple((k, float(v)) for k, v in fit.items()),
            tuple((k, float(v)) for k, v in engagement.items()),
        )

    @staticmethod
    def _band(scores: np.ndarray, floors: tuple[tuple[str, float], ...], last: str) -> np.ndarray:
        out = np.full(len(scores), last, dtype=object)
        for name, floor in reversed(floors):
            out[scores >= floor] = name
        return out

    def cells(self, fit: np.ndarray, engagement: np.ndarray) -> np.ndarray:
        """Grid cells ("B2") of score pairs; None where either score is unknown (NaN)."""
        fit = np.asarray(fit, dtype=np.float64)
        engagement = np.asarray(engagement, dtype=np.float64)
        letters = self._band(fit, self.fit, self.fit_last)
        digits = self._band(engagement, self.engagement, self.engagement_last)
        cells = np.array([f"{a}{b}" for a, b in zip(letters, digits, strict=True)], dtype=object)
        cells[np.isnan(fit) | np.isnan(engagement)] = None
        return cells

    def names(self) -> tuple[list[str], list[str]]:
        """Every fit letter and engagement digit, best first (the grid's rows and columns)."""
        return (
            [name for name, _ in self.fit] + [self.fit_last],
            [name for name, _ in self.engagement] + [self.engagement_last],
        )


def axis_groups(
    feature_names: Sequence[str], categorical: Sequence[str], engagement: Sequence[str] = ()
) -> np.ndarray:
    """Per feature, its axis's index in :data:`~features.engine.catalog.AXES` (from the
    catalog, by name: models trained before axes existed are read the same way); the flat
    export columns in ``engagement`` (its mapping's) are on the engagement axis."""
    kinds = set(categorical)
    axes = catalog.AXES
    declared = set(engagement)
    return np.array(
        [
            axes.index(ENGAGEMENT if name in declared else catalog.lookup(name, name in kinds).axis)
            for name in feature_names
        ],
        dtype=np.int64,
    )


@dataclass(frozen=True)
class AxisScale:
    """The training population's effects per axis, sorted (the fitted part of the scores);
    ``present``: whether the model has any feature on that axis (a flat export with no
    touches has no engagement features: its engagement score is unknown, not 50)."""

    reference: tuple[np.ndarray, ...]
    present: tuple[bool, ...]

    @classmethod
    def fit(cls, effects: np.ndarray, present: Sequence[bool]) -> AxisScale:
        effects = np.asarray(effects, dtype=np.float64)
        return cls(
            tuple(np.sort(effects[:, g]) for g in range(effects.shape[1])),
            tuple(bool(p) for p in present),
        )

    def scores(self, effects: np.ndarray) -> np.ndarray:
        """0–100 per row and axis (float, whole numbers; NaN where the axis is absent): the
        mid-rank percentile of the row's effect among the training rows' (ties count half, so
        a model whose axis is constant puts every lead at 50)."""
        effects = np.asarray(effects, dtype=np.float64)
        out = np.full(effects.shape, np.nan)
        for g, reference in enumerate(self.reference):
            if not self.present[g] or not len(reference):
                continue
            below = np.searchsorted(reference, effects[:, g], side="left")
            upto = np.searchsorted(reference, effects[:, g], side="right")
            out[:, g] = np.rint(100.0 * (below + upto) / (2 * len(reference)))
        return out
