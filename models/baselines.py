"""Marketing's points score, one of the two baselines reported beside the model (the other,
the logistic regression, is :class:`models.linear.LinearModel`). It takes the engine's
feature matrix and returns probabilities."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from sklearn.linear_model import LogisticRegression


class PointsScore:
    """Points per touch (all-time count) and per attribute value, summed; a one-feature
    logistic regression fitted on `train` turns points into a probability."""

    def __init__(
        self,
        feature_names: Sequence[str],
        vocabularies: Mapping[str, Sequence[str]],
        touch_points: Mapping[str, float],
        attribute_points: Mapping[str, Mapping[str, float]],
    ) -> None:
        self.feature_names = feature_names
        self.vocabularies = vocabularies
        self.touch_points = touch_points
        self.attribute_points = attribute_points

    def points(self, X: np.ndarray) -> np.ndarray:
        names = list(self.feature_names)
        total = np.zeros(len(X))
        for touch, points in self.touch_points.items():
            column = f"{touch}_all"
            if column in names:
                total += points * np.nan_to_num(X[:, names.index(column)])
        for attribute, table in self.attribute_points.items():
            if attribute not in names or attribute not in self.vocabularies:
                continue
            lookup = np.zeros(len(self.vocabularies[attribute]) + 2)
            for i, value in enumerate(self.vocabularies[attribute]):
                lookup[i] = table.get(value, 0.0)
            codes = X[:, names.index(attribute)]
            codes = np.where(np.isnan(codes), len(lookup) - 1, codes).astype(np.int64)
            total += lookup[codes]
        return total

    def fit(
        self, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None
    ) -> PointsScore:
        self.link_ = LogisticRegression().fit(self.points(X)[:, None], y, sample_weight)
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Like scikit-learn: column 1 is the probability of the positive class."""
        return np.asarray(self.link_.predict_proba(self.points(X)[:, None]))
