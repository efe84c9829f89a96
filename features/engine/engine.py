"""Point-in-time features: one fitted engine for training (batch) and serving (one lead).

A snapshot is (lead, as_of). Every feature uses only rows with time < as_of, at millisecond
resolution (all times become integer milliseconds since the Unix epoch, floored, in both paths;
an event at or after as_of is therefore never counted). The same numpy kernel computes the
features of a million snapshots and of one lead sent to the API, so both return the same bits.

``FeatureEngine.fit`` learns what serving cannot recompute from one lead's history: category
vocabularies, campaign and account attributes, and time-indexed history (account leads,
opportunities and wins; campaign lead volumes; matured outcomes per campaign and channel). All
of it is stored as sorted arrays of composite keys ``code * SPAN + time`` so one
``np.searchsorted`` answers "how many before as_of" for many codes at once. History is frozen at
the fit horizon: serving after it sees history as of training, never raw data.

Time handling and the history kernels live in :mod:`features.engine.timelines`, category and id
encoding in :mod:`features.engine.encoding`, what each feature means in
:mod:`features.engine.catalog`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from features import contract
from features.engine import catalog
from features.engine.catalog import OTHER
from features.engine.encoding import (
    Columns,
    index_codes,
    lookup_codes,
    normalise,
    vocabulary_codes,
)
from features.engine.timelines import (
    DAY_MS,
    StackedTimelines,
    Timeline,
    days_since,
    decayed_window_counts,
    timestamp_ms,
    timestamps_ms,
    window_counts,
    window_hits,
)
from features.errors import UserError
from features.threads import thread_count, thread_map

logger = logging.getLogger(__name__)

ORIGIN_LOOKBACK_MS = 10 * 365 * DAY_MS
"""How long before the first lead the fitted timelines' origin lies: events up to ten years
before it keep their time (earlier ones are clamped to the origin)."""
DISENGAGING_TOUCHES = ("unsubscribe",)
"""Touch types left out of the engagement trend and of the days since the last engagement."""

LEAD_CATEGORICALS = contract.LEAD_ATTRIBUTES
ACCOUNT_CATEGORICALS = ("industry",)
ACCOUNT_NUMERICS = ("employees", "annual_revenue")
SALES_STAGES = contract.SALES_STAGES


@dataclass(frozen=True)
class FeatureInfo:
    name: str
    family: str
    kind: str  # "numeric" or "categorical"
    business_field: str
    description: str


@dataclass
class LeadArrays:
    """Leads in kernel form: row i is lead code i."""

    created_ms: np.ndarray
    campaign: np.ndarray  # fitted campaign code, -1 unknown or none
    account: np.ndarray  # fitted account code, -1 unknown or none
    categorical: dict[str, np.ndarray]  # float codes, NaN missing, len(vocab) unseen
    numeric: dict[str, np.ndarray]


@dataclass
class EventArrays:
    lead: np.ndarray  # lead code
    ms: np.ndarray
    kind: np.ndarray  # touch type or sales stage code
    campaign: np.ndarray  # touches only: fitted campaign code or -1


HASHED_PAIRS = 20_000
"""From this many touches with a campaign on, each (lead, campaign) pair's first touch is found
by hashing one combined key (batches: 2.8x less CPU than a 3-key lexsort); below it, by the
lexsort (one lead: the hash table's set-up would cost it about 250 µs)."""


def _first_touches(touches: EventArrays) -> tuple[np.ndarray, np.ndarray]:
    """The lead and time of each (lead, campaign) pair's earliest touch, in no set order."""
    has_campaign = touches.campaign >= 0
    lead = touches.lead[has_campaign].astype(np.int64)
    campaign = touches.campaign[has_campaign].astype(np.int64)
    ms = touches.ms[has_campaign]
    if len(lead) >= HASHED_PAIRS:
        span = int(campaign.max()) + 1
        earliest = pd.Series(ms).groupby(lead * span + campaign, sort=False).min()
        return earliest.index.to_numpy(np.int64) // span, earliest.to_numpy(np.int64)
    order = np.lexsort((ms, campaign, lead))
    lead, campaign, ms = lead[order], campaign[order], ms[order]
    first = np.ones(len(lead), dtype=bool)
    first[1:] = (lead[1:] != lead[:-1]) | (campaign[1:] != campaign[:-1])
    return lead[first], ms[first]


def lead_column(leads: pd.DataFrame, name: str) -> pd.Series | None:
    """The leads column of the lead feature ``name``: the column of that name, else, for a
    canonical attribute, the column that is it by :func:`contract.canonical_name`'s rule
    (``Country`` for ``country``), as the importer and the validation stage read it; None when
    the leads have neither."""
    if name in leads.columns:
        return leads[name]
    if name in contract.LEAD_ATTRIBUTES:
        for column in leads.columns:
            if contract.lead_attribute(column) == name:
                return leads[column]
    return None


def _empty_events() -> EventArrays:
    empty = np.zeros(0, dtype=np.int64)
    return EventArrays(empty, empty, empty, empty)


PARALLEL_SNAPSHOTS = 20_000
"""From this many snapshots on, a transform runs in lead ranges on several threads (numpy's
sorts, searches and gathers release the GIL); below it, in the calling thread, where a pool's
set-up would cost more than a second core gives back."""

Result = TypeVar("Result")


def lead_ranges(
    query_lead: np.ndarray, n_leads: int, parts: int
) -> list[tuple[int, int, int, int]]:
    """Queries sorted by lead cut into at most ``parts`` runs of whole leads with about equal
    numbers of queries: (first lead, end lead, first query, end query) of each run."""
    n = len(query_lead)
    cuts = [0]
    for i in range(1, parts):
        cut = int(np.searchsorted(query_lead, query_lead[n * i // parts], side="left"))
        if cut > cuts[-1]:
            cuts.append(cut)
    cuts.append(n)
    bounds = [0, *(int(query_lead[cut]) for cut in cuts[1:-1]), n_leads]
    return [(bounds[i], bounds[i + 1], cuts[i], cuts[i + 1]) for i in range(len(cuts) - 1)]


def _events_in(events: EventArrays, first: int, end: int) -> EventArrays:
    inside = (events.lead >= first) & (events.lead < end)
    return EventArrays(
        events.lead[inside] - first, events.ms[inside], events.kind[inside], events.campaign[inside]
    )


PARALLEL_EVENTS = 200_000
"""From this many events on, a table is converted to kernel form in row slices on threads."""


def _in_row_slices(
    convert: Callable[[pd.DataFrame], EventArrays], events: pd.DataFrame, threads: int
) -> EventArrays:
    """``convert`` of ``events`` in row slices, one per thread, joined in row order (the
    conversion is row by row, so the slices give the same arrays as the whole)."""
    workers = thread_count(threads) if len(events) >= PARALLEL_EVENTS else 1
    if workers == 1:
        return convert(events)
    cuts = [len(events) * i // workers for i in range(workers + 1)]
    slices = [events.iloc[cuts[i] : cuts[i + 1]] for i in range(workers)]
    parts = thread_map(convert, slices, workers, "events")
    return EventArrays(
        *(
            np.concatenate([getattr(part, field.name) for part in parts])
            for field in fields(EventArrays)
        )
    )


def map_lead_ranges(
    kernel: Callable[[LeadArrays, EventArrays, EventArrays, np.ndarray, np.ndarray], Result],
    leads: LeadArrays,
    touches: EventArrays,
    sales: EventArrays,
    query_lead: np.ndarray,
    as_of: np.ndarray,
    threads: int = 0,
) -> list[Result]:
    """``kernel`` on each range of whole leads, on ``threads`` threads (0: every core this
    process may use), with lead codes renumbered from 0 in each range; the results in lead
    order. Queries must be sorted by lead. A lead's features depend only on its own events
    and the fitted history, so the ranges give the same bits as one call."""
    workers = thread_count(threads)
    if workers == 1 or len(query_lead) < PARALLEL_SNAPSHOTS:
        return [kernel(leads, touches, sales, query_lead, as_of)]

    def run(bounds: tuple[int, int, int, int]) -> Result:
        first, end, start, stop = bounds
        part = LeadArrays(
            created_ms=leads.created_ms[first:end],
            campaign=leads.campaign[first:end],
            account=leads.account[first:end],
            categorical={name: codes[first:end] for name, codes in leads.categorical.items()},
            numeric={name: values[first:end] for name, values in leads.numeric.items()},
        )
        return kernel(
            part,
            _events_in(touches, first, end),
            _events_in(sales, first, end),
            query_lead[start:stop] - first,
            as_of[start:stop],
        )

    return thread_map(
        run, lead_ranges(query_lead, len(leads.created_ms), workers), workers, "features"
    )


def touch_type_counts_of(touch_types: pd.Series) -> pd.Series:
    """Normalised touch type → count: what the fit needs of the touches (counts of parts of
    the table add up to the whole's)."""
    return normalise(touch_types, lowercase=True).value_counts()


class FeatureEngine:
    """Fitted point-in-time feature computer (scikit-learn conventions).

    ``__init__`` only stores parameters; ``fit`` learns vocabularies and history; attributes
    ending in ``_`` are fitted state, carried by the model bundle into serving.
    """

    def __init__(
        self,
        windows_days: Sequence[int] = (7, 30, 90),
        trend_days: int = 7,
        half_lives_days: Sequence[int] = (7, 30),
        cooled_days: int = 30,
        rate_smoothing: float = 20.0,
        min_category_count: int = 5,
        window_days: int = 90,
        targets: Mapping[str, Sequence[str]] | None = None,
        extra_categorical: Sequence[str] = (),
        extra_numeric: Sequence[str] = (),
        currency: str = "",
        labels: Mapping[str, str] | None = None,
    ) -> None:
        self.windows_days = windows_days
        self.trend_days = trend_days
        self.half_lives_days = half_lives_days
        self.cooled_days = cooled_days
        self.rate_smoothing = rate_smoothing
        self.min_category_count = min_category_count
        self.window_days = window_days
        self.targets = targets
        self.extra_categorical = extra_categorical
        self.extra_numeric = extra_numeric
        self.currency = currency
        self.labels = labels

    # ------------------------------------------------------------------ fit
    def fit(
        self,
        tables: Mapping[str, pd.DataFrame],
        horizon: pd.Timestamp,
        touch_type_counts: pd.Series | None = None,
    ) -> FeatureEngine:
        """Learn vocabularies and time-indexed history from the whole dataset. Of the touches
        only their types' counts are needed: ``touch_type_counts`` (normalised type → count,
        e.g. summed over a cluster's partitions) stands for a ``touches`` table not in
        ``tables``."""
        leads = tables["leads"]
        targets = dict(self.targets or {"converted": ("won",)})
        self.targets_ = {name: tuple(stages) for name, stages in targets.items()}
        self.horizon_ms_ = timestamp_ms(horizon)
        created = timestamps_ms(leads["created_at"])
        self.origin_ms_ = int(created.min()) - ORIGIN_LOOKBACK_MS if len(created) else 0
        self.has_touches_ = "touches" in tables or touch_type_counts is not None
        self.has_sales_ = "sales_events" in tables
        self.has_campaigns_ = "campaigns" in tables
        self.has_accounts_ = "accounts" in tables

        # A declared column that is a canonical attribute (`Country`) is that attribute, found
        # among the canonical ones below, never a second feature looked up under its own name.
        extras = dict.fromkeys(
            name for name in self.extra_categorical if contract.lead_attribute(name) is None
        )
        present = {name: lead_column(leads, name) for name in LEAD_CATEGORICALS}
        self.lead_categoricals_ = tuple(
            name
            for name, values in present.items()
            if values is not None and bool(values.notna().any())
        ) + tuple(extras)
        self.numerics_ = tuple(self.extra_numeric)
        self.vocabularies_: dict[str, tuple[str, ...]] = {}
        for name in self.lead_categoricals_:
            values = lead_column(leads, name)
            if values is None:
                raise UserError(
                    f"leads: no column {name!r}, declared a categorical feature by the import"
                )
            self.vocabularies_[name] = self._vocabulary(
                normalise(values, self._lowercase("leads", name))
            )

        self.campaign_ids_: dict[str, int] = {}
        if self.has_campaigns_:
            campaigns = tables["campaigns"]
            self.campaign_ids_ = {key: i for i, key in enumerate(campaigns["campaign_id"])}
            channel = normalise(campaigns["channel"], lowercase=True)
            self.vocabularies_["channel"] = self._vocabulary(channel, min_count=1)
            self.campaign_channel_ = lookup_codes(channel, self.vocabularies_["channel"])
            self.campaign_spend_ = campaigns["spend"].to_numpy(dtype=np.float64)
            self.campaign_start_ms_ = timestamps_ms(campaigns["started_at"])
            ended = campaigns["ended_at"]
            end_ms = np.full(len(campaigns), self.horizon_ms_, dtype=np.int64)
            end_ms[ended.notna().to_numpy()] = timestamps_ms(ended.dropna())
            self.campaign_end_ms_ = end_ms

        self.account_ids_: dict[str, int] = {}
        if self.has_accounts_:
            accounts = tables["accounts"]
            self.account_ids_ = {key: i for i, key in enumerate(accounts["account_id"])}
            industry = normalise(accounts["industry"], lowercase=True)
            self.vocabularies_["industry"] = self._vocabulary(industry)
            self.account_industry_ = lookup_codes(industry, self.vocabularies_["industry"])
            self.account_numeric_ = {
                name: accounts[name].to_numpy(dtype=np.float64) for name in ACCOUNT_NUMERICS
            }

        if self.has_touches_:
            counts = touch_type_counts
            if counts is None:
                counts = touch_type_counts_of(tables["touches"]["touch_type"])
            seen = self._kept(counts, min_count=self.min_category_count)
            self.touch_types_ = tuple(contract.TOUCH_TYPES) + tuple(
                t for t in seen if t not in contract.TOUCH_TYPES
            )

        self.history_, self.outcomes_ = self._fit_history(tables, created)
        self.features_ = self._describe_features()
        self.feature_names_ = [f.name for f in self.features_]
        self.categorical_features_ = [f.name for f in self.features_ if f.kind == "categorical"]

        # Lookup tables of the transforms, derived from the fitted state above: the column of
        # each feature, the code of each value per vocabulary and of each event kind per kind
        # field (the one-lead path's lookups).
        self.feature_positions_ = {name: i for i, name in enumerate(self.feature_names_)}
        self.vocabulary_index_ = {
            name: {value: i for i, value in enumerate(vocabulary)}
            for name, vocabulary in self.vocabularies_.items()
        }
        kinds: dict[str, Sequence[str]] = {}
        if self.has_touches_:
            kinds["touch_type"] = self.touch_types_
        if self.has_sales_:
            kinds["stage"] = SALES_STAGES
        self.kind_index_ = {
            field: {value: i for i, value in enumerate(vocabulary)}
            for field, vocabulary in kinds.items()
        }
        return self

    def _vocabulary(self, values: pd.Series, min_count: int | None = None) -> tuple[str, ...]:
        return self._kept(values.value_counts(), min_count)

    def _kept(self, counts: pd.Series, min_count: int | None = None) -> tuple[str, ...]:
        kept = counts[counts >= (min_count or self.min_category_count)]
        return tuple(sorted(str(value) for value in kept.index))

    @staticmethod
    def _lowercase(table: str, column: str) -> bool:
        spec = contract.TABLES[table]
        return column in spec.column_names and spec.column(column).lowercase

    def _fit_history(
        self, tables: Mapping[str, pd.DataFrame], created: np.ndarray
    ) -> tuple[StackedTimelines, StackedTimelines]:
        """Time-indexed history of campaigns and accounts, and matured outcomes."""
        leads = tables["leads"]
        origin = self.origin_ms_
        campaign = self._codes(leads.get("campaign_id"), self.campaign_ids_, len(leads))
        account = self._codes(leads.get("account_id"), self.account_ids_, len(leads))
        known_campaign = campaign >= 0
        known_account = account >= 0
        n_campaigns = len(self.campaign_ids_)
        n_accounts = len(self.account_ids_)
        history = [
            (
                "campaign_leads",
                n_campaigns,
                campaign[known_campaign],
                created[known_campaign],
                None,
            ),
            ("account_leads", n_accounts, account[known_account], created[known_account], None),
        ]
        outcomes = StackedTimelines(origin, [])
        if self.has_sales_:
            lead_code = pd.Index(leads["lead_id"])
            sales = tables["sales_events"]
            sales_lead = np.asarray(lead_code.get_indexer(sales["lead_id"]), dtype=np.int64)
            sales_ms = timestamps_ms(sales["occurred_at"])
            stage = sales["stage"].to_numpy()
            valid = sales_lead >= 0
            for name, stage_name in (
                ("account_opportunities", "opportunity"),
                ("account_wins", "won"),
            ):
                rows = valid & (stage == stage_name)
                owner = account[sales_lead[rows]]
                history.append(
                    (name, n_accounts, owner[owner >= 0], sales_ms[rows][owner >= 0], None)
                )
            outcomes = self._fit_outcomes(
                created, campaign, sales_lead[valid], sales_ms[valid], stage[valid]
            )
        return StackedTimelines(origin, history), outcomes

    def _fit_outcomes(
        self,
        created: np.ndarray,
        campaign: np.ndarray,
        sales_lead: np.ndarray,
        sales_ms: np.ndarray,
        stage: np.ndarray,
    ) -> StackedTimelines:
        """Outcomes mature window_days after creation; only those matured by the horizon count."""
        known_campaign = campaign >= 0
        window_ms = self.window_days * DAY_MS
        matured_ms = created + window_ms
        matured = matured_ms <= self.horizon_ms_
        channel = (
            np.where(known_campaign, self.campaign_channel_[np.maximum(campaign, 0)], np.nan)
            if self.has_campaigns_
            else np.full(len(created), np.nan)
        )
        channel_code = np.where(np.isnan(channel), -1, channel).astype(np.int64)
        n_channels = len(self.vocabularies_.get("channel", ())) + 1
        parts: list[tuple[str, int, np.ndarray, np.ndarray, np.ndarray | None]] = []
        for target, stages in self.targets_.items():
            hits = np.isin(stage, stages)
            label = window_hits(
                self.origin_ms_,
                sales_lead[hits],
                sales_ms[hits],
                np.arange(len(created)),
                created,
                window_ms,
            ).astype(np.float64)
            by_campaign = matured & known_campaign
            by_channel = matured & (channel_code >= 0)
            parts += [
                (
                    f"{target}:global",
                    1,
                    np.zeros(matured.sum(), np.int64),
                    matured_ms[matured],
                    label[matured],
                ),
                (
                    f"{target}:campaign",
                    len(self.campaign_ids_),
                    campaign[by_campaign],
                    matured_ms[by_campaign],
                    label[by_campaign],
                ),
                (
                    f"{target}:channel",
                    n_channels,
                    channel_code[by_channel],
                    matured_ms[by_channel],
                    label[by_channel],
                ),
            ]
        return StackedTimelines(self.origin_ms_, parts)

    @staticmethod
    def _codes(values: pd.Series | None, index: Mapping[str, int], n: int) -> np.ndarray:
        if values is None or not index:
            return np.full(n, -1, dtype=np.int64)
        return index_codes(pd.Index(list(index)), values)

    # ------------------------------------------------------------ describe
    def wording_context(self) -> catalog.Context:
        """What wording a value needs beyond its feature: the currency of money amounts
        (params ``data.currency``), the trend period, when engagement has cooled
        (``features.cooled_days``) and a flat export's column labels (the mapping's
        ``labels``)."""
        return catalog.Context(
            currency=self.currency,
            trend_days=self.trend_days,
            cooled_days=getattr(self, "cooled_days", catalog.Context.cooled_days),
            labels=self._labels(),
        )

    def _labels(self) -> dict[str, str]:
        # getattr: engines pickled before labels existed still load and word their reasons
        return dict(getattr(self, "labels", None) or {})

    def _half_lives(self) -> tuple[int, ...]:
        # getattr: engines pickled before decayed counts existed have none (their features_
        # say so too), and still transform
        return tuple(getattr(self, "half_lives_days", ()))

    def _describe_features(self) -> list[FeatureInfo]:
        """The features this fitted engine produces, in column order, as the feature catalog
        (features/engine/catalog.py) declares them."""
        shape = catalog.Shape(
            lead_attributes=tuple(self.lead_categoricals_),
            numerics=tuple(self.numerics_),
            touches=self.has_touches_,
            sales=self.has_sales_,
            campaigns=self.has_campaigns_,
            accounts=self.has_accounts_,
            touch_types=tuple(self.touch_types_) if self.has_touches_ else (),
            windows_days=tuple(self.windows_days),
            trend_days=self.trend_days,
            half_lives_days=self._half_lives(),
            targets=tuple(self.targets_),
            labels=self._labels(),
        )
        return [
            FeatureInfo(f.name, f.family, f.kind, f.business_field, f.description)
            for f in catalog.features_of(shape)
        ]

    # ----------------------------------------------------------- prepare
    def lead_arrays(self, leads: pd.DataFrame) -> LeadArrays:
        """Batch form of leads (vectorised)."""
        n = len(leads)
        categorical = {}
        for name in self.lead_categoricals_:
            values = lead_column(leads, name)
            categorical[name] = (
                vocabulary_codes(values, self.vocabularies_[name], self._lowercase("leads", name))
                if values is not None
                else np.full(n, np.nan)
            )
        numeric = {
            name: pd.to_numeric(leads[name], errors="coerce").to_numpy(dtype=np.float64)
            if name in leads
            else np.full(n, np.nan)
            for name in self.numerics_
        }
        return LeadArrays(
            created_ms=timestamps_ms(leads["created_at"]),
            campaign=self._codes(leads.get("campaign_id"), self.campaign_ids_, n),
            account=self._codes(leads.get("account_id"), self.account_ids_, n),
            categorical=categorical,
            numeric=numeric,
        )

    def event_arrays(
        self,
        lead_ids: pd.Index,
        touches: pd.DataFrame | None,
        sales: pd.DataFrame | None,
        threads: int = 1,
    ) -> tuple[EventArrays, EventArrays]:
        """Events in kernel form; large tables are converted in row slices on ``threads``
        threads (0: every core; Arrow's hashing and pandas' time conversion release the GIL)."""
        touch_arrays = _empty_events()
        if touches is not None and self.has_touches_ and len(touches):
            touch_arrays = _in_row_slices(
                lambda rows: self._touch_arrays(lead_ids, rows), touches, threads
            )
        sales_arrays = _empty_events()
        if sales is not None and self.has_sales_ and len(sales):
            sales_arrays = _in_row_slices(
                lambda rows: self._sales_arrays(lead_ids, rows), sales, threads
            )
        return touch_arrays, sales_arrays

    def _touch_arrays(self, lead_ids: pd.Index, touches: pd.DataFrame) -> EventArrays:
        kinds = vocabulary_codes(touches["touch_type"], self.touch_types_, lowercase=True)
        return EventArrays(
            lead=index_codes(lead_ids, touches["lead_id"]),
            ms=timestamps_ms(touches["occurred_at"]),
            kind=np.nan_to_num(kinds, nan=len(self.touch_types_)).astype(np.int64),
            campaign=self._codes(touches.get("campaign_id"), self.campaign_ids_, len(touches)),
        )

    @staticmethod
    def _sales_arrays(lead_ids: pd.Index, sales: pd.DataFrame) -> EventArrays:
        stage = vocabulary_codes(sales["stage"], SALES_STAGES, lowercase=True)
        return EventArrays(
            lead=index_codes(lead_ids, sales["lead_id"]),
            ms=timestamps_ms(sales["occurred_at"]),
            kind=np.nan_to_num(stage, nan=len(SALES_STAGES)).astype(np.int64),
            campaign=np.zeros(len(sales), dtype=np.int64),
        )

    # ---------------------------------------------------------- transform
    def transform(
        self,
        snapshots: pd.DataFrame,
        leads: pd.DataFrame,
        touches: pd.DataFrame | None = None,
        sales_events: pd.DataFrame | None = None,
        threads: int = 0,
    ) -> np.ndarray:
        """Feature matrix (float64, categorical columns hold vocabulary codes) for snapshots
        ``(lead_id, as_of)``; the histories given may include the future: it is ignored.
        Large batches run on ``threads`` threads (0: every core), in ranges of whole leads."""
        lead_ids = pd.Index(leads["lead_id"])
        lead_arrays = self.lead_arrays(leads)
        touch_arrays, sales_arrays = self.event_arrays(lead_ids, touches, sales_events, threads)
        query_lead = np.asarray(lead_ids.get_indexer(snapshots["lead_id"]), dtype=np.int64)
        if (query_lead < 0).any():
            raise ValueError("snapshots refer to leads that are not in `leads`")
        as_of = timestamps_ms(snapshots["as_of"])
        # Queries sorted by lead make every searchsorted walk forward (cache-friendly); the
        # rows go back to the caller's order at the end.
        order = np.lexsort((as_of, query_lead))
        parts = map_lead_ranges(
            self._kernel,
            lead_arrays,
            touch_arrays,
            sales_arrays,
            query_lead[order],
            as_of[order],
            threads,
        )
        matrix = parts[0] if len(parts) == 1 else np.concatenate(parts)
        result = np.empty_like(matrix)
        result[order] = matrix
        return result

    def transform_one(
        self,
        lead: Mapping[str, Any],
        touches: Sequence[Mapping[str, Any]] = (),
        sales_events: Sequence[Mapping[str, Any]] = (),
        as_of: Any = None,
    ) -> np.ndarray:
        """Features of one lead from its own history, as sent to the API (one row)."""
        as_of_ms = timestamp_ms(as_of if as_of is not None else pd.Timestamp.now(tz="UTC"))
        categorical = {}
        for name in self.lead_categoricals_:
            value = lead.get(name)
            if value is None or (isinstance(value, float) and np.isnan(value)):
                categorical[name] = np.array([np.nan])
                continue
            text = str(value).strip()
            text = text.lower() if self._lowercase("leads", name) else text
            vocabulary = self.vocabulary_index_[name]
            categorical[name] = np.array(
                [np.nan if text == "" else float(vocabulary.get(text, len(vocabulary)))]
            )
        numeric = {}
        for name in self.numerics_:
            value = lead.get(name)
            numeric[name] = np.array([np.nan if value is None else float(value)])
        lead_arrays = LeadArrays(
            created_ms=np.array([timestamp_ms(lead["created_at"])], dtype=np.int64),
            campaign=np.array([self.campaign_ids_.get(lead.get("campaign_id") or "", -1)]),
            account=np.array([self.account_ids_.get(lead.get("account_id") or "", -1)]),
            categorical=categorical,
            numeric=numeric,
        )
        touch_arrays = self._one_lead_events(
            touches, "touch_type", self.touch_types_ if self.has_touches_ else ()
        )
        sales_arrays = self._one_lead_events(
            sales_events, "stage", SALES_STAGES if self.has_sales_ else ()
        )
        return self._kernel(
            lead_arrays,
            touch_arrays,
            sales_arrays,
            np.zeros(1, np.int64),
            np.array([as_of_ms], dtype=np.int64),
        )[0]

    def _one_lead_events(
        self, events: Sequence[Mapping[str, Any]], kind_field: str, vocabulary: Sequence[str]
    ) -> EventArrays:
        if not events or not vocabulary:
            return _empty_events()
        index = self.kind_index_[kind_field]
        unseen = len(vocabulary)
        campaigns = self.campaign_ids_
        # Python lists first, one conversion to numpy at the end: cheaper than item writes.
        kinds = [index.get(str(e[kind_field]).strip().lower(), unseen) for e in events]
        ms = [timestamp_ms(e["occurred_at"]) for e in events]
        campaign = [campaigns.get(e.get("campaign_id") or "", -1) for e in events]
        n = len(events)
        return EventArrays(
            np.zeros(n, dtype=np.int64),
            np.array(ms, dtype=np.int64),
            np.array(kinds, dtype=np.int64),
            np.array(campaign, dtype=np.int64),
        )

    # ------------------------------------------------------------- kernel
    def _kernel(
        self,
        leads: LeadArrays,
        touches: EventArrays,
        sales: EventArrays,
        query_lead: np.ndarray,
        as_of: np.ndarray,
    ) -> np.ndarray:
        columns = Columns(self.feature_positions_, len(query_lead))
        for name in self.lead_categoricals_:
            columns[name] = leads.categorical[name][query_lead]
        for name in self.numerics_:
            columns[name] = leads.numeric[name][query_lead]
        if not (self.has_touches_ or self.has_sales_ or self.has_campaigns_):
            return columns.matrix

        created = leads.created_ms[query_lead]
        columns["lead_age_days"] = (as_of - created) / DAY_MS
        history_ms = np.minimum(as_of, self.horizon_ms_)
        campaign = leads.campaign[query_lead]
        known_campaign = campaign >= 0
        campaign_index = np.maximum(campaign, 0)
        account = leads.account[query_lead]
        known_account = account >= 0
        account_index = np.maximum(account, 0)
        requests = [("campaign_leads", campaign), ("account_leads", account)]
        if self.has_sales_:
            requests += [("account_opportunities", account), ("account_wins", account)]
        history = {
            name: counts
            for (name, _), (counts, _) in zip(
                requests, self.history_.query(requests, history_ms), strict=True
            )
        }
        if self.has_campaigns_:
            columns["channel"] = np.where(
                known_campaign, self.campaign_channel_[campaign_index], np.nan
            )
            start = self.campaign_start_ms_[campaign_index]
            end = self.campaign_end_ms_[campaign_index]
            elapsed = np.clip((history_ms - start) / np.maximum(end - start, 1), 0.0, 1.0)
            spend = np.where(known_campaign, self.campaign_spend_[campaign_index] * elapsed, np.nan)
            volume = np.where(known_campaign, history["campaign_leads"], np.nan)
            running_days = np.maximum((history_ms - start) / DAY_MS, 1.0)
            columns["campaign_daily_spend"] = spend / running_days
            columns["campaign_daily_leads"] = volume / running_days
            columns["campaign_spend_per_lead"] = spend / np.maximum(volume, 1.0)

        if self.has_accounts_:
            columns["industry"] = np.where(
                known_account, self.account_industry_[account_index], np.nan
            )
            for name in ACCOUNT_NUMERICS:
                columns[f"account_{name}"] = np.where(
                    known_account, self.account_numeric_[name][account_index], np.nan
                )
        own_before = (created < history_ms).astype(np.int64)
        columns["account_earlier_leads"] = np.where(
            known_account,
            np.maximum(history["account_leads"] - own_before, 0),
            np.nan,
        )

        if self.has_touches_:
            self._touch_features(columns, touches, query_lead, as_of)
        if self.has_sales_:
            self._sales_features(
                columns,
                sales,
                query_lead,
                as_of,
                history_ms,
                history,
                known_account,
                campaign,
                known_campaign,
            )
        return columns.matrix

    def _touch_features(
        self,
        columns: Columns,
        touches: EventArrays,
        query_lead: np.ndarray,
        as_of: np.ndarray,
    ) -> None:
        n_types = len(self.touch_types_) + 1
        windows = list(self.windows_days)
        half_lives = self._half_lives()
        trend = self.trend_days
        bounds = sorted(set(windows) | {trend, 2 * trend})
        counts, last_ms, decayed = decayed_window_counts(
            self.origin_ms_,
            touches.lead,
            touches.kind,
            touches.ms,
            n_types,
            query_lead,
            as_of,
            [days * DAY_MS for days in bounds],
            [days * DAY_MS for days in half_lives],
        )
        # The touch features are laid out type by type ([windows…, all, days_since,
        # decayed…] each), so the whole family is written as one block.
        n_windows = len(windows)
        block = np.empty((len(query_lead), n_types, n_windows + 2 + len(half_lives)))
        block[:, :, :n_windows] = counts[:, :, [bounds.index(days) for days in windows]]
        block[:, :, n_windows] = counts[:, :, -1]
        block[:, :, n_windows + 1] = days_since(as_of[:, None], last_ms)
        block[:, :, n_windows + 2 :] = decayed
        columns.put_block(
            f"{self.touch_types_[0]}_{windows[0]}d", block.reshape(len(query_lead), -1)
        )
        # Engagement: every touch type but the disengaging ones (and the bucket of rare types,
        # which may be anything).
        engaging = [k for k, t in enumerate(self.touch_types_) if t not in DISENGAGING_TOUCHES]
        recent = counts[:, engaging, bounds.index(trend)].sum(axis=1)
        before = counts[:, engaging, bounds.index(2 * trend)].sum(axis=1) - recent
        columns["touches_trend"] = (recent - before).astype(np.float64)
        if "touches_days_since_last" in self.feature_positions_:  # engines fitted before: none
            engaged = last_ms[:, engaging]
            latest = np.max(np.where(np.isnan(engaged), -np.inf, engaged), axis=1, initial=-np.inf)
            columns["touches_days_since_last"] = days_since(
                as_of, np.where(np.isinf(latest), np.nan, latest)
            )

        # Distinct campaigns: count each (lead, campaign) pair at its first touch.
        firsts = Timeline(self.origin_ms_, *_first_touches(touches))
        columns["distinct_campaigns"] = firsts.count_before(query_lead, as_of).astype(np.float64)

    def _sales_features(
        self,
        columns: Columns,
        sales: EventArrays,
        query_lead: np.ndarray,
        as_of: np.ndarray,
        history_ms: np.ndarray,
        history: Mapping[str, np.ndarray],
        known_account: np.ndarray,
        campaign: np.ndarray,
        known_campaign: np.ndarray,
    ) -> None:
        n_stages = len(SALES_STAGES) + 1
        # One pass: all-time counts per stage, the time of each stage's last event, and the
        # events in [history cut, as_of) to recover the lead's own events before the cut.
        counts, last_ms = window_counts(
            self.origin_ms_,
            sales.lead,
            sales.kind,
            sales.ms,
            n_stages,
            query_lead,
            as_of,
            [as_of - history_ms],
        )
        columns.put_block(f"sales_{SALES_STAGES[0]}_count", counts[:, : len(SALES_STAGES), -1])
        columns["sales_recycled"] = (counts[:, SALES_STAGES.index("assigned"), -1] > 1).astype(
            np.float64
        )
        any_last = counts[:, :, -1].sum(axis=1) > 0
        latest = np.max(np.where(np.isnan(last_ms), -np.inf, last_ms), axis=1)
        columns["sales_days_since_last"] = days_since(as_of, np.where(any_last, latest, np.nan))

        # The lead's own events before the frozen history cut are inside the account timeline.
        own = counts[:, :, -1] - counts[:, :, 0]
        for name, stage in (("account_opportunities", "opportunity"), ("account_wins", "won")):
            total = history[name]
            own_count = own[:, SALES_STAGES.index(stage)]
            columns[name] = np.where(known_account, np.maximum(total - own_count, 0), np.nan)

        channel = columns.get("channel")
        known_channel = ~np.isnan(channel)
        channel_code = np.where(known_channel, channel, 0).astype(np.int64)
        zeros = np.zeros(len(query_lead), dtype=np.int64)
        m = self.rate_smoothing
        requests = []
        for target in self.targets_:
            requests += [
                (f"{target}:global", zeros),
                (f"{target}:campaign", campaign),
                (f"{target}:channel", channel_code),
            ]
        answers = iter(self.outcomes_.query(requests, history_ms))
        for target in self.targets_:
            n_global, positives_global = next(answers)
            global_rate = np.where(n_global > 0, positives_global / np.maximum(n_global, 1), np.nan)
            for level, known in (("campaign", known_campaign), ("channel", known_channel)):
                n_level, positives_level = next(answers)
                n = np.where(known, n_level, 0)
                positives = np.where(known, positives_level, 0.0)
                rate = (
                    (positives + m * global_rate) / (n + m)
                    if m > 0
                    else np.where(n > 0, positives / np.maximum(n, 1), global_rate)
                )
                # Relative to the global rate at the time: the base rate drifts as history
                # accumulates, the campaign's edge over it is what carries over.
                with np.errstate(divide="ignore", invalid="ignore"):
                    columns[f"{level}_{target}_lift"] = np.where(
                        global_rate > 0, rate / global_rate, np.nan
                    )

    # ----------------------------------------------------------- outputs
    def feature_frame(self, matrix: np.ndarray) -> pd.DataFrame:
        """Named columns; categorical codes become pandas categoricals with their vocabulary."""
        frame = pd.DataFrame(matrix, columns=self.feature_names_)
        for name in self.categorical_features_:
            categories = [*self.vocabulary(name), OTHER]
            codes = frame[name].to_numpy()
            frame[name] = pd.Categorical.from_codes(
                np.where(np.isnan(codes), -1, codes).astype(np.int64), categories=categories
            )
        return frame

    def _float_column(self, name: str, values: pd.Series) -> np.ndarray:
        if name in self.categorical_features_:
            codes = values.cat.codes.to_numpy().astype(np.float64)
            codes[codes < 0] = np.nan
            return codes
        return values.to_numpy(dtype=np.float64)

    def matrix_from_frame(self, frame: pd.DataFrame) -> np.ndarray:
        """Inverse of :meth:`feature_frame`: the model's float matrix from stored features."""
        columns = [self._float_column(name, frame[name]) for name in self.feature_names_]
        return np.column_stack(columns) if columns else np.zeros((len(frame), 0))

    def read_matrix(
        self, path: Path | str, keep: Sequence[str] = ()
    ) -> tuple[pd.DataFrame, np.ndarray]:
        """The stored snapshots at ``path`` without their feature columns (but ``keep``) and
        their :meth:`matrix_from_frame`, read a feature column at a time into the matrix: the
        features are in memory once, never also as a frame (the train and evaluate stages'
        peak at a million leads). The caller checks the file has every feature."""
        import pyarrow.parquet as pq  # here: serving loads the engine and never reads files

        dropped = set(self.feature_names_) - set(keep)
        names = pq.read_schema(path).names
        head = pd.read_parquet(path, columns=[c for c in names if c not in dropped])
        matrix = np.empty((len(head), len(self.feature_names_)), dtype=np.float64)
        for j, name in enumerate(self.feature_names_):
            matrix[:, j] = self._float_column(name, pd.read_parquet(path, columns=[name])[name])
        return head, matrix

    def drop_features(self, frame: pd.DataFrame, keep: Sequence[str] = ()) -> pd.DataFrame:
        """``frame`` without its feature columns (but ``keep``): what a stage still reads once
        it holds the matrix, so the features are not in memory twice."""
        dropped = set(self.feature_names_) - set(keep)
        return frame[[c for c in frame.columns if c not in dropped]]

    def vocabulary(self, name: str) -> tuple[str, ...]:
        return self.vocabularies_[name]

    def feature_spec(self) -> list[dict[str, str]]:
        return [
            {
                "name": f.name,
                "family": f.family,
                "type": f.kind,
                "business_field": f.business_field,
                "description": f.description,
            }
            for f in self.features_
        ]
