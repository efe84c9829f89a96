"""params.yaml as frozen, typed configuration.

The file is read once per process by :func:`load_params`; every section is a frozen pydantic
model with ``extra="forbid"`` so a misspelled key fails loudly, naming the key, instead of being
silently ignored and falling back to a default.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from features.errors import UserError


class Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class SourceParams(Section):
    kind: Literal["synthetic", "tables", "flat"] = "synthetic"
    path: str | None = None
    mapping: str | None = None
    feedback: str | None = "data/feedback"
    """Directory whose ``sales_events.parquet`` (``leadscore feedback export``: sales' verdicts
    from the score store) the ingest stage adds to the CRM's sales events; null: never."""

    @model_validator(mode="after")
    def _path_for_real_sources(self) -> SourceParams:
        if self.kind != "synthetic" and not self.path:
            raise ValueError(f"source.path is required when source.kind is {self.kind!r}")
        if self.kind == "flat" and not self.mapping:
            raise ValueError("source.mapping is required when source.kind is 'flat'")
        return self


class DriftParams(Section):
    """A simulated world that changes after ``after`` (null: never, the default), so that
    monitoring can be shown and tested to catch it: one channel's lead quality falls by
    ``quality_factor``, another's volume grows by ``volume_factor``, and a new campaign
    appears."""

    after: dt.date | None = None
    quality_channel: str = "paid_social"
    quality_factor: Annotated[float, Field(gt=0.0, le=10.0)] = 0.3
    volume_channel: str = "webinar"
    volume_factor: Annotated[float, Field(gt=0.0, le=20.0)] = 6.0
    new_campaign: bool = True

    @model_validator(mode="after")
    def _known_channels(self) -> DriftParams:
        from features.contract import CHANNELS

        for name in (self.quality_channel, self.volume_channel):
            if name not in CHANNELS:
                raise ValueError(f"generate.drift: unknown channel {name!r}; one of {CHANNELS}")
        return self


class GenerateParams(Section):
    leads: Annotated[int, Field(ge=10, le=20_000_000)] = 20_000
    seed: Annotated[int, Field(ge=0)] = 42
    start: dt.date = dt.date(2024, 1, 1)
    months: Annotated[int, Field(ge=1, le=120)] = 20
    leads_per_account: Annotated[float, Field(ge=1.0)] = 4.0
    share_without_account: Annotated[float, Field(ge=0.0, le=1.0)] = 0.12
    reps: Annotated[int, Field(ge=1)] = 24
    growth: Annotated[float, Field(ge=-0.9, le=10.0)] = 0.8
    simulate_days: Annotated[int, Field(ge=7, le=730)] = 120
    touches_per_lead: Annotated[float, Field(gt=0.0)] = 20.0
    dirty: bool = False
    segment_drivers: bool = False
    drift: DriftParams = DriftParams()


class ValidateParams(Section):
    max_quarantine_share: Annotated[float, Field(ge=0.0, le=1.0)] = 0.01
    time_tolerance_seconds: Annotated[float, Field(ge=0.0)] = 0.0
    example_ids: Annotated[int, Field(ge=0, le=100)] = 5


class DataParams(Section):
    horizon: dt.datetime | None = None
    currency: str = "EUR"


class QualityLeadParams(Section):
    target: str = "converted"
    window_days: Annotated[int, Field(ge=1, le=3650)] = 90


class TargetParams(Section):
    stages: Annotated[tuple[str, ...], Field(min_length=1)]


class SnapshotParams(Section):
    offsets_days: Annotated[tuple[int, ...], Field(min_length=1)] = (0, 7, 14, 30)


class SplitParams(Section):
    """Shares of labelled snapshots per split, in time order (oldest first)."""

    train: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.6
    valid: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.1
    calibration: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.1
    test: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.2
    seed: Annotated[int, Field(ge=0)] = 0

    @model_validator(mode="after")
    def _sum_to_one(self) -> SplitParams:
        total = self.train + self.valid + self.calibration + self.test
        if abs(total - 1.0) > 1e-9:
            raise ValueError(f"split shares must sum to 1, not {total:g}")
        return self


class FeatureParams(Section):
    windows_days: Annotated[tuple[int, ...], Field(min_length=1)] = (7, 30, 90)
    trend_days: Annotated[int, Field(ge=1)] = 7
    half_lives_days: tuple[Annotated[int, Field(ge=1, le=3650)], ...] = (7, 30)
    """Decayed touch counts per type, one per half-life (whole days: they name the features,
    ``demo_request_decay7d``); empty: none."""
    cooled_days: Annotated[int, Field(ge=1)] = 30
    """From this many days without an engaging touch on, reasons say engagement has cooled."""
    rate_smoothing: Annotated[float, Field(ge=0.0)] = 20.0
    min_category_count: Annotated[int, Field(ge=1)] = 5
    partition_leads: Annotated[int, Field(ge=1, le=2_000_000)] = 250_000

    @field_validator("half_lives_days")
    @classmethod
    def _distinct_half_lives(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        repeated = sorted({days for days in value if value.count(days) > 1})
        if repeated:
            raise ValueError(f"half-lives must differ: {', '.join(map(str, repeated))} repeated")
        return value


class MonotoneParams(Section):
    """Feature-name patterns (fnmatch) the score may only rise or only fall with."""

    increasing: tuple[str, ...] = ()
    decreasing: tuple[str, ...] = ()


POST_OUTCOME_WORDS: tuple[str, ...] = (
    "status",
    "stage",
    "tag",
    "quality",
    "reason",
    "closed",
    "won",
    "lost",
    "converted",
    "disqualified",
    "score",
    "rating",
)
"""The usual post-outcome vocabulary of CRM exports: a feature named with one of these words
is probably written by sales after the outcome (``train.leakage.suspicious_names``)."""


class LeakageParams(Section):
    """The per-column leakage guard of training (:mod:`models.reports.leakage`): a column is
    flagged when, for any target, its univariate ROC AUC on the train slice reaches
    ``univariate_auc``, it carries more than ``shap_share`` of the model's total |SHAP| on the
    validation slice, or leaving it out costs at least ``drop_auc_delta`` of validation AUC."""

    univariate_auc: Annotated[float, Field(gt=0.5, le=1.0)] = 0.85
    shap_share: Annotated[float, Field(gt=0.0, le=1.0)] = 0.5
    shap_min_columns: Annotated[int, Field(ge=1)] = 5
    """The |SHAP| share rule applies to models of at least this many columns: with two or three,
    one honest column carrying most of the model is expected (measured: 75 %, AUC 0.72)."""
    drop_auc_delta: Annotated[float, Field(gt=0.0, le=0.5)] = 0.1
    drop_columns: Annotated[int, Field(ge=0, le=100)] = 5
    """Columns (the top ones by |SHAP|) retrained without, to measure the drop in AUC."""
    drop_rounds: Annotated[int, Field(ge=10)] = 300
    drop_learning_rate: Annotated[float, Field(gt=0.0, le=1.0)] = 0.2
    shap_rows: Annotated[int, Field(ge=100)] = 2000
    folds: Annotated[int, Field(ge=2, le=20)] = 5
    """Out-of-fold target rates of categorical columns (so a near-unique column cannot
    score itself)."""
    fatal: bool = False
    suspicious_names: tuple[str, ...] = POST_OUTCOME_WORDS


class ClusterTrainParams(Section):
    """LightGBM on the Dask cluster when ``engine.kind`` is ``dask``
    (:mod:`models.cluster_training`): ``lightgbm.dask`` has no early stopping, so the number of
    trees comes from early stopping on a seeded sample of ``tree_sample_rows`` train rows in
    the stage's process first; ``time_out_minutes`` bounds how long its workers wait for each
    other on the network."""

    tree_sample_rows: Annotated[int, Field(ge=100)] = 100_000
    time_out_minutes: Annotated[int, Field(ge=1, le=1440)] = 10


class SelectionParams(Section):
    """Each target's model chosen among candidates on validation data only
    (:mod:`models.selection`): the first ``lightgbm_settings`` of a fixed grid of LightGBM
    settings (params.yaml's first), the logistic regression when ``logistic``, and blends of
    the best LightGBM setting's log-odds with the logistic's at the weights ``blends``;
    params.yaml's setting stays unless a candidate beats its figure by ``min_gain``. With
    fewer than ``cv_below`` labelled train + valid snapshots they are judged by time-ordered
    cross-validation over that period in ``cv_folds`` folds, else on the valid slice."""

    lightgbm_settings: Annotated[int, Field(ge=1, le=6)] = 3
    logistic: bool = True
    blends: tuple[Annotated[float, Field(gt=0.0, lt=1.0)], ...] = (0.25, 0.5, 0.75)
    min_gain: Annotated[float, Field(ge=0.0, le=0.5)] = 0.005
    cv_below: Annotated[int, Field(ge=0)] = 15_000
    cv_folds: Annotated[int, Field(ge=2, le=10)] = 3


class TrainParams(Section):
    learning_rate: Annotated[float, Field(gt=0.0, le=1.0)] = 0.05
    num_leaves: Annotated[int, Field(ge=2, le=4096)] = 7
    min_data_in_leaf: Annotated[int, Field(ge=1)] = 200
    feature_fraction: Annotated[float, Field(gt=0.0, le=1.0)] = 0.5
    bagging_fraction: Annotated[float, Field(gt=0.0, le=1.0)] = 0.8
    bagging_freq: Annotated[int, Field(ge=0)] = 1
    lambda_l2: Annotated[float, Field(ge=0.0)] = 10.0
    max_cat_to_onehot: Annotated[int, Field(ge=1)] = 64
    extra_trees: bool = True
    path_smooth: Annotated[float, Field(ge=0.0)] = 50.0
    max_rounds: Annotated[int, Field(ge=1)] = 2000
    early_stopping_rounds: Annotated[int, Field(ge=1)] = 50
    max_rows: Annotated[int | None, Field(ge=100)] = None
    seed: Annotated[int, Field(ge=0)] = 0
    num_threads: Annotated[int, Field(ge=0)] = 2
    calibration: Literal["isotonic", "sigmoid"] = "sigmoid"
    min_positives: Annotated[int, Field(ge=1)] = 40
    min_negatives: Annotated[int, Field(ge=1)] = 40
    leakage_auc: Annotated[float, Field(gt=0.5, le=1.0)] = 0.97
    leakage: LeakageParams = LeakageParams()
    logistic_c: Annotated[float, Field(gt=0.0)] = 1.0
    monotone: MonotoneParams = MonotoneParams()
    cluster: ClusterTrainParams = ClusterTrainParams()
    selection: SelectionParams = SelectionParams()


class RulesParams(Section):
    """Marketing's points score today: points per touch (all-time count) and per attribute."""

    touch_points: dict[str, float] = Field(default_factory=dict)
    attribute_points: dict[str, dict[str, float]] = Field(default_factory=dict)


class EvaluateParams(Section):
    ece_bins: Annotated[int, Field(ge=2, le=100)] = 10
    min_group_size: Annotated[int, Field(ge=1)] = 50
    shap_rows: Annotated[int, Field(ge=1)] = 2000


class PromotionParams(Section):
    """A new model takes the `champion` alias only if, on the new test slice and the primary
    target, its metric is no worse than the champion's (the point difference, in the better
    direction, is ≥ 0) and a paired bootstrap over the test leads puts the
    ``bootstrap_quantile`` of that difference at −``tolerance`` or above
    (:mod:`models.packaging.registry`)."""

    metric: Literal["roc_auc", "pr_auc", "brier", "log_loss"] = "roc_auc"
    tolerance: Annotated[float, Field(ge=0.0)] = 0.005
    bootstrap_resamples: Annotated[int, Field(ge=10, le=100_000)] = 1000
    bootstrap_seed: int = 0
    bootstrap_quantile: Annotated[float, Field(gt=0.0, lt=0.5)] = 0.05


class MlflowParams(Section):
    experiment: str = "leadscore"
    model_name: str = "lead-scoring"
    # Inside a DVC experiment (`dvc exp run`) the register stage logs the run but registers no
    # version and moves no alias, unless this is true: trying params must not change production.
    register_experiments: bool = False


class ServingParams(Section):
    """Limits of the API: per request (413/422 beyond them), per server (503/429) and per
    connection (uvicorn's; see ``pipelines/serve.py``)."""

    max_batch: Annotated[int, Field(ge=1)] = 1000
    max_body_bytes: Annotated[int, Field(ge=1024)] = 5_000_000
    max_events_per_lead: Annotated[int, Field(ge=1)] = 5000
    max_events_per_request: Annotated[int, Field(ge=1)] = 50_000
    """Touches + sales events of all leads of one request together (the work it costs)."""
    scoring_threads: Annotated[int, Field(ge=1, le=64)] = 1
    """Requests scored at once per worker, off the event loop (scale with workers)."""
    scoring_queue: Annotated[int, Field(ge=0)] = 64
    """Requests that may wait for a scoring thread; beyond that 503 with Retry-After. One-lead
    requests take about 5 ms, so 64 waiting is a third of a second (c=32 queues, not refused);
    heavy batches reach the request timeout first."""
    request_timeout_seconds: Annotated[float, Field(gt=0)] = 30.0
    """A scoring request still waiting or running after this is answered 503."""
    rate_limit_per_minute: Annotated[int, Field(ge=0)] = 0
    """Requests per API key per minute and worker (0: no limit); beyond it 429."""
    max_connections: Annotated[int, Field(ge=1)] = 256
    """Open connections per worker; beyond it new requests get 503 (uvicorn's cap)."""
    keep_alive_seconds: Annotated[float, Field(gt=0)] = 5.0
    header_timeout_seconds: Annotated[float, Field(gt=0)] = 10.0
    """A request whose headers (or body) are not complete after this is dropped."""
    max_header_bytes: Annotated[int, Field(ge=1024)] = 16_384
    max_headers: Annotated[int, Field(ge=8)] = 100


class FeedbackParams(Section):
    """Sales' verdicts on a lead (``POST /v1/leads/{lead_id}/feedback``): a rejection must give
    one of these reasons, so marketing can count them."""

    reject_reasons: tuple[str, ...] = (
        "not a fit",
        "no budget",
        "no authority",
        "no need",
        "bad timing",
        "bad contact data",
        "duplicate",
        "competitor or partner",
        "student or job seeker",
    )
    accept_reasons: tuple[str, ...] = ()
    """Optional reasons for an acceptance (empty: any acceptance needs no reason)."""

    @model_validator(mode="after")
    def _distinct(self) -> FeedbackParams:
        for name in ("reject_reasons", "accept_reasons"):
            values = getattr(self, name)
            if len(set(values)) != len(values) or any(not value.strip() for value in values):
                raise ValueError(f"feedback.{name} must be distinct, non-empty texts")
        if not self.reject_reasons:
            raise ValueError("feedback.reject_reasons needs at least one reason")
        return self


class TrendParams(Section):
    """A lead's score trend from its stored history: the change of its primary probability
    over the last ``window_days`` days, against ``threshold`` (absolute probability)."""

    window_days: Annotated[int, Field(ge=1)] = 30
    threshold: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.05


class StoreParams(Section):
    """The score store (``LEADSCORE_STORE_URL``): how recording batches its writes."""

    batch_size: Annotated[int, Field(ge=1)] = 500
    """Scores written in one transaction by the background recorder."""
    flush_seconds: Annotated[float, Field(gt=0)] = 0.5
    """The longest a recorded score waits before it is written."""
    max_pending: Annotated[int, Field(ge=1)] = 100_000
    """Scores waiting to be written; beyond it new ones are dropped as "not recorded"."""
    trend: TrendParams = TrendParams()


class MonitorParams(Section):
    """``leadscore monitor``: what counts as recent, the drift bands and the retrain rule."""

    recent_days: Annotated[int, Field(ge=1)] = 30
    """The recently scored population: scores of the last this many days (before the horizon)."""
    psi_moderate: Annotated[float, Field(gt=0.0)] = 0.10
    psi_major: Annotated[float, Field(gt=0.0)] = 0.25
    bins: Annotated[int, Field(ge=2, le=100)] = 10
    """Quantile bins of a numeric feature (and of the score) in the training reference."""
    retrain_score_psi: Annotated[float, Field(gt=0.0)] = 0.25
    """Retraining is recommended when the score's PSI reaches this ..."""
    retrain_auc_drop: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.05
    """... or when the ROC AUC on matured scores is this far below the model's own test AUC."""
    min_matured: Annotated[int, Field(ge=1)] = 200
    """Matured scores needed before their AUC may recommend retraining."""
    retrain_major_features: Annotated[int, Field(ge=0)] = 1
    """... or when at least this many features (not ``trending``) drift majorly (0: never)."""
    trending: tuple[str, ...] = (
        "*_lift",
        "account_earlier_leads",
        "account_opportunities",
        "account_wins",
        "campaign_daily_*",
        "campaign_spend_per_lead",
    )
    """Features (shell patterns) that shift with the calendar by construction, in a world that
    does not change: outcome rates with few matured outcomes early in the training slice, an
    account's history that only grows, campaign volume and spend that grow with the business.
    Their PSI is reported (``trending: true``) but never counts as drift."""

    @model_validator(mode="after")
    def _bands(self) -> MonitorParams:
        if not self.psi_moderate < self.psi_major:
            raise ValueError("monitor.psi_moderate must be below monitor.psi_major")
        return self


class GradeFloors(Section):
    A: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.40
    B: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.20
    C: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.08

    @model_validator(mode="after")
    def _descending(self) -> GradeFloors:
        if not self.A > self.B > self.C:
            raise ValueError("grades must satisfy A > B > C")
        return self


class HandoffParams(Section):
    min_grade: Literal["A", "B", "C", "D"] = "B"


Percent = Annotated[float, Field(gt=0.0, lt=100.0)]


class TimingParams(Section):
    """When a lead converts and for how much (:mod:`models.timing`): a discrete-time model of
    the primary target's conversion over ``horizons_days`` (increasing), and a regression of
    the won deal's amount, used when at least ``min_deals`` won deals carry one (else their
    mean). ``enabled: false`` trains neither."""

    enabled: bool = True
    horizons_days: tuple[Annotated[int, Field(ge=1, le=3650)], ...] = (7, 14, 30, 60, 90, 180)
    min_deals: Annotated[int, Field(ge=1)] = 50
    learning_rate: Annotated[float, Field(gt=0.0, le=1.0)] = 0.1
    calibrate: bool = True

    @field_validator("horizons_days")
    @classmethod
    def _increasing(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or any(b <= a for a, b in itertools.pairwise(value)):
            raise ValueError("timing.horizons_days must be a non-empty increasing list of days")
        return value


class SegmentsParams(Section):
    """Models per segment with a pooled fallback (:mod:`models.segment_training`): ``by`` a
    categorical feature of the model (null: one pooled model), its values alone or in
    ``groups`` (segment name → values); a segment gets its own model when its train slice holds
    ``min_positives`` and ``min_negatives`` of the primary target, among the ``max_segments``
    largest, and keeps it only if that model's ROC AUC on the segment's calibration rows beats
    the pooled model's there by more than ``min_gain``."""

    by: str | None = None
    groups: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    min_positives: Annotated[int, Field(ge=1)] = 100
    min_negatives: Annotated[int, Field(ge=1)] = 100
    max_segments: Annotated[int, Field(ge=1, le=100)] = 10
    min_gain: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0

    @field_validator("groups")
    @classmethod
    def _named_groups(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        if "pooled" in value:
            raise ValueError("segments.groups: 'pooled' is the pooled model's name")
        seen: dict[str, str] = {}
        for name, values in value.items():
            for v in values:
                key = str(v).strip().lower()
                if key in seen and seen[key] != name:
                    raise ValueError(
                        f"segments.groups: {v!r} is in both {seen[key]!r} and {name!r}"
                    )
                seen[key] = name
        return value


class GridParams(Section):
    """Fit × engagement: score floors (0–100) of the fit letters and engagement digits."""

    fit: dict[str, Percent] = Field(default_factory=lambda: {"A": 75.0, "B": 50.0, "C": 25.0})
    engagement: dict[str, Percent] = Field(
        default_factory=lambda: {"1": 75.0, "2": 50.0, "3": 25.0}
    )
    reference_rows: Annotated[int, Field(ge=100)] = 20000

    @field_validator("fit", "engagement", mode="before")
    @classmethod
    def _text_keys(cls, value: object) -> object:
        # YAML reads an unquoted digit key (`1: 75`) as a number.
        return {str(k): v for k, v in value.items()} if isinstance(value, dict) else value

    @model_validator(mode="after")
    def _descending(self) -> GridParams:
        for name, floors, order in (
            ("fit", self.fit, "ABC"),
            ("engagement", self.engagement, "123"),
        ):
            if sorted(floors) != list(order):
                raise ValueError(f"grid.{name} needs floors for each of {', '.join(order)}")
            values = [floors[k] for k in order]
            if not all(a > b for a, b in itertools.pairwise(values)):
                raise ValueError(f"grid.{name} floors must descend: {' > '.join(order)}")
        return self


class EngineParams(Section):
    """Where the stages' batch work runs (``features/distributed.py``): ``local`` (this
    process, the default) or ``dask``: a ``distributed.LocalCluster`` of ``workers`` processes
    started for the stage and closed after it when ``scheduler`` is null, else the running
    cluster at that address (``tcp://host:8786``), whose workers must reach the data paths."""

    kind: Literal["local", "dask"] = "local"
    scheduler: str | None = None
    """Address of a running Dask scheduler (``tcp://host:8786``); null: a local cluster."""
    workers: Annotated[int, Field(ge=1, le=1024)] = 2
    """Worker processes of the local cluster (ignored with ``scheduler``)."""
    threads_per_worker: Annotated[int, Field(ge=1, le=256)] = 1
    memory_limit: str | None = None
    """Memory limit of each local worker (``4GiB``, ``auto``); null: Dask's default."""
    partitions: Annotated[int, Field(ge=1, le=100_000)] = 8
    """Lead partitions (by a stable hash of lead_id): a lead's whole history is in one."""

    @field_validator("scheduler")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is not None and "://" not in value:
            raise ValueError(f"a scheduler address such as tcp://host:8786, not {value!r}")
        return value

    @field_validator("memory_limit")
    @classmethod
    def _memory(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(
            r"auto|\d+(\.\d+)?\s*([kKMGTP]i?B|[kKMGTP]|B)?", value.strip()
        ):
            raise ValueError(f"a size such as 4GiB or auto, not {value!r}")
        return value


class Params(Section):
    source: SourceParams = SourceParams()
    generate: GenerateParams = GenerateParams()
    data: DataParams = DataParams()
    validate_: ValidateParams = Field(default=ValidateParams(), alias="validate")
    quality_lead: QualityLeadParams = QualityLeadParams()
    targets: dict[str, TargetParams] = Field(
        default_factory=lambda: {
            "accepted": TargetParams(stages=("accepted", "opportunity", "won")),
            "converted": TargetParams(stages=("won",)),
        }
    )
    snapshots: SnapshotParams = SnapshotParams()
    split: SplitParams = SplitParams()
    features: FeatureParams = FeatureParams()
    train: TrainParams = TrainParams()
    rules: RulesParams = RulesParams()
    evaluate: EvaluateParams = EvaluateParams()
    promotion: PromotionParams = PromotionParams()
    mlflow: MlflowParams = MlflowParams()
    serving: ServingParams = ServingParams()
    grades: GradeFloors = GradeFloors()
    handoff: HandoffParams = HandoffParams()
    grid: GridParams = GridParams()
    timing: TimingParams = TimingParams()
    segments: SegmentsParams = SegmentsParams()
    feedback: FeedbackParams = FeedbackParams()
    store: StoreParams = StoreParams()
    monitor: MonitorParams = MonitorParams()
    engine: EngineParams = EngineParams()

    @model_validator(mode="after")
    def _target_defined(self) -> Params:
        if self.quality_lead.target not in self.targets:
            raise ValueError(
                f"quality_lead.target {self.quality_lead.target!r} is not one of targets "
                f"{sorted(self.targets)}"
            )
        from features.contract import SALES_STAGES

        for name, target in self.targets.items():
            unknown = sorted(set(target.stages) - set(SALES_STAGES))
            if unknown:
                raise ValueError(f"targets.{name}.stages has unknown stages {unknown}")
        return self


def _describe(error: ValidationError, path: Path) -> str:
    first = error.errors()[0]
    key = ".".join(str(part) for part in first["loc"]) or "(top level)"
    if first["type"] == "extra_forbidden":
        return f"{path}: unknown key '{key}' (misspelled?)"
    return f"{path}: '{key}': {first['msg']}"


def parse_params(raw: object, path: Path = Path("params.yaml")) -> Params:
    """Validate an already-parsed params mapping."""
    try:
        return Params.model_validate(raw or {})
    except ValidationError as error:
        raise UserError(_describe(error, path)) from None


def load_params(path: Path | str = "params.yaml") -> Params:
    """Read and validate params.yaml; any problem is a one-line :class:`UserError`."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except yaml.YAMLError as error:
        raise UserError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
    return parse_params(raw, path)
