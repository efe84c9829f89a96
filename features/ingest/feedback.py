"""Sales' verdicts (the score store's ``feedback`` table) as canonical ``sales_events`` rows,
and their merge into the CRM's own sales events at ingest, so that the next training learns
from what sales decided in leadscore as well as in the CRM.

Only ``accepted`` and ``rejected`` become sales events (stages of the contract); ``contacted``
is not a stage and stays in the store, shown on the lead's timeline. A verdict on a lead the
CRM data does not have, or one the CRM already holds (same lead, stage and time), is left out
and counted.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features import contract
from features.storage import write_parquet

logger = logging.getLogger(__name__)

FEEDBACK_FILE = "sales_events.parquet"
STAGES = ("accepted", "rejected")


def as_sales_events(feedback: pd.DataFrame) -> pd.DataFrame:
    """Verdicts → ``sales_events`` rows (owner: who gave it; reason: the verdict's reason)."""
    kept = feedback[feedback["verdict"].isin(STAGES)]
    events = pd.DataFrame(
        {
            "lead_id": kept["lead_id"].astype(str),
            "occurred_at": pd.to_datetime(kept["occurred_at"], utc=True).astype(
                "datetime64[us, UTC]"
            ),
            "stage": kept["verdict"].astype(str),
            "owner_id": kept["actor"].astype("object"),
            "reason": kept["reason"].astype("object"),
            "amount": pd.Series(np.nan, index=kept.index, dtype="float64"),
        }
    )
    return events.sort_values(["lead_id", "occurred_at"], kind="stable").reset_index(drop=True)


def write_feedback_events(feedback: pd.DataFrame, directory: Path) -> int:
    """Write the verdicts as ``directory/sales_events.parquet`` (atomically); returns rows."""
    events = as_sales_events(feedback)
    Path(directory).mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(events, schema=contract.SALES_EVENTS.arrow_schema())
    write_parquet(Path(directory) / FEEDBACK_FILE, table)
    return len(events)


def merge_feedback(tables_dir: Path, feedback_dir: Path | None) -> int:
    """Add the exported verdicts in ``feedback_dir`` to ``tables_dir/sales_events.parquet``
    (ingest's staging directory); returns how many were added."""
    source = Path(feedback_dir) / FEEDBACK_FILE if feedback_dir is not None else None
    if source is None or not source.exists():
        return 0
    events = pd.read_parquet(source)
    leads_file = Path(tables_dir) / "leads.parquet"
    if not len(events) or not leads_file.exists():
        return 0
    known = set(pd.read_parquet(leads_file, columns=["lead_id"])["lead_id"].astype(str))
    target = Path(tables_dir) / "sales_events.parquet"
    crm = pq.read_table(target) if target.exists() else None
    held: set[tuple[str, str, pd.Timestamp]] = set()
    if crm is not None:
        frame = crm.select(["lead_id", "stage", "occurred_at"]).to_pandas()
        held = set(
            zip(
                frame["lead_id"].astype(str),
                frame["stage"].astype(str),
                pd.to_datetime(frame["occurred_at"], utc=True),
                strict=True,
            )
        )
    ids = events["lead_id"].astype(str)
    keys = zip(
        ids,
        events["stage"].astype(str),
        pd.to_datetime(events["occurred_at"], utc=True),
        strict=True,
    )
    duplicate = np.array([key in held for key in keys], dtype=bool)
    unknown = ~ids.isin(known).to_numpy()
    added = events[~unknown & ~duplicate]
    if unknown.any() or duplicate.any():
        logger.warning(
            "feedback: %d verdicts on leads the data does not have and %d the CRM already holds "
            "were left out",
            int(unknown.sum()),
            int(duplicate.sum()),
        )
    schema = crm.schema if crm is not None else contract.SALES_EVENTS.arrow_schema()
    new = pa.Table.from_pandas(added.reset_index(drop=True), schema=schema, preserve_index=False)
    write_parquet(target, pa.concat_tables([crm, new]) if crm is not None else new)
    logger.info("feedback: %d of sales' verdicts added to the sales events", len(added))
    return len(added)
