"""The API's side of the score store: every answer it gives is recorded (in the background,
by :class:`~models.store.Recorder`), and carries the lead's trend and previous score from the
stored history. The store being off, down or slow never fails or noticeably slows an answer:
the history reads degrade to no trend (``trend: null``), the writes to "not recorded" (a
metric, and one log line from the recorder)."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from features.params import TrendParams
from models.rescoring import score_record
from models.store import NullStore, Recorder, ScoreRecord, Source, Store
from models.store.history import standings_from
from models.store.store import HistoryEnds
from serving.metrics import ApiMetrics

logger = logging.getLogger(__name__)


def records_of(
    answers: Sequence[dict[str, Any]], primary: str, source: Source, scored_at: dt.datetime
) -> list[ScoreRecord]:
    """The answers as the store keeps them (reason texts, not contributions)."""
    out = []
    for answer in answers:
        # p_<target> probabilities only (p_converted_by is the timing curve, a mapping)
        targets = [
            key[2:]
            for key, value in answer.items()
            if key.startswith("p_") and isinstance(value, (int, float))
        ]
        positive = tuple(r["text"] for r in answer.get("reasons_positive", ()))
        negative = tuple(r["text"] for r in answer.get("reasons_negative", ()))
        out.append(
            score_record(
                answer, targets, primary, answer["model"], source, scored_at, (positive, negative)
            )
        )
    return out


@dataclass(frozen=True)
class Prefetch:
    """A request's moment and the read of its leads' history started at it (None: no store)."""

    now: dt.datetime
    ends: Future[dict[str, HistoryEnds]] | None


class ScoreKeeper:
    """The worker's store and recorder (opened after any fork), and the trend rule."""

    def __init__(
        self,
        store: Store | None = None,
        recorder: Recorder | None = None,
        trend: TrendParams | None = None,
        metrics: ApiMetrics | None = None,
    ) -> None:
        self.store: Store = store if store is not None else NullStore()
        self.recorder = recorder
        self.trend = trend or TrendParams()
        self.metrics = metrics
        self._lock = threading.Lock()
        self._counted = (0, 0)
        self._failing = False
        # reads the history while the scoring thread scores (SQLite and the driver release the
        # GIL): the answer waits for whichever ends last, not for both in turn
        self._readers: ThreadPoolExecutor | None = None

    def prefetch(self, lead_ids: Sequence[str]) -> Prefetch:
        """Start reading these leads' stored history now; :meth:`keep` takes it."""
        now = dt.datetime.now(dt.UTC)
        if not self.store.enabled or not lead_ids:
            return Prefetch(now, None)
        with self._lock:
            if self._readers is None:
                self._readers = ThreadPoolExecutor(2, thread_name_prefix="store-read")
            readers = self._readers
        ids = [str(i) for i in lead_ids]  # history_ends reads each distinct lead once
        return Prefetch(
            now, readers.submit(self.store.history_ends, ids, now, self.trend.window_days)
        )

    def keep(
        self,
        answers: list[dict[str, Any]],
        primary: str,
        source: Source,
        prefetched: Prefetch | None = None,
    ) -> list[dict[str, Any]]:
        """The answers with their stored history (trend, previous score), then recorded."""
        if prefetched is None:
            prefetched = self.prefetch([str(a["lead_id"]) for a in answers])
        self.history(answers, primary, prefetched)
        self.record(answers, primary, source, prefetched.now)
        return answers

    def history(self, answers: list[dict[str, Any]], primary: str, prefetched: Prefetch) -> None:
        """Add ``trend``, ``previous_score`` and ``previous_scored_at`` to each answer: its
        stored history plus the answer itself as the newest point."""
        for answer in answers:
            answer.update(trend=None, previous_score=None, previous_scored_at=None)
        if prefetched.ends is None or not answers:
            return
        current = {str(a["lead_id"]): float(a[f"p_{primary}"]) for a in answers}
        try:
            found = standings_from(prefetched.ends.result(), current, self.trend)
        except Exception as error:  # no history today: the answer itself still goes out
            if not self._failing:
                logger.warning("score store: history not readable (%s)", type(error).__name__)
            self._failing = True
            return
        self._failing = False
        for answer in answers:
            standing = found[str(answer["lead_id"])]
            answer["trend"] = standing.trend
            if standing.previous is not None:
                answer["previous_score"] = standing.previous.score
                answer["previous_scored_at"] = standing.previous.scored_at.isoformat()

    def record(
        self, answers: Sequence[dict[str, Any]], primary: str, source: Source, now: dt.datetime
    ) -> int:
        """Hand the answers to the recorder (never blocks, never raises); returns accepted."""
        if self.recorder is None:
            self._count(len(answers))
            return 0
        try:
            accepted = self.recorder.submit(records_of(answers, primary, source, now))
        except Exception:  # a record the store would refuse is a bug to log, not a 500
            logger.exception("score store: answers could not be recorded")
            accepted = 0
        self._count(0)
        return accepted

    def sync_metrics(self) -> None:
        self._count(0)

    def _count(self, unrecordable: int) -> None:
        """Move the recorder's counts (and answers with no recorder) into the metrics."""
        if self.metrics is None:
            return
        with self._lock:
            if unrecordable:
                self.metrics.scores_stored.inc("not_recorded", amount=unrecordable)
            if self.recorder is None:
                return
            counts = self.recorder.counts()
            recorded, dropped = counts.recorded, counts.not_recorded
            before_recorded, before_dropped = self._counted
            self._counted = (recorded, dropped)
        if recorded > before_recorded:
            self.metrics.scores_stored.inc("recorded", amount=recorded - before_recorded)
        if dropped > before_dropped:
            self.metrics.scores_stored.inc("not_recorded", amount=dropped - before_dropped)

    def close(self, timeout: float = 30.0) -> None:
        """Write every acknowledged score, then close the store (a clean shutdown)."""
        if self._readers is not None:
            self._readers.shutdown(wait=True)
        if self.recorder is not None:
            self.recorder.close(timeout)
            self._count(0)
        self.store.close()
