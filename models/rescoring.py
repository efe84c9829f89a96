"""Scores of many leads at once into the score store (the queue stage, ``leadscore rescore``),
and the CRM-ready export of a rescoring: one row per lead with what sales sees in the CRM.

The export's columns (``CRM_COLUMNS``) are plain text and numbers, one header row, UTF-8, comma
separated: what Salesforce's Data Import Wizard / Data Loader and HubSpot's import take, each
column mapped once to a custom field (the README lists the suggested field names)."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy.exc import SQLAlchemyError

from features import contract
from features.params import StoreParams
from models.segments import POOLED
from models.store import ScoreRecord, Source, Store, StoreError, open_store
from models.store.history import Standing

logger = logging.getLogger(__name__)

CHUNK = 5000
"""Scores per write transaction."""
CRM_COLUMNS = (
    "lead_id",
    "score",
    "grade",
    "handoff",
    "fit_score",
    "engagement_score",
    "grid",
    "priority",
    "segment",
    "expected_conversion_date",
    "expected_value",
    "trend",
    "reasons",
    "model_version",
    "scored_at",
)
REASONS_SHOWN = 3


def _texts(value: object) -> tuple[str, ...]:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ()
    return tuple(str(v) for v in list(value))  # type: ignore[call-overload]


def _utc_datetime(value: object) -> dt.datetime:
    """:func:`features.contract.utc` as a ``datetime``, without pandas for the ISO texts and
    datetimes of the API's answers (the hot path: about 40 µs less per answer)."""
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    elif isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            return contract.utc(value).to_pydatetime()
    if not isinstance(value, dt.datetime):
        return contract.utc(value).to_pydatetime()
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def score_record(
    row: Mapping[str, Any],
    targets: Sequence[str],
    primary: str,
    model: Mapping[str, str],
    source: Source,
    scored_at: dt.datetime,
    reasons: tuple[tuple[str, ...], tuple[str, ...]] = ((), ()),
) -> ScoreRecord:
    """One score as the store keeps it, from a row in the answers' layout (``lead_id``,
    ``as_of``, ``p_<target>``, ``score``, ``grade``, ``handoff``): an API answer, a queue row or
    a row of ``leadscore score``'s output. ``reasons``: the positive and negative texts."""
    probabilities = {t: float(row[f"p_{t}"]) for t in targets}
    handoff = row["handoff"]
    return ScoreRecord(
        lead_id=str(row["lead_id"]),
        as_of=_utc_datetime(row["as_of"]),
        scored_at=scored_at,
        model_name=str(model["name"]),
        model_version=str(model["version"]),
        probabilities=probabilities,
        probability=probabilities[primary],
        score=int(row["score"]),
        grade=row["grade"],
        # a CSV output read back holds "True"/"False"
        handoff=handoff.lower() in ("true", "1") if isinstance(handoff, str) else bool(handoff),
        source=source,
        positive_reasons=reasons[0],
        negative_reasons=reasons[1],
    )


def queue_records(
    queue: pd.DataFrame, primary: str, source: Source, scored_at: dt.datetime
) -> Iterator[ScoreRecord]:
    """The rows of a queue table (:func:`models.queue.sales_queue`) as score records."""
    targets = [
        c[2:]
        for c in queue.columns
        if str(c).startswith("p_") and not str(c).startswith("p_converted_by_")  # timing curve
    ]
    for row in queue.to_dict("records"):
        model = {"name": row["model_name"], "version": row["model_version"]}
        texts = (_texts(row.get("reasons_positive")), _texts(row.get("reasons_negative")))
        yield score_record(row, targets, primary, model, source, scored_at, texts)


def write_records(store: Store, records: Iterable[ScoreRecord]) -> int:
    """Write ``records`` into ``store`` (transactions of :data:`CHUNK`); returns how many."""
    written = 0
    batch: list[ScoreRecord] = []
    for record in records:
        batch.append(record)
        if len(batch) == CHUNK:
            written += store.record(batch)
            batch = []
    if batch:
        written += store.record(batch)
    return written


def record_or_warn(
    records: Iterable[ScoreRecord], project_dir: Path, params: StoreParams | None, what: str
) -> int:
    """Write ``records`` (built only if the store is on) into the store of
    ``LEADSCORE_STORE_URL``, for a command whose own output already stands: a store that is
    off, cannot be opened or fails mid-way is one warning line naming ``what``, never an
    error. Returns how many were written."""
    try:
        store = open_store(project_dir, params)
    except StoreError as error:
        logger.warning("%s: scores not recorded: %s", what, error)
        return 0
    written = 0
    try:
        if store.enabled:
            written = write_records(store, records)
            logger.info("%s: %d scores recorded in %s", what, written, store.description)
    except SQLAlchemyError as error:
        logger.warning(
            "%s: %d scores recorded, the rest not (%s: %s)",
            what,
            written,
            store.description,
            type(error).__name__,
        )
    finally:
        store.close()
    return written


def changed(queue: pd.DataFrame, found: Mapping[str, Standing]) -> np.ndarray:
    """Leads whose score or grade differs from their previous stored one (or never scored)."""
    out = np.ones(len(queue), dtype=bool)
    for i, (lead, score, grade) in enumerate(
        zip(queue["lead_id"].astype(str), queue["score"], queue["grade"], strict=True)
    ):
        previous = found[lead].previous if lead in found else None
        if previous is not None and previous.score == int(score) and previous.grade == grade:
            out[i] = False
    return out


def crm_export(
    queue: pd.DataFrame, found: Mapping[str, Standing], scored_at: dt.datetime
) -> pd.DataFrame:
    """One CRM row per lead of ``queue``: score, grade, handoff, fit and engagement scores,
    grid cell, priority among the open leads, the segment whose model scored it, the expected
    conversion date and value, trend, the top reasons as one text, the model version and when
    it was scored; then ``p_converted_by_<d>d`` per timing horizon the queue carries."""
    ids = queue["lead_id"].astype(str)
    reasons = [
        "; ".join(_texts(value)[:REASONS_SHOWN]) for value in queue.get("reasons_positive", [])
    ]
    horizons = [c for c in queue.columns if str(c).startswith("p_converted_by_")]
    kinds = {"fit_score": "Int64", "engagement_score": "Int64", "priority": "Int64"}
    kinds |= {"expected_value": "Float64", **dict.fromkeys(horizons, "Float64")}
    return pd.DataFrame(
        {
            "lead_id": ids.to_numpy(),
            "score": queue["score"].astype(int).to_numpy(),
            "grade": queue["grade"].astype(str).to_numpy(),
            "handoff": queue["handoff"].astype(bool).to_numpy(),
            **{
                name: _nullable(queue, name, kinds.get(name, "object"))
                for name in ("fit_score", "engagement_score", "grid", "priority")
            },
            "segment": _nullable(queue, "segment", "object").fillna(POOLED),
            **{
                name: _nullable(queue, name, kinds.get(name, "object"))
                for name in ("expected_conversion_date", "expected_value", *horizons)
            },
            "trend": [found[i].trend if i in found else "not enough history" for i in ids],
            "reasons": reasons if reasons else [""] * len(queue),
            "model_version": queue["model_version"].astype(str).to_numpy(),
            "scored_at": scored_at.isoformat(),
        },
        columns=[*CRM_COLUMNS, *horizons],
    )


def _nullable(queue: pd.DataFrame, column: str, dtype: str) -> pd.Series:
    """A queue column that queues written before it existed lack (then all null)."""
    if column in queue:
        return queue[column].astype(dtype).reset_index(drop=True)
    return pd.Series([None] * len(queue), dtype=dtype)


def output_records(
    rows: pd.DataFrame,
    targets: tuple[str, ...],
    primary: str,
    model: Mapping[str, str],
    source: Source,
    scored_at: dt.datetime,
    reasons: int,
) -> Iterator[ScoreRecord]:
    """The rows of a ``leadscore score`` output (``reason_1…``, ``reason_negative_1…`` beside
    the answers' columns) as records."""
    positive = [f"reason_{k}" for k in range(1, reasons + 1)]
    negative = [f"reason_negative_{k}" for k in range(1, reasons + 1)]
    for row in rows.to_dict("records"):
        texts = (_filled(row, positive), _filled(row, negative))
        yield score_record(row, targets, primary, model, source, scored_at, texts)


def _filled(row: Mapping[str, Any], columns: Sequence[str]) -> tuple[str, ...]:
    """The non-empty texts of ``columns`` (a lead with fewer reasons leaves the rest empty)."""
    return tuple(str(row[c]) for c in columns if isinstance(row.get(c), str) and row[c])
