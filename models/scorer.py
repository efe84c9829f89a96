"""The one fitted object that travels into serving: feature engine + calibrated LightGBM per
target + the quality-lead definition. Raw lead history in, scores, grades and reasons out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from features.engine import FeatureEngine
from models.calibration import Calibrator
from models.reasons import Reason, top_reasons

GRADES = ("A", "B", "C", "D")


@dataclass(frozen=True)
class Definition:
    """The quality-lead definition, versioned with the model and shown to both teams."""

    target: str
    window_days: int
    targets: dict[str, tuple[str, ...]]
    grades: dict[str, float]
    handoff_min_grade: str
    post_outcome: tuple[str, ...] = ()
    source: str = "synthetic"

    @property
    def text(self) -> str:
        stages = " or ".join(self.targets[self.target])
        floors = ", ".join(f"{g} ≥ {p:.0%}" for g, p in self.grades.items())
        return (
            f"A quality lead is scored by the calibrated probability that it reaches "
            f"'{stages}' within {self.window_days} days of being scored. Grades: {floors}, "
            f"otherwise D. Leads of grade {self.handoff_min_grade} or better are handed to sales."
        )

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "text": self.text}


@dataclass
class TargetModel:
    booster: lgb.Booster
    calibrator: Calibrator
    best_iteration: int


@dataclass
class LeadScore:
    probabilities: dict[str, float]
    score: int
    grade: str
    handoff: bool
    as_of: pd.Timestamp
    positive_reasons: list[Reason] = field(default_factory=list)
    negative_reasons: list[Reason] = field(default_factory=list)


class LeadScorer:
    """Scores leads from their raw history. Built by the train stage from fitted parts."""

    def __init__(
        self,
        engine: FeatureEngine,
        models: Mapping[str, TargetModel],
        definition: Definition,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        self.engine = engine
        self.models = dict(models)
        self.definition = definition
        self.metadata = dict(metadata or {})

    # ------------------------------------------------------------ matrix
    def probabilities(self, X: np.ndarray, num_threads: int = 0) -> dict[str, np.ndarray]:
        out = {}
        for target, model in self.models.items():
            raw = model.booster.predict(
                X, num_iteration=model.best_iteration, num_threads=num_threads
            )
            out[target] = model.calibrator.predict(np.asarray(raw))
        return out

    def grade(self, probability: np.ndarray) -> np.ndarray:
        grades = np.full(len(probability), "D", dtype=object)
        for name in reversed(GRADES[:-1]):
            grades[probability >= self.definition.grades[name]] = name
        return grades

    def handoff(self, grades: np.ndarray) -> np.ndarray:
        cutoff = GRADES.index(self.definition.handoff_min_grade)
        return np.array([GRADES.index(g) <= cutoff for g in grades], dtype=bool)

    def score_matrix(self, X: np.ndarray, num_threads: int = 0) -> pd.DataFrame:
        """p_<target>, score (0–100 from the primary target), grade and handoff per row."""
        probabilities = self.probabilities(X, num_threads)
        frame = pd.DataFrame({f"p_{t}": p for t, p in probabilities.items()})
        primary = probabilities[self.definition.target]
        frame["score"] = np.clip(np.rint(primary * 100), 0, 100).astype(np.int64)
        frame["grade"] = self.grade(primary)
        frame["handoff"] = self.handoff(frame["grade"].to_numpy())
        return frame

    def reasons(self, X: np.ndarray, count: int = 3) -> list[tuple[list[Reason], list[Reason]]]:
        """Top positive and negative reasons per row, from the primary target's SHAP values."""
        model = self.models[self.definition.target]
        contributions = np.asarray(
            model.booster.predict(
                X, num_iteration=model.best_iteration, pred_contrib=True, num_threads=1
            )
        )[:, :-1]
        spec = self.engine.features_
        fields = [f.business_field for f in spec]
        descriptions = [f.description for f in spec]
        categories = {
            name: self.engine.vocabulary(name) for name in self.engine.categorical_features_
        }
        return [
            top_reasons(
                contributions[i],
                X[i],
                self.engine.feature_names_,
                fields,
                descriptions,
                categories,
                count,
            )
            for i in range(len(X))
        ]

    # --------------------------------------------------------------- raw
    def score_lead(
        self,
        lead: Mapping[str, Any],
        touches: Sequence[Mapping[str, Any]] = (),
        sales_events: Sequence[Mapping[str, Any]] = (),
        as_of: Any = None,
        with_reasons: bool = True,
    ) -> LeadScore:
        """One lead from its own history (the API's path); as_of defaults to now."""
        as_of = pd.Timestamp.now(tz="UTC") if as_of is None else pd.Timestamp(as_of)
        as_of = as_of.tz_localize("UTC") if as_of.tzinfo is None else as_of.tz_convert("UTC")
        row = self.engine.transform_one(lead, touches, sales_events, as_of)[None, :]
        scored = self.score_matrix(row, num_threads=1).iloc[0]
        positive, negative = self.reasons(row)[0] if with_reasons else ([], [])
        return LeadScore(
            probabilities={t: float(scored[f"p_{t}"]) for t in self.models},
            score=int(scored["score"]),
            grade=str(scored["grade"]),
            handoff=bool(scored["handoff"]),
            as_of=as_of,
            positive_reasons=positive,
            negative_reasons=negative,
        )
