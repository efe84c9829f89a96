"""Cross-table rules: foreign keys (and rows following their quarantined parent), not before
the lead's creation, no event after the lead's won/lost; computed as derived columns that
the table's Great Expectations suite validates.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features import contract
from features.validation.coercion import ValidatedTable, arrow, mask_positions
from features.validation.rules import (
    AFTER_CLOSE,
    RowFailures,
    rule_before_lead_created,
    rule_parent_quarantined,
    rule_unknown_reference,
)
from features.validation.suites import Derived, SuiteSettings


def _micros(series: pd.Series) -> np.ndarray:
    """``datetime64[us, UTC]`` → int64 microseconds (NaT → int64 min)."""
    return np.asarray(series.array.asi8, dtype=np.int64)


_NAT = np.iinfo(np.int64).min


def _stamp_micros(stamp: pd.Timestamp) -> int:
    """Microseconds since the epoch (``Timestamp.value`` is nanoseconds whatever the unit)."""
    return int(stamp.value // 1000)


def positions_in(values: pd.Series, keys: pd.Series) -> np.ndarray:
    """Position in ``keys`` of each value (first occurrence), -1 where absent or null."""
    if not len(values):
        return np.empty(0, dtype=np.int64)
    found = pc.index_in(arrow(values), value_set=pa.array(arrow(keys)))
    return np.asarray(found.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64)


def _seconds(later: np.ndarray, earlier: np.ndarray) -> np.ndarray:
    both = (later != _NAT) & (earlier != _NAT)
    out = np.full(len(later), np.nan)
    out[both] = (later[both] - earlier[both]) / 1e6
    return out


def _gather(values: np.ndarray, positions: np.ndarray, usable: np.ndarray) -> np.ndarray:
    """``values[positions]`` where ``usable``, NaT elsewhere."""
    out = np.full(len(positions), _NAT, dtype=np.int64)
    out[usable] = values[positions[usable]]
    return out


def close_times(tables: dict[str, ValidatedTable], settings: SuiteSettings) -> np.ndarray | None:
    """Per lead (position in the leads file): its first won/lost time (µs; NaT when it never
    closed) among the sales events that pass the reference and time rules; None without sales
    events. Needs the leads validated (quarantined leads close nothing)."""
    if "sales_events" not in tables:
        return None
    leads, events = tables["leads"], tables["sales_events"].typed
    lead_pos = positions_in(events["lead_id"], leads.typed["lead_id"])
    created = _micros(leads.typed["created_at"])
    times = _micros(events["occurred_at"])
    ok = lead_pos >= 0
    ok[ok] = ~leads.quarantined[lead_pos[ok]]
    ok &= (times != _NAT) & events["stage"].isin(contract.CLOSING_STAGES).to_numpy(bool)
    tolerance = round(settings.tolerance_seconds * 1e6)
    ok[ok] &= times[ok] >= created[lead_pos[ok]] - tolerance
    ok &= times <= _stamp_micros(settings.horizon if settings.horizon is not None else settings.now)
    never = np.iinfo(np.int64).max
    close = np.full(len(leads.typed), never, dtype=np.int64)
    np.minimum.at(close, lead_pos[ok], times[ok])
    close[close == never] = _NAT
    return close


def cross_table(
    item: ValidatedTable,
    tables: dict[str, ValidatedTable],
    settings: SuiteSettings,
    close: np.ndarray | None = None,
) -> tuple[list[Derived], RowFailures]:
    """Derived columns (validated by GE) and cascade failures of ``item``'s references."""
    derived: list[Derived] = []
    cascade: RowFailures = {}
    frame = item.typed
    lead_pos: np.ndarray | None = None
    for column in item.spec.columns:
        parent_name = column.referenced_table
        if parent_name is None or parent_name not in tables:
            continue
        parent = tables[parent_name]
        key = column.references.split(".")[1]  # type: ignore[union-attr]
        positions = positions_in(frame[column.name], parent.typed[key])
        present = frame[column.name].notna().to_numpy(bool)
        known = pd.array(positions >= 0, dtype="boolean")
        known[~present] = pd.NA
        derived.append(
            Derived(
                f"__{column.name}_in_{parent_name}",
                known,
                rule_unknown_reference(column.name, parent_name),
                value_set=(True,),
            )
        )
        orphaned = positions >= 0
        orphaned[orphaned] = parent.quarantined[positions[orphaned]]
        if orphaned.any():
            cascade[rule_parent_quarantined(parent_name)] = mask_positions(orphaned)
        if parent_name == "leads":
            lead_pos = np.where(orphaned, -1, positions)
    if lead_pos is None:
        return derived, cascade
    leads = tables["leads"]
    usable = lead_pos >= 0
    for column in item.spec.columns:
        if column.not_before_lead_created:
            created = _gather(_micros(leads.typed["created_at"]), lead_pos, usable)
            derived.append(
                Derived(
                    f"__{column.name}_seconds_after_lead_created",
                    _seconds(_micros(frame[column.name]), created),
                    rule_before_lead_created(column.name),
                    min_value=-settings.tolerance_seconds or 0.0,
                )
            )
    time_column = item.spec.time_column
    if item.spec.name in contract.EVENT_TABLES and time_column is not None and close is not None:
        derived.append(
            Derived(
                f"__{time_column}_seconds_after_lead_closed",
                _seconds(_micros(frame[time_column]), _gather(close, lead_pos, usable)),
                AFTER_CLOSE.replace("occurred_at", time_column),
                max_value=0.0,
            )
        )
    return derived, cascade
