"""Logistic regression on the feature engine's matrix, fitted with scikit-learn and applied
with numpy: the logistic baseline, and the linear candidate of model selection
(:mod:`models.selection`), which serving may carry without importing scikit-learn.

The design it fits on, column by column: a numeric feature is imputed with its train median,
signed-log scaled (``sign(x) log(1 + |x|)``) and standardised; a categorical feature (its codes,
a missing value its own code) is one-hot over the codes seen at least ``min_frequency`` times
in train, any other code (rare or unseen) the reference level. Because every feature enters on
its own, its term in the log-odds is exact per lead, and ``term - mean train term`` is its exact
SHAP value: :meth:`LinearModel.contributions` plus :attr:`LinearModel.expected_value_` equal
:meth:`LinearModel.margin`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MISSING_CODE = -1.0


def _signed_log1p(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.log1p(np.abs(x))


def row_sums(matrix: np.ndarray, columns: np.ndarray | None = None) -> np.ndarray:
    """Each row's sum over ``columns`` (all by default), added left to right: the same bits for
    a row alone as in any batch (numpy's own sum along rows changes its order with the batch's
    shape)."""
    picked = range(matrix.shape[1]) if columns is None else np.flatnonzero(columns)
    out = np.zeros(len(matrix))
    for j in picked:
        out += matrix[:, j]
    return out


class LinearModel:
    """A logistic regression whose per-feature terms serving computes with numpy."""

    def __init__(
        self,
        feature_names: Sequence[str],
        categorical: Sequence[str],
        c: float = 1.0,
        seed: int = 0,
        min_frequency: int = 5,
    ) -> None:
        self.feature_names = feature_names
        self.categorical = categorical
        self.c = c
        self.seed = seed
        self.min_frequency = min_frequency

    # ------------------------------------------------------------- fit
    def fit(
        self, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None
    ) -> LinearModel:
        from sklearn.linear_model import LogisticRegression

        X = np.asarray(X, dtype=np.float64)
        names = list(self.feature_names)
        categorical = set(self.categorical)
        self.numeric_index_ = np.array(
            [i for i, n in enumerate(names) if n not in categorical], dtype=np.int64
        )
        self.categorical_index_ = np.array(
            [i for i, n in enumerate(names) if n in categorical], dtype=np.int64
        )
        numeric = X[:, self.numeric_index_]
        with np.errstate(all="ignore"):
            medians = np.nanmedian(numeric, axis=0) if len(numeric) else np.zeros(0)
        self.median_ = np.where(np.isnan(medians), 0.0, medians)
        scaled = _signed_log1p(np.where(np.isnan(numeric), self.median_, numeric))
        self.mean_ = scaled.mean(axis=0) if len(scaled) else np.zeros(scaled.shape[1])
        std = scaled.std(axis=0) if len(scaled) else np.ones(scaled.shape[1])
        self.scale_ = np.where(std > 0, std, 1.0)
        self.levels_: list[np.ndarray] = []
        for j in self.categorical_index_:
            codes = np.where(np.isnan(X[:, j]), MISSING_CODE, X[:, j])
            values, counts = np.unique(codes, return_counts=True)
            self.levels_.append(values[counts >= self.min_frequency])
        design = np.hstack([(scaled - self.mean_) / self.scale_, *self._one_hots(X)])
        model = LogisticRegression(C=self.c, max_iter=2000, random_state=self.seed)
        model.fit(design, y, sample_weight=sample_weight)
        coef = np.asarray(model.coef_[0], dtype=np.float64)
        self.intercept_ = float(model.intercept_[0])
        n_numeric = len(self.numeric_index_)
        self.numeric_coef_ = coef[:n_numeric]
        self.level_coef_: list[np.ndarray] = []
        start = n_numeric
        for levels in self.levels_:
            self.level_coef_.append(coef[start : start + len(levels)])
            start += len(levels)
        terms = self.terms(X)
        weights = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        self.reference_ = (
            np.average(terms, axis=0, weights=weights) if len(terms) else np.zeros(len(names))
        )
        self.expected_value_ = self.intercept_ + float(self.reference_.sum())
        return self

    def _one_hots(self, X: np.ndarray) -> list[np.ndarray]:
        out = []
        for j, levels in zip(self.categorical_index_, self.levels_, strict=True):
            codes = np.where(np.isnan(X[:, j]), MISSING_CODE, X[:, j])
            out.append((codes[:, None] == levels[None, :]).astype(np.float64))
        return out

    # ----------------------------------------------------------- apply
    def terms(self, X: np.ndarray) -> np.ndarray:
        """Per row and feature (the engine's order), the feature's term in the log-odds."""
        X = np.asarray(X, dtype=np.float64)
        out = np.zeros((len(X), len(self.feature_names)))
        numeric = X[:, self.numeric_index_]
        scaled = _signed_log1p(np.where(np.isnan(numeric), self.median_, numeric))
        out[:, self.numeric_index_] = (scaled - self.mean_) / self.scale_ * self.numeric_coef_
        for j, levels, coef in zip(
            self.categorical_index_, self.levels_, self.level_coef_, strict=True
        ):
            codes = np.where(np.isnan(X[:, j]), MISSING_CODE, X[:, j])
            position = np.searchsorted(levels, codes)
            clipped = np.minimum(position, max(len(levels) - 1, 0))
            known = (position < len(levels)) & (levels[clipped] == codes) if len(levels) else 0
            out[:, j] = np.where(known, coef[clipped] if len(levels) else 0.0, 0.0)
        return out

    def margin(self, X: np.ndarray) -> np.ndarray:
        """The log-odds of every row."""
        return self.intercept_ + row_sums(self.terms(X))

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """Exact SHAP values in log-odds: each feature's term less its mean train term."""
        return self.terms(X) - self.reference_

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Like scikit-learn: column 1 is the probability of the positive class."""
        p = 1.0 / (1.0 + np.exp(-self.margin(X)))
        return np.column_stack([1.0 - p, p])
