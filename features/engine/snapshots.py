"""Snapshots, labels and the time-ordered split.

A snapshot is (lead, as_of), one per offset in ``snapshots.offsets_days`` while the lead is
still open (its latest sales event before as_of is not won, lost or rejected) and as_of is not
after the horizon. Labels come from sales events in (as_of, as_of + window]; a snapshot whose
window ends after the horizon is censored: kept, scored, never trained on (label null).
Times are compared in integer milliseconds, like the feature engine.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from features import contract
from features.engine.timelines import DAY_MS, Timeline, timestamp_ms, timestamps_ms, window_hits
from features.params import SplitParams

SPLITS = ("train", "valid", "calibration", "test")


def build_snapshots(
    leads: pd.DataFrame,
    sales_events: pd.DataFrame,
    offsets_days: Sequence[int],
    horizon: pd.Timestamp,
    window_days: int,
    targets: Mapping[str, Sequence[str]],
) -> pd.DataFrame:
    """Snapshots with ``lead_id``, ``as_of`` and ``label_<target>`` (NaN when censored)."""
    created = timestamps_ms(leads["created_at"])
    origin = int(created.min()) - DAY_MS if len(created) else 0
    horizon_ms = timestamp_ms(horizon)
    n_leads = len(leads)
    lead_code = np.repeat(np.arange(n_leads), len(offsets_days))
    as_of = np.repeat(created, len(offsets_days)) + np.tile(
        np.asarray(offsets_days, dtype=np.int64) * DAY_MS, n_leads
    )
    keep = as_of <= horizon_ms

    lead_index = pd.Index(leads["lead_id"])
    sales_lead = np.asarray(lead_index.get_indexer(sales_events["lead_id"]), dtype=np.int64)
    sales_ms = timestamps_ms(sales_events["occurred_at"])
    stage = sales_events["stage"].to_numpy()
    known = sales_lead >= 0
    sales_lead, sales_ms, stage = sales_lead[known], sales_ms[known], stage[known]

    # Open at as_of: the lead's latest sales event strictly before as_of is not a closing one.
    timeline = Timeline(origin, sales_lead, sales_ms)
    before = timeline.count_before(lead_code, as_of)
    last = timeline.positions(lead_code, as_of) - 1
    last_stage = stage[timeline.order[np.maximum(last, 0)]] if len(stage) else np.array([])
    closed = (
        (before > 0) & np.isin(last_stage, contract.CLOSED_STAGES)
        if len(stage)
        else (np.zeros(len(as_of), dtype=bool))
    )
    keep &= ~closed
    lead_code, as_of = lead_code[keep], as_of[keep]

    frame = pd.DataFrame(
        {
            "lead_id": leads["lead_id"].to_numpy()[lead_code],
            "as_of": pd.to_datetime(as_of, unit="ms", utc=True),
        }
    )
    window_ms = window_days * DAY_MS
    censored = as_of + window_ms > horizon_ms
    for target, stages in targets.items():
        hits = np.isin(stage, stages)
        label = window_hits(
            origin, sales_lead[hits], sales_ms[hits], lead_code, as_of, window_ms
        ).astype(np.float64)
        label[censored] = np.nan
        frame[f"label_{target}"] = label
    return frame


def build_flat_snapshots(leads: pd.DataFrame, targets: Sequence[str]) -> pd.DataFrame:
    """Flat exports: one snapshot per row at its creation time, labels from the export."""
    frame = pd.DataFrame(
        {
            "lead_id": leads["lead_id"].to_numpy(),
            "as_of": pd.to_datetime(leads["created_at"], utc=True).to_numpy(),
        }
    )
    for target in targets:
        column = f"outcome_{target}"
        if column in leads:
            frame[f"label_{target}"] = leads[column].astype("float64").to_numpy()
    return frame


def assign_split(
    snapshots: pd.DataFrame, shares: SplitParams, primary_label: str, random: bool = False
) -> pd.Series:
    """Time-ordered split by as_of (cut points from labelled snapshots), or stratified at
    random by ``primary_label`` for data without timestamps (``random=True``)."""
    labelled = snapshots[primary_label].notna().to_numpy()
    cumulative = np.cumsum([shares.train, shares.valid, shares.calibration])
    if random:
        rng = np.random.default_rng(shares.seed)
        position = np.empty(len(snapshots))
        label = snapshots[primary_label].fillna(-1).to_numpy()
        for value in np.unique(label):
            rows = np.flatnonzero(label == value)
            position[rows] = (rng.permutation(len(rows)) + 0.5) / len(rows)
        index = np.searchsorted(cumulative, position, side="right")
        return pd.Series(np.asarray(SPLITS)[index], index=snapshots.index, name="split")
    as_of = timestamps_ms(snapshots["as_of"])
    reference = np.sort(as_of[labelled]) if labelled.any() else np.sort(as_of)
    cuts = reference[np.minimum((cumulative * len(reference)).astype(np.int64), len(reference) - 1)]
    index = np.searchsorted(cuts, as_of, side="right")
    return pd.Series(np.asarray(SPLITS)[index], index=snapshots.index, name="split")


def labelled(snapshots: pd.DataFrame, target: str, split: str | None = None) -> np.ndarray:
    """Boolean mask of the snapshots with a label for ``target`` (censored ones have none),
    within ``split`` when given: the rows a model is trained, calibrated or judged on."""
    mask = snapshots[f"label_{target}"].notna()
    if split is not None:
        mask &= snapshots["split"] == split
    return mask.to_numpy(dtype=bool)
