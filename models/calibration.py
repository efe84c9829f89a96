"""Probability calibration fitted on the held-out `calibration` slice.

Stored as plain arrays and applied with numpy, so one lead is calibrated in microseconds.
scikit-learn is imported only to fit: a process that loads and applies a fitted calibrator (the
API, unpickling a scorer) never imports it, nor SciPy through it.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

EPS = 1e-6


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, EPS, 1 - EPS)
    return np.log(p / (1 - p))


class Calibrator:
    """Maps raw model probabilities to calibrated ones (isotonic or sigmoid/Platt)."""

    def __init__(self, method: Literal["isotonic", "sigmoid"] = "isotonic") -> None:
        self.method = method

    def fit(self, raw: np.ndarray, y: np.ndarray) -> Calibrator:
        raw = np.asarray(raw, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        from sklearn.isotonic import IsotonicRegression
        from sklearn.linear_model import LogisticRegression

        if self.method == "isotonic":
            isotonic = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(raw, y)
            self.x_ = np.asarray(isotonic.X_thresholds_, dtype=np.float64)
            self.y_ = np.asarray(isotonic.y_thresholds_, dtype=np.float64)
        else:
            platt = LogisticRegression(C=1e6).fit(_logit(raw)[:, None], y)
            self.slope_ = float(platt.coef_[0, 0])
            self.intercept_ = float(platt.intercept_[0])
        return self

    def predict(self, raw: np.ndarray) -> np.ndarray:
        raw = np.asarray(raw, dtype=np.float64)
        if self.method == "isotonic":
            calibrated = np.interp(raw, self.x_, self.y_)
        else:
            calibrated = 1.0 / (1.0 + np.exp(-(self.slope_ * _logit(raw) + self.intercept_)))
        # Keep log loss finite: no calibrated probability is exactly 0 or 1.
        return np.clip(calibrated, EPS, 1 - EPS)
