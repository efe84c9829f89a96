"""The feature table: validated tables → point-in-time snapshots (one per lead and age while
the lead is open, or one per row of a flat export), their split and labels, and the features of
each snapshot from the fitted :class:`FeatureEngine`, partition by partition (all of a lead's
history in one partition, the fitted engine shared by all)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from features import contract
from features.engine.engine import FeatureEngine
from features.engine.snapshots import assign_split, build_flat_snapshots, build_snapshots
from features.errors import UserError
from features.params import Params


def make_engine(params: Params, manifest: dict[str, Any] | None) -> FeatureEngine:
    settings = params.features
    return FeatureEngine(
        windows_days=settings.windows_days,
        trend_days=settings.trend_days,
        half_lives_days=settings.half_lives_days,
        cooled_days=settings.cooled_days,
        rate_smoothing=settings.rate_smoothing,
        min_category_count=settings.min_category_count,
        window_days=params.quality_lead.window_days,
        targets={name: target.stages for name, target in params.targets.items()},
        extra_categorical=tuple(manifest["categorical"]) if manifest else (),
        extra_numeric=tuple(manifest["numeric"]) if manifest else (),
        currency=params.data.currency,
        labels=dict(manifest.get("labels") or {}) if manifest else None,
    )


Transform = Callable[
    [FeatureEngine, pd.DataFrame, pd.DataFrame, pd.DataFrame | None, pd.DataFrame | None],
    np.ndarray,
]
"""(fitted engine, snapshots, leads, touches, sales events) → feature matrix, rows in the
snapshots' order: ``FeatureEngine.transform`` or a backend's (:mod:`features.distributed`)."""


def _own_transform(engine: FeatureEngine, *tables: pd.DataFrame | None) -> np.ndarray:
    return engine.transform(*tables)  # type: ignore[arg-type]


@dataclass(frozen=True)
class RemoteTouches:
    """What the fit needs of a touches table that stays on the cluster's workers (a
    partitioned dataset under ``engine.kind: dask``): its latest time and its types' counts.
    The transform then reads each partition's touches where it runs."""

    latest: pd.Timestamp | None
    type_counts: pd.Series


def build_feature_table(
    tables: dict[str, pd.DataFrame],
    params: Params,
    manifest: dict[str, Any] | None,
    transform: Transform | None = None,
    remote_touches: RemoteTouches | None = None,
) -> tuple[FeatureEngine, pd.DataFrame]:
    """Snapshots with split, labels and features, and the fitted engine.

    The engine is fitted once, here, on the whole dataset (its vocabularies and time-indexed
    history need every lead); ``transform`` (default: the engine's own, in this process)
    computes each partition's features, e.g. on a Dask cluster. With ``remote_touches`` the
    touches are not in ``tables`` and ``transform`` reads them itself, all snapshots in one
    call (its tasks read whole partitions)."""
    leads = tables["leads"]
    horizon = contract.data_horizon(tables, params.data.horizon)
    fixed = params.data.horizon is not None
    if remote_touches is not None and remote_touches.latest is not None and not fixed:
        horizon = max(horizon, contract.utc(remote_touches.latest))
    primary = f"label_{params.quality_lead.target}"
    if manifest is not None:
        snapshots = build_flat_snapshots(leads, list(params.targets))
        random = manifest.get("order") == "random"
    else:
        snapshots = build_snapshots(
            leads,
            tables.get("sales_events", pd.DataFrame(columns=["lead_id", "occurred_at", "stage"])),
            params.snapshots.offsets_days,
            horizon,
            params.quality_lead.window_days,
            {name: target.stages for name, target in params.targets.items()},
        )
        random = False
    if primary not in snapshots:
        raise UserError(f"no outcome for the primary target {params.quality_lead.target!r}")
    snapshots.insert(2, "split", assign_split(snapshots, params.split, primary, random=random))
    engine = make_engine(params, manifest).fit(
        tables, horizon, remote_touches.type_counts if remote_touches is not None else None
    )

    size = params.features.partition_leads if remote_touches is None else max(len(leads), 1)
    ids = leads["lead_id"]
    chunks = [
        (start, np.flatnonzero(snapshots["lead_id"].isin(ids.iloc[start : start + size])))
        for start in range(0, len(leads), size)
    ]
    # The table's order (by as_of, then lead; ties in partition order) is known before any
    # feature is computed, so each partition's rows go straight to their place in one matrix:
    # the features are held once, not once per partition, again concatenated and again sorted.
    taken = np.concatenate([rows for _, rows in chunks]) if chunks else np.zeros(0, np.int64)
    keys = snapshots[["as_of", "lead_id"]].iloc[taken].reset_index(drop=True)
    order = taken[keys.sort_values(["as_of", "lead_id"], kind="stable").index.to_numpy()]
    place = np.empty(len(snapshots), dtype=np.int64)
    place[order] = np.arange(len(order))
    matrix = np.empty((len(order), len(engine.feature_names_)), dtype=np.float64)
    for start, rows in tqdm(chunks, desc="features", unit="partition", disable=None):
        part_ids = ids.iloc[start : start + size]
        history = {
            name: tables[name][tables[name]["lead_id"].isin(part_ids)]
            for name in contract.EVENT_TABLES
            if name in tables
        }
        matrix[place[rows]] = (transform or _own_transform)(
            engine,
            snapshots.iloc[rows],
            leads.iloc[start : start + size],
            history.get("touches"),
            history.get("sales_events"),
        )
    head = snapshots.iloc[order].reset_index(drop=True)
    features = engine.feature_frame(matrix)
    del matrix
    return engine, pd.concat([head, features], axis=1)
