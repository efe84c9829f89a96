"""The one fitted object that travels into serving: feature engine + calibrated LightGBM per
target + the quality-lead definition.

:class:`LeadScorer` is the one scoring API. Every caller (the HTTP API, ``leadscore score``,
the ``queue`` stage, the MLflow pyfunc bundle, evaluation and the promotion gate) turns its leads
into feature rows with the scorer's :class:`~features.engine.engine.FeatureEngine` and then calls:

- :meth:`LeadScorer.summarise`: probabilities per target, score 0–100, grade and handoff, and
  the fit and engagement scores with their grid cell (:mod:`models.axes`);
- :meth:`LeadScorer.explain`: the top positive and negative reasons (SHAP per business field);
- :meth:`LeadScorer.rank`: the queue order, and :meth:`LeadScorer.priority`: each lead's
  percentile among the leads queued.

``num_threads`` is LightGBM's: 1 in an API worker (one request, one core), 0 (all cores) in
batch work."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from features.engine.engine import FeatureEngine
from models.axes import AxisScale, GridBands, axis_groups
from models.calibration import Calibrator
from models.linear import LinearModel, row_sums
from models.reasons import Reason, ReasonColumns, ReasonTable
from models.segments import POOLED, Segmentation, route, stitch
from models.timing import AmountModel, ConversionTiming
from models.treeshap import PathTable, path_table

GRADES = ("A", "B", "C", "D")
DEFAULT_GRID = GridBands()
"""The grid bands of a model trained before they were in ``params.yaml``."""


def score_of(probability: np.ndarray) -> np.ndarray:
    """The 0–100 score of a probability (of the primary target): ``100 p``, rounded."""
    return np.clip(np.rint(np.asarray(probability) * 100), 0, 100).astype(np.int64)


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
    grid: GridBands = DEFAULT_GRID

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
        out = {**asdict(self), "text": self.text}
        out["grid"] = {
            "fit": dict(self.grid.fit),
            "engagement": dict(self.grid.engagement),
            "below": {"fit": self.grid.fit_last, "engagement": self.grid.engagement_last},
        }
        return out


@dataclass
class TargetModel:
    """One target's model: log-odds ``(1 - blend) trees + blend linear`` (the trees alone
    without a linear part: ``blend`` 0; the logistic regression alone: 1, as model selection
    chose, :mod:`models.selection`), calibrated."""

    booster: lgb.Booster
    calibrator: Calibrator
    best_iteration: int
    linear: LinearModel | None = None
    blend: float = 0.0

    @property
    def tree_weight(self) -> float:
        return 1.0 if self.linear is None else 1.0 - self.blend

    @property
    def linear_weight(self) -> float:
        return 0.0 if self.linear is None else self.blend

    def margin(self, X: np.ndarray, num_threads: int = 0) -> np.ndarray:
        """The uncalibrated log-odds of every row."""
        out = np.zeros(len(X))
        if self.tree_weight:
            trees = self.booster.predict(
                X, num_iteration=self.best_iteration, raw_score=True, num_threads=num_threads
            )
            out = self.tree_weight * np.asarray(trees, dtype=np.float64)
        if self.linear is not None and self.linear_weight:
            out = out + self.linear_weight * self.linear.margin(X)
        return out

    def uncalibrated(self, X: np.ndarray, num_threads: int = 0) -> np.ndarray:
        """The probability the calibrator maps: LightGBM's own for the trees alone."""
        if self.linear_weight == 0.0:
            raw = self.booster.predict(
                X, num_iteration=self.best_iteration, num_threads=num_threads
            )
            return np.asarray(raw, dtype=np.float64)
        return 1.0 / (1.0 + np.exp(-self.margin(X, num_threads)))

    def predict(self, X: np.ndarray, num_threads: int = 0) -> np.ndarray:
        """The calibrated probability of every row."""
        return self.calibrator.predict(self.uncalibrated(X, num_threads))

    @property
    def expected_value(self) -> float:
        """The SHAP base value in log-odds: every row's contributions sum to its margin less
        this."""
        value = 0.0
        if self.tree_weight:
            zeros = np.zeros((1, self.booster.num_feature()))
            contrib = self.booster.predict(
                zeros, num_iteration=self.best_iteration, pred_contrib=True
            )
            value = self.tree_weight * float(np.asarray(contrib)[0, -1])
        if self.linear is not None and self.linear_weight:
            value += self.linear_weight * self.linear.expected_value_
        return value


Reasons = tuple[list[Reason], list[Reason]]
"""The positive and the negative reasons of one lead, strongest first."""


@dataclass(frozen=True)
class Summary:
    """Scores of n rows (no reasons), in row order. ``fit_score`` and ``engagement_score``:
    0–100 as floats, NaN when unknown (a model without axes); ``grid``: "B2" or None."""

    probabilities: dict[str, np.ndarray]
    score: np.ndarray
    grade: np.ndarray
    handoff: np.ndarray
    fit_score: np.ndarray
    engagement_score: np.ndarray
    grid: np.ndarray
    horizons_days: tuple[int, ...] = ()
    """The conversion-timing horizons (empty: a model without timing, :mod:`models.timing`)."""
    p_converted_by: np.ndarray | None = None
    """(n, K): the probability of converting within each horizon, non-decreasing."""
    expected_days: np.ndarray | None = None
    """Days after as_of where that curve reaches 50 % (NaN: not within the longest horizon)."""
    expected_value: np.ndarray | None = None
    """The primary probability × the expected won amount (NaN: no amounts known)."""
    segment: np.ndarray | None = None
    """The segment whose model scored each row (:mod:`models.segments`; None: all pooled)."""

    def segment_of(self, i: int) -> str:
        """Row i's segment name, or ``pooled``."""
        return POOLED if self.segment is None else str(self.segment[i])

    def __len__(self) -> int:
        return len(self.score)

    def timing_columns(self, as_of: pd.Series | None = None) -> pd.DataFrame:
        """``p_converted_by_<d>d`` per horizon, ``expected_conversion_date`` (the ISO date
        ``expected_days`` after ``as_of``; null when unknown or without ``as_of``) and
        ``expected_value``: all null for a model without timing."""
        n = len(self)
        frame = pd.DataFrame(index=range(n))
        for k, days in enumerate(self.horizons_days):
            assert self.p_converted_by is not None
            frame[f"p_converted_by_{days}d"] = self.p_converted_by[:, k]
        dates = pd.Series([None] * n, dtype="object")
        if self.expected_days is not None and as_of is not None:
            stamps = pd.to_datetime(as_of, utc=True).reset_index(drop=True)
            ends = stamps + pd.to_timedelta(self.expected_days, unit="D")
            dates = ends.dt.strftime("%Y-%m-%d").astype("object").where(ends.notna(), None)
        frame["expected_conversion_date"] = dates
        value = self.expected_value if self.expected_value is not None else np.full(n, np.nan)
        frame["expected_value"] = np.round(value, 2)
        return frame

    def converted_by(self, i: int) -> dict[str, float] | None:
        """Row i's ``{"<days>": p}`` (None: a model without timing)."""
        if self.p_converted_by is None:
            return None
        return {
            str(d): float(p)
            for d, p in zip(self.horizons_days, self.p_converted_by[i], strict=True)
        }

    def frame(self) -> pd.DataFrame:
        """``p_<target>`` per target, ``score``, ``grade``, ``handoff``, ``fit_score``,
        ``engagement_score`` (nullable integers) and ``grid`` columns."""
        frame = pd.DataFrame({f"p_{t}": p for t, p in self.probabilities.items()})
        frame["score"] = self.score
        frame["grade"] = self.grade.astype(object)
        frame["handoff"] = self.handoff
        for name in AXIS_COLUMNS:
            frame[name] = pd.array(whole_or_none(getattr(self, name)), dtype="Int64")
        frame["grid"] = self.grid.astype(object)
        frame["segment"] = (
            np.full(len(self), POOLED, dtype=object) if self.segment is None else self.segment
        )
        return frame


AXIS_COLUMNS = ("fit_score", "engagement_score")
AXIS_COUNT = len(AXIS_COLUMNS)


def whole_or_none(values: np.ndarray) -> list[int | None]:
    """Scores that may be unknown (NaN) as Python ints and Nones, for JSON and nullable columns."""
    return [None if v != v else int(v) for v in np.asarray(values, dtype=np.float64).tolist()]


class LeadScorer:
    """Scores feature rows of leads. Built by the train stage from fitted parts."""

    timing_: ConversionTiming | None = None
    """When it converts (:mod:`models.timing`), fitted by the train stage; None: not trained."""
    amount_: AmountModel | None = None
    """The expected won amount, fitted beside ``timing_``."""
    segmentation_: Segmentation | None = None
    """The segments with their own models (:mod:`models.segments`); None: one pooled model.
    Every scoring method routes each row to its segment's scorer (same engine, its own models,
    calibration, TreeSHAP tables and axis scales); timing and amounts stay pooled."""

    def __init__(
        self,
        engine: FeatureEngine,
        models: Mapping[str, TargetModel],
        definition: Definition,
        metadata: Mapping[str, Any] | None = None,
        engagement_columns: Sequence[str] = (),
    ) -> None:
        self.engine = engine
        self.models = dict(models)
        self.definition = definition
        self.metadata = dict(metadata or {})
        self.engagement_columns = tuple(engagement_columns)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("reason_table", None)  # derived: rebuilt on first use after unpickling
        # Derived too, but 0.5 s to build for 1,000 trees: carried, so serving starts with it.
        state["shap_table"] = self.shap_table
        return state

    @property
    def targets(self) -> tuple[str, ...]:
        return tuple(self.models)

    def fingerprint(self) -> str:
        """A short digest of what decides the scores (every target's trees at its best
        iteration, its calibration and the feature names): equal for the same trained model
        however it was pickled or registered, so reports can say which model they describe."""
        digest = hashlib.sha256()
        digest.update("\x1f".join(self.engine.feature_names_).encode())
        for target, model in sorted(self.models.items()):
            digest.update(target.encode())
            digest.update(
                model.booster.model_to_string(num_iteration=model.best_iteration).encode()
            )
            for name, value in sorted(vars(model.calibrator).items()):
                digest.update(f"{name}={np.asarray(value).tolist()!r}".encode())
            if model.linear is not None and model.linear_weight:
                digest.update(f"blend={model.blend!r}".encode())
                for name, value in sorted(vars(model.linear).items()):
                    digest.update(f"{name}={np.asarray(value, dtype=object).tolist()!r}".encode())
        segmentation = self.segmentation
        if segmentation is not None:
            digest.update(f"segments by {segmentation.feature}".encode())
            digest.update("\x1f".join(map(str, segmentation.lookup)).encode())
            for name, scorer in sorted(segmentation.scorers.items()):
                digest.update(f"{name}={scorer.fingerprint()}".encode())
        return digest.hexdigest()[:16]

    @property
    def segmentation(self) -> Segmentation | None:
        return getattr(self, "segmentation_", None)  # scorers pickled before segments: none

    def segments(self, X: np.ndarray) -> np.ndarray:
        """Per row, the segment whose model scores it (``pooled``: the pooled model)."""
        segmentation = self.segmentation
        if segmentation is None or not segmentation.scorers:
            return np.full(len(X), POOLED, dtype=object)
        return segmentation.names(X)

    def _routed(self, X: np.ndarray, method: str, *args: Any) -> Any:
        """``method`` of each row's segment scorer on its rows (the pooled rows: this
        scorer's), in row order; None when every row is pooled. Array arguments with a row per
        row of ``X`` (the callers' effects) are split with the rows."""
        routes = route(self.segmentation, X)
        if routes is None:
            return None
        segmentation = self.segmentation
        assert segmentation is not None
        parts = []
        for name, positions in routes:
            scorer = self if name == POOLED else segmentation.scorers[name]
            split = [a[positions] if isinstance(a, np.ndarray) else a for a in args]
            parts.append((positions, getattr(scorer, method)(X[positions], *split)))
        return stitch(parts, len(X))

    @property
    def primary(self) -> str:
        """The target the score, grade, handoff, reasons and queue order follow."""
        return self.definition.target

    # ----------------------------------------------------------- scores
    def probabilities(
        self, X: np.ndarray, num_threads: int = 0, routed: bool = True
    ) -> dict[str, np.ndarray]:
        """Calibrated probability per target of every row, from its segment's model
        (``routed=False``: the pooled model's, for comparisons on a segment's rows)."""
        if routed and (out := self._routed(X, "probabilities", num_threads)) is not None:
            return out
        return {target: model.predict(X, num_threads) for target, model in self.models.items()}

    def grade(self, probability: np.ndarray) -> np.ndarray:
        """A–D from the definition's probability floors."""
        grades = np.full(len(probability), "D", dtype=object)
        for name in reversed(GRADES[:-1]):
            grades[probability >= self.definition.grades[name]] = name
        return grades

    def handoff(self, grades: np.ndarray) -> np.ndarray:
        cutoff = GRADES.index(self.definition.handoff_min_grade)
        return np.array([GRADES.index(g) <= cutoff for g in grades], dtype=bool)

    def summarise(
        self, X: np.ndarray, num_threads: int = 0, effects: np.ndarray | None = None
    ) -> Summary:
        """Probabilities, score (the primary target's probability × 100, rounded), grade,
        handoff, fit and engagement scores and grid cell of every row (``effects``: the rows'
        :meth:`axis_effects` when the caller has them already)."""
        if not len(X):
            empty = np.zeros(0)
            return Summary(
                {t: empty for t in self.models},
                np.zeros(0, np.int64),
                np.zeros(0, object),
                np.zeros(0, bool),
                empty,
                empty,
                np.zeros(0, object),
            )
        probabilities = self.probabilities(X, num_threads)
        primary = probabilities[self.primary]
        score = score_of(primary)
        grades = self.grade(primary)
        axes = self.axis_scores(X, num_threads, effects)
        cells = self.definition.grid.cells(axes[:, 0], axes[:, 1])
        segment = self.segments(X) if self.segmentation is not None else None
        timing = getattr(self, "timing_", None)  # scorers pickled before timing: none
        when: dict[str, Any] = {}
        if timing is not None:
            by = timing.by_horizon(X, num_threads)
            amount = self.amount_.predict(X, num_threads) if self.amount_ is not None else None
            when = {
                "horizons_days": timing.horizons_days,
                "p_converted_by": by,
                "expected_days": timing.median_days(by),
                "expected_value": None if amount is None else primary * amount,
            }
        return Summary(
            probabilities,
            score,
            grades,
            self.handoff(grades),
            axes[:, 0],
            axes[:, 1],
            cells,
            segment=segment,
            **when,
        )

    # ------------------------------------------------------------- axes
    @cached_property
    def axis_groups(self) -> np.ndarray:
        """Per feature, its axis (0 fit, 1 engagement): :func:`models.axes.axis_groups`."""
        return axis_groups(
            self.engine.feature_names_,
            self.engine.categorical_features_,
            getattr(self, "engagement_columns", ()),  # scorers pickled before it: none
        )

    def axis_effects(self, X: np.ndarray, num_threads: int = 0) -> np.ndarray:
        """Per row, the fit and engagement effects in log-odds (:mod:`models.axes`): exact
        from the TreeSHAP tables; for trees too big to tabulate, each axis's SHAP values
        summed (then the axes' interactions are split between them)."""
        if (routed := self._routed(X, "axis_effects", num_threads)) is not None:
            return routed
        model = self.models[self.primary]
        if not model.tree_weight:
            return self._summed_effects(self._linear_contributions(X))
        table = self.shap_table
        if table is not None and table.group_values is not None:
            effects = table.group_effects(X, threads=num_threads)
        else:
            effects = self._summed_effects(self._tree_contributions(X, num_threads))
        if model.linear_weight:
            linear = self._summed_effects(self._linear_contributions(X))
            effects = model.tree_weight * effects + linear
        return effects

    def fit_axes(self, X: np.ndarray, num_threads: int = 0) -> None:
        """Fit the 0–100 scales of the axes on the training rows ``X`` (``axis_scale_``)."""
        present = [bool((self.axis_groups == g).any()) for g in range(AXIS_COUNT)]
        self.axis_scale_ = AxisScale.fit(self.axis_effects(X, num_threads), present)

    def axis_scores(
        self, X: np.ndarray, num_threads: int = 0, effects: np.ndarray | None = None
    ) -> np.ndarray:
        """Fit and engagement scores 0–100 per row (NaN: a model trained before axes), each
        on its segment scorer's scale."""
        if (routed := self._routed(X, "axis_scores", num_threads, effects)) is not None:
            return routed
        scale: AxisScale | None = getattr(self, "axis_scale_", None)
        if scale is None:
            return np.full((len(X), AXIS_COUNT), np.nan)
        return scale.scores(self.axis_effects(X, num_threads) if effects is None else effects)

    def contributions_and_effects(
        self, X: np.ndarray, num_threads: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`contributions` and :meth:`axis_effects` of the same rows, each row's tree
        decisions taken once for both (what an explained answer costs beyond its scores)."""
        if (routed := self._routed(X, "contributions_and_effects", num_threads)) is not None:
            return routed
        table = self.shap_table
        model = self.models[self.primary]
        if model.tree_weight and table is not None and table.group_values is not None:
            contributions, effects = table.contributions_and_effects(X, threads=num_threads)
            if model.linear_weight:
                linear = self._linear_contributions(X)
                contributions = model.tree_weight * contributions + linear
                effects = model.tree_weight * effects + self._summed_effects(linear)
            return contributions, effects
        contributions = self.contributions(X, num_threads)
        return contributions, self._summed_effects(contributions)

    def _summed_effects(self, contributions: np.ndarray) -> np.ndarray:
        groups = self.axis_groups
        return np.stack(
            [row_sums(contributions, groups == g) for g in range(AXIS_COUNT)], axis=1
        ).reshape(len(contributions), AXIS_COUNT)

    def summarise_explained(
        self, X: np.ndarray, count: int = 3, num_threads: int = 0
    ) -> tuple[Summary, list[Reasons]]:
        """:meth:`summarise` and :meth:`explain` of the same rows, together."""
        if count <= 0 or not len(X):
            return self.summarise(X, num_threads), self.explain(X, count, num_threads)
        contributions, effects = self.contributions_and_effects(X, num_threads)
        summary = self.summarise(X, num_threads, effects)
        return summary, self.reason_table.explain(contributions, X, count)

    def summarise_explained_columns(
        self, X: np.ndarray, count: int = 3, num_threads: int = 0
    ) -> tuple[Summary, ReasonColumns]:
        """:meth:`summarise` and :meth:`explain_columns` of the same rows, together."""
        contributions, effects = self.contributions_and_effects(X, num_threads)
        summary = self.summarise(X, num_threads, effects)
        return summary, self.reason_table.columns(contributions, X, count)

    # ---------------------------------------------------------- reasons
    @cached_property
    def reason_table(self) -> ReasonTable:
        """The reason algorithm with this model's lookups, built once per scorer."""
        spec = self.engine.features_
        return ReasonTable(
            self.engine.feature_names_,
            [f.business_field for f in spec],
            {name: self.engine.vocabulary(name) for name in self.engine.categorical_features_},
            self.engine.wording_context(),
        )

    def explain(self, X: np.ndarray, count: int = 3, num_threads: int = 0) -> list[Reasons]:
        """Top ``count`` positive and negative reasons per row, from the primary target's SHAP
        contributions (LightGBM ``pred_contrib``) summed per business field."""
        if count <= 0 or not len(X):
            return [([], []) for _ in range(len(X))]
        return self.reason_table.explain(self.contributions(X, num_threads), X, count)

    def explain_columns(self, X: np.ndarray, count: int = 3, num_threads: int = 0) -> ReasonColumns:
        """:meth:`explain`'s reasons as columns, for many rows at once (batch scoring): one
        ``pred_contrib`` call for all of them, no Python object per reason."""
        return self.reason_table.columns(self.contributions(X, num_threads), X, count)

    @cached_property
    def shap_table(self) -> PathTable | None:
        """The primary target's TreeSHAP tables (None for trees too big to tabulate, or a
        model without trees' weight)."""
        model = self.models[self.primary]
        if not model.tree_weight:
            return None
        return path_table(model.booster, model.best_iteration, self.axis_groups, AXIS_COUNT)

    def contributions(self, X: np.ndarray, num_threads: int = 0) -> np.ndarray:
        """The primary target's SHAP contributions per row and feature, in log-odds (LightGBM
        ``pred_contrib``, the bias column dropped; a blend's linear part adds its exact linear
        SHAP values, :mod:`models.linear`, each part times its weight): the trees' from the
        scorer's TreeSHAP tables when its trees are small enough (equal within 1e-9; one lead
        8x faster, and a lead's bits the same alone or in a batch), else from LightGBM; each
        row from its segment's model."""
        if (routed := self._routed(X, "contributions", num_threads)) is not None:
            return routed
        model = self.models[self.primary]
        if not model.tree_weight:
            return self._linear_contributions(X)
        contributions = self._tree_contributions(X, num_threads)
        if model.linear_weight:
            contributions = model.tree_weight * contributions + self._linear_contributions(X)
        return contributions

    def _tree_contributions(self, X: np.ndarray, num_threads: int = 0) -> np.ndarray:
        table = self.shap_table
        if table is not None:
            return table.contributions(X, threads=num_threads)
        model = self.models[self.primary]
        return np.asarray(
            model.booster.predict(
                X, num_iteration=model.best_iteration, pred_contrib=True, num_threads=num_threads
            )
        )[:, :-1]

    def _linear_contributions(self, X: np.ndarray) -> np.ndarray:
        """The primary model's linear part's SHAP values times its weight in the log-odds."""
        model = self.models[self.primary]
        assert model.linear is not None
        return model.linear_weight * model.linear.contributions(X)

    # ------------------------------------------------------------ queue
    def rank(self, lead_ids: Sequence[str] | np.ndarray, p: np.ndarray) -> np.ndarray:
        """The queue order: row indices by ``p`` (the primary target's probability) descending,
        ties by lead id ascending."""
        if not len(p):
            return np.zeros(0, np.int64)
        ids = np.asarray([str(v) for v in lead_ids], dtype=object)
        return np.lexsort((ids, -np.asarray(p, dtype=np.float64)))

    @staticmethod
    def priority(p: np.ndarray) -> np.ndarray:
        """Each lead's percentile among the leads given (the open leads being queued): the
        share of them whose primary probability is at most its own, × 100, rounded; the
        first of the queue is 100. Relative, beside the absolute grade, never instead."""
        p = np.asarray(p, dtype=np.float64)
        if not len(p):
            return np.zeros(0, np.int64)
        at_most = np.searchsorted(np.sort(p), p, side="right")
        return np.rint(100.0 * at_most / len(p)).astype(np.int64)
