"""Recording scores off the API's hot path.

:meth:`Recorder.submit` appends to a bounded in-memory queue under a short lock and returns:
it never waits for the database and never raises. A daemon thread writes what is pending in
batches of up to ``batch_size`` records per transaction, as soon as a batch is full and at
least every ``flush_seconds``. :meth:`Recorder.close` writes everything still pending, so no
score acknowledged to a caller before a clean shutdown is lost.

When the store cannot keep up or is down, recording degrades, the caller never notices:
records beyond ``max_pending`` are dropped, a batch whose write fails is dropped (no retry:
the next batch tries again, on a fresh connection), and both count as ``not_recorded``. The
first failure logs one warning on ``leadscore.store``, the first success after it one
"recovered" line; nothing per record.

Fork: the writer thread exists only in the process that created the recorder. Create the
recorder (and its store) in each worker after the fork; a recorder inherited across a fork
counts everything submitted in the child as not recorded, and logs that once (its lock is
renewed in the child, so a fork while the writer held it cannot hang the child, and the
parent's pending records are left to the parent).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from features.params import StoreParams
from models.store.connection import one_line
from models.store.records import ScoreRecord
from models.store.store import Store

logger = logging.getLogger("leadscore.store")

_live: weakref.WeakSet[Recorder] = weakref.WeakSet()
_fork_hook = threading.Lock()
_fork_hook_registered = False


def _after_fork_in_child() -> None:
    for recorder in list(_live):
        recorder._forked()


def _watch_forks(recorder: Recorder) -> None:
    # registered on the first recorder, not at import: importing the package changes nothing
    global _fork_hook_registered
    with _fork_hook:
        if not _fork_hook_registered:
            os.register_at_fork(after_in_child=_after_fork_in_child)
            _fork_hook_registered = True
        _live.add(recorder)


@dataclass(frozen=True, slots=True)
class RecorderCounts:
    """A consistent snapshot of the counters: ``recorded`` written, ``not_recorded`` dropped
    (queue full, closed, forked) or lost with a failed write, ``pending`` accepted and not yet
    written (waiting or in the batch being written)."""

    recorded: int
    not_recorded: int
    pending: int
    failing: bool


class Recorder:
    """Writes submitted :class:`ScoreRecord` s to ``store`` in the background; thread-safe."""

    def __init__(self, store: Store, params: StoreParams | None = None) -> None:
        params = params or StoreParams()
        self.store = store
        self.batch_size = params.batch_size
        self.flush_seconds = params.flush_seconds
        self.max_pending = params.max_pending
        self._queue: deque[ScoreRecord] = deque()
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)  # the writer waits on it
        self._idle = threading.Condition(self._lock)  # flush() waits on it
        self._oldest_at = 0.0  # monotonic time the oldest waiting record arrived
        self._recorded = 0
        self._not_recorded = 0
        self._in_flight = 0
        self._failing = False
        self._closing = False
        self._flush_now = False
        self._pid = os.getpid()
        self._fork_logged = False
        self._overflowing = False
        self._thread: threading.Thread | None = None
        _watch_forks(self)
        if store.enabled:
            self._thread = threading.Thread(
                target=self._run, name="leadscore-store-recorder", daemon=True
            )
            self._thread.start()

    # -- the caller's side ----------------------------------------------------------------

    def submit(self, records: Sequence[ScoreRecord]) -> int:
        """Queue ``records`` for writing; the number accepted (the rest count as not
        recorded). Never blocks on the database, never raises."""
        try:
            count = len(records)
            if not count:
                return 0
            overflow = forked = False
            with self._lock:
                if self._thread is not None and not self._closing and os.getpid() == self._pid:
                    accepted = self._enqueue(records, count)
                    overflow = accepted < count and not self._overflowing
                    self._overflowing = self._overflowing or overflow
                else:
                    accepted = 0
                    self._not_recorded += count
                    forked = os.getpid() != self._pid and not self._fork_logged
                    self._fork_logged = self._fork_logged or forked
            if overflow:  # once per episode: until the queue has drained
                logger.warning(
                    "score store: %d scores are waiting to be written; new ones are dropped "
                    "(not recorded) until the writer catches up",
                    self.max_pending,
                )
            if forked:
                logger.warning(
                    "score store: this recorder was created before a fork; scores in "
                    "process %d are not recorded (open the store after forking)",
                    os.getpid(),
                )
            return accepted
        except Exception:  # the hot path must never fail because recording did
            return 0

    def _enqueue(self, records: Sequence[ScoreRecord], count: int) -> int:
        """Under the lock: take what fits under ``max_pending``, wake the writer if needed."""
        was_empty = not self._queue
        accepted = max(0, min(self.max_pending - len(self._queue) - self._in_flight, count))
        if accepted == count:
            self._queue.extend(records)
        elif accepted:
            self._queue.extend(records[:accepted])
        self._not_recorded += count - accepted
        if accepted and was_empty:
            self._oldest_at = time.monotonic()
            self._work.notify()
        elif len(self._queue) >= self.batch_size:
            self._work.notify()
        return accepted

    @property
    def recorded(self) -> int:
        return self._recorded

    @property
    def not_recorded(self) -> int:
        return self._not_recorded

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._queue) + self._in_flight

    def counts(self) -> RecorderCounts:
        with self._lock:
            return RecorderCounts(
                self._recorded,
                self._not_recorded,
                len(self._queue) + self._in_flight,
                self._failing,
            )

    def flush(self, timeout: float | None = None) -> bool:
        """Write everything submitted so far now, and wait until it is written (or its write
        failed); False if some is still pending after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            self._flush_now = True
            self._work.notify()
            while self._queue or self._in_flight:
                if self._thread is None or not self._thread.is_alive():
                    return False
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    def close(self, timeout: float | None = 30.0) -> bool:
        """Write everything pending, then stop the thread; True if nothing was left unwritten
        within ``timeout`` seconds (None: as long as it takes). Submissions after close count
        as not recorded. The store stays open: its owner closes it."""
        with self._lock:
            self._closing = True
            self._work.notify()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        with self._lock:
            return not self._queue and not self._in_flight

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _forked(self) -> None:
        """In a forked child: the writer thread is gone and the lock may be held by it."""
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._idle = threading.Condition(self._lock)
        self._queue.clear()  # the parent writes these
        self._in_flight = 0
        self._thread = None

    # -- the writer thread ----------------------------------------------------------------

    def _next_batch(self) -> list[ScoreRecord] | None:
        """Wait until a batch is due (full, its oldest record ``flush_seconds`` old, a flush,
        or close) and take it; None when closed and drained."""
        with self._lock:
            while True:
                if not self._queue:
                    self._flush_now = False
                    self._overflowing = False
                    self._idle.notify_all()
                    if self._closing:
                        return None
                    self._work.wait()
                    continue
                if self._closing or self._flush_now or len(self._queue) >= self.batch_size:
                    break
                remaining = self._oldest_at + self.flush_seconds - time.monotonic()
                if remaining <= 0:
                    break
                self._work.wait(remaining)
            size = min(self.batch_size, len(self._queue))
            batch = [self._queue.popleft() for _ in range(size)]
            self._in_flight = size
            return batch

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            self._write(batch)

    def _write(self, batch: list[ScoreRecord]) -> None:
        try:
            self.store.record(batch)
        except Exception as error:  # a failing database is "not recorded", never a crash
            with self._lock:
                self._not_recorded += len(batch)
                self._in_flight = 0
                first = not self._failing
                self._failing = True
            if first:
                logger.warning(
                    "score store %s: writing failed, scores are not recorded until it recovers: %s",
                    getattr(self.store, "url", "?"),
                    one_line(error),
                )
            return
        with self._lock:
            self._recorded += len(batch)
            self._in_flight = 0
            recovered = self._failing
            self._failing = False
        if recovered:
            logger.warning(
                "score store %s: recovered, recording again", getattr(self.store, "url", "?")
            )
