"""Realistic defects for ``leadscore generate --dirty``.

Real CRM exports carry duplicates, orphans, clock skew, typos in vocabularies and missing
values. These are injected into clean simulator output at a low rate (well under the
validation stage's default quarantine threshold) so validation can be exercised on data that
looks like a real export. ``defects.parquet`` lists what was injected (kind, table, key) so tests
can check that validation finds each one; no stage of the pipeline reads it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

DEFECT_KINDS: tuple[str, ...] = (
    "duplicate_id",
    "orphan_event",
    "event_before_creation",
    "event_after_horizon",
    "unknown_stage",
    "negative_spend",
    "negative_amount",
    "mixed_case_category",
    "missing_required_value",
)
RATE = 0.002


def _sample(
    rng: np.random.Generator,
    frame: pd.DataFrame,
    share: float = RATE,
    mask: pd.Series | np.ndarray | None = None,
) -> pd.Index:
    pool = frame.index if mask is None else frame.index[np.asarray(mask, dtype=bool)]
    size = max(1, round(len(frame) * share))
    return pd.Index(rng.choice(pool, size=min(size, len(pool)), replace=False))


def add_defects(out: Path, rng: np.random.Generator, horizon_ns: int) -> int:
    """Inject every defect kind into the tables in ``out``; return how many were injected."""
    tables = {
        name: pq.read_table(out / f"{name}.parquet").to_pandas()
        for name in ("campaigns", "leads", "touches", "sales_events")
    }
    leads, touches, events, campaigns = (
        tables["leads"],
        tables["touches"],
        tables["sales_events"],
        tables["campaigns"],
    )
    log: list[tuple[str, str, str]] = []

    duplicated = leads.loc[_sample(rng, leads)].copy()
    duplicated["country"] = "US"
    log += [("duplicate_id", "leads", key) for key in duplicated["lead_id"]]

    orphans = touches.loc[_sample(rng, touches)].copy()
    orphans["lead_id"] = [f"X{i:07d}" for i in range(len(orphans))]
    log += [("orphan_event", "touches", key) for key in orphans["lead_id"]]

    created = touches["lead_id"].map(leads.set_index("lead_id")["created_at"])
    early = _sample(rng, touches)
    touches.loc[early, "occurred_at"] = created.loc[early] - pd.Timedelta(days=3)
    log += [("event_before_creation", "touches", key) for key in touches.loc[early, "lead_id"]]

    horizon = pd.Timestamp(horizon_ns, tz="UTC")
    late = _sample(rng, events)
    events.loc[late, "occurred_at"] = horizon + pd.Timedelta(days=10)
    log += [("event_after_horizon", "sales_events", key) for key in events.loc[late, "lead_id"]]

    unknown = _sample(rng, events, mask=~events.index.isin(late))
    events.loc[unknown, "stage"] = "qualified"
    log += [("unknown_stage", "sales_events", key) for key in events.loc[unknown, "lead_id"]]

    negative = _sample(rng, campaigns, share=0.01)
    campaigns.loc[negative, "spend"] = -campaigns.loc[negative, "spend"] - 1.0
    log += [("negative_spend", "campaigns", key) for key in campaigns.loc[negative, "campaign_id"]]

    with_amount = events["amount"].notna() & ~events.index.isin(late.union(unknown))
    negative_amount = _sample(rng, events, share=RATE / 4, mask=with_amount)
    events.loc[negative_amount, "amount"] = -events.loc[negative_amount, "amount"]
    log += [
        ("negative_amount", "sales_events", key) for key in events.loc[negative_amount, "lead_id"]
    ]

    # Mixed case is a fixable defect: validation normalises it instead of quarantining.
    mixed = _sample(rng, touches, mask=~touches.index.isin(early))
    touches.loc[mixed, "touch_type"] = touches.loc[mixed, "touch_type"].str.title()
    mixed_leads = _sample(rng, leads)
    leads.loc[mixed_leads, "seniority"] = leads.loc[mixed_leads, "seniority"].str.upper()
    log += [("mixed_case_category", "touches", key) for key in touches.loc[mixed, "lead_id"]]

    missing = _sample(rng, leads, share=RATE / 2)
    leads["created_at"] = leads["created_at"].astype("datetime64[us, UTC]")
    leads.loc[missing, "created_at"] = pd.NaT
    log += [("missing_required_value", "leads", key) for key in leads.loc[missing, "lead_id"]]

    leads = pd.concat([leads, duplicated], ignore_index=True)
    touches = pd.concat([touches, orphans], ignore_index=True)
    for name, frame in (
        ("leads", leads),
        ("touches", touches),
        ("sales_events", events),
        ("campaigns", campaigns),
    ):
        pq.write_table(
            pa.Table.from_pandas(frame, preserve_index=False),
            out / f"{name}.parquet",
            compression="zstd",
        )
    manifest = pd.DataFrame(log, columns=["kind", "table", "key"])
    pq.write_table(pa.Table.from_pandas(manifest, preserve_index=False), out / "defects.parquet")
    return len(manifest)
