"""Time and history kernels of the feature engine.

All times are integer milliseconds since the Unix epoch, floored (:func:`timestamps_ms` for
columns, :func:`timestamp_ms` for one value), so the batch and the one-lead path compare the same
integers. A :class:`Timeline` stores sorted composite keys ``code * SPAN + (ms - origin)``, so one
``np.searchsorted`` answers "how many before as_of" for many codes at once;
:class:`StackedTimelines` puts several in one key space. :func:`window_counts` (and
:func:`decayed_window_counts`, which adds exponentially decayed counts) and :func:`window_hits`
are the per-lead history kernels built on them.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from features import contract
from features.engine.catalog import NEVER_DAYS

DAY_MS = 86_400_000
SPAN = 2**40
"""Milliseconds a composite key can hold after its origin (about 34 years)."""
MAX_CODES = 2**62 // SPAN


def timestamps_ms(values: pd.Series | pd.Index) -> np.ndarray:
    """UTC timestamps → int64 milliseconds since the epoch (floored)."""
    ns = pd.to_datetime(values, utc=True).astype("datetime64[ns, UTC]").astype("int64")
    return np.asarray(ns, dtype=np.int64) // 1_000_000


EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
ONE_MS = dt.timedelta(milliseconds=1)


def timestamp_ms(value: Any) -> int:
    """One timestamp → int64 milliseconds since the epoch, floored like :func:`timestamps_ms`
    (naive times are UTC). Fast paths for the types the API and pandas hand over."""
    if isinstance(value, pd.Timestamp):
        # .value is nanoseconds since the epoch in UTC (wall time for naive stamps).
        return int(value.value // 1_000_000)
    if isinstance(value, dt.datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
        return (aware - EPOCH) // ONE_MS
    return int(contract.utc(value).as_unit("ns").value // 1_000_000)


class Timeline:
    """Sorted composite keys ``code * SPAN + (ms - origin)`` with optional running sums."""

    def __init__(
        self,
        origin: int,
        codes: np.ndarray,
        ms: np.ndarray,
        values: np.ndarray | None = None,
    ) -> None:
        codes = np.asarray(codes, dtype=np.int64)
        if len(codes) and codes.max() >= MAX_CODES:
            raise ValueError(f"too many codes for one timeline ({codes.max()} ≥ {MAX_CODES})")
        keys = codes * SPAN + self._relative(origin, ms)
        order = np.argsort(keys, kind="stable")
        self.origin = origin
        self.order = order
        self.keys = keys[order]
        self.cumulative = (
            None
            if values is None
            else np.concatenate([[0.0], np.cumsum(np.asarray(values, dtype=np.float64)[order])])
        )

    @staticmethod
    def _relative(origin: int, ms: np.ndarray) -> np.ndarray:
        # np.minimum/np.maximum rather than np.clip: same result, a fraction of the overhead
        # on the one-lead path.
        return np.minimum(np.maximum(np.asarray(ms, dtype=np.int64) - origin, 0), SPAN - 1)

    def positions(self, codes: np.ndarray, ms: np.ndarray) -> np.ndarray:
        """Index of the first key at or after (code, ms): the count of keys before it."""
        query = np.asarray(codes, dtype=np.int64) * SPAN + self._relative(self.origin, ms)
        return np.searchsorted(self.keys, query, side="left")

    def _bounds(self, codes: np.ndarray, ms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        codes = np.asarray(codes, dtype=np.int64)
        start = codes * SPAN
        both = np.searchsorted(
            self.keys, np.concatenate([start, start + self._relative(self.origin, ms)])
        )
        return both[: len(codes)], both[len(codes) :]

    def count_before(self, codes: np.ndarray, ms: np.ndarray) -> np.ndarray:
        """Events of each code strictly before ms."""
        first, at = self._bounds(codes, ms)
        return at - first

    def count_and_sum_before(
        self, codes: np.ndarray, ms: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Events of each code strictly before ms, and the sum of their values."""
        assert self.cumulative is not None
        first, at = self._bounds(codes, ms)
        return at - first, self.cumulative[at] - self.cumulative[first]


class StackedTimelines:
    """Several timelines in one key space, so one searchsorted answers all of them: the
    one-lead path pays numpy's per-call overhead once instead of once per timeline."""

    def __init__(
        self,
        origin: int,
        parts: Sequence[tuple[str, int, np.ndarray, np.ndarray, np.ndarray | None]],
    ) -> None:
        """``parts``: (name, number of codes, codes, ms, values or None)."""
        self.offsets: dict[str, int] = {}
        offset = 0
        codes, times, values = [], [], []
        for name, n_codes, part_codes, part_ms, part_values in parts:
            self.offsets[name] = offset
            codes.append(np.asarray(part_codes, dtype=np.int64) + offset)
            times.append(np.asarray(part_ms, dtype=np.int64))
            values.append(
                np.zeros(len(part_codes)) if part_values is None else np.asarray(part_values)
            )
            offset += max(n_codes, 1)
        self.timeline = Timeline(
            origin,
            np.concatenate(codes) if codes else np.zeros(0, np.int64),
            np.concatenate(times) if times else np.zeros(0, np.int64),
            np.concatenate(values) if values else np.zeros(0),
        )

    def query(
        self, requests: Sequence[tuple[str, np.ndarray]], ms: np.ndarray
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per request (part name, codes): events before ms and the sum of their values.
        Unknown codes (< 0) must be masked by the caller."""
        codes = np.concatenate([np.maximum(c, 0) + self.offsets[name] for name, c in requests])
        counts, sums = self.timeline.count_and_sum_before(codes, np.tile(ms, len(requests)))
        n = len(ms)
        return [
            (counts[i * n : (i + 1) * n], sums[i * n : (i + 1) * n]) for i in range(len(requests))
        ]


def days_since(as_of: np.ndarray, last_ms: np.ndarray) -> np.ndarray:
    """Days from the last event to as_of; ``NEVER_DAYS`` when there was none (NaN ``last_ms``):
    a large finite value rather than NaN, so that monotone constraints (a recent demo request
    never lowers the score) hold across 'never'."""
    return np.where(np.isnan(last_ms), NEVER_DAYS, (as_of - last_ms) / DAY_MS)


_EXP_TERMS = tuple(1.0 / math.factorial(i) for i in range(15))
"""Taylor terms of ``exp(t)`` for ``|t| <= ln(2) / 2``: degree 14 leaves an error under 1e-17."""
_LN2 = math.log(2.0)


def halvings(x: np.ndarray) -> np.ndarray:
    """``0.5 ** x`` for ``x >= 0``, elementwise, from IEEE additions and multiplications only.

    numpy's ``power`` and ``exp2`` may take a SIMD library's path for some array lengths and
    CPUs and libm's for others (they differ in the last bit), so a value computed among a
    million would not always equal the same value computed alone, nor on another machine.
    Here ``x = k + f`` with ``k`` a whole number and ``|f| <= 1/2``; ``2 ** -f`` is a
    polynomial (Horner, the same operations in every element) and ``2 ** -k`` an exact
    exponent shift. Within one ulp of ``np.exp2(-x)``; exact at whole ``x`` (one half-life
    gives 0.5)."""
    k = np.rint(x)
    t = k - x  # exact; 0.5 ** x == exp(t ln 2) * 2 ** -k
    t *= _LN2
    p = np.full(np.shape(t), _EXP_TERMS[-1])
    for term in _EXP_TERMS[-2::-1]:
        p *= t
        p += term
    # beyond 1100 halvings every double is 0: the shift is capped to keep it an int32
    return np.ldexp(p, -np.minimum(k, 1100.0).astype(np.int32))


DECAY_UNIT = 2.0**40
"""Decayed counts are summed as whole multiples of ``1 / DECAY_UNIT`` (about 1e-12): integer
sums are exact, so a count is the same bits whatever the order or grouping of its touches,
and another touch never lowers it (float sums in a different association can, by an ulp). A
lead has room for 8 million touches of one type at full weight."""
DECAY_CHUNK_PAIRS = 1 << 22
"""Decayed counts expand (query, event) pairs; at most this many are held at once (queries are
taken in runs whose pairs fit, whole query by query, so the sums are the same bits)."""


def window_counts(
    origin: int,
    lead: np.ndarray,
    kind: np.ndarray,
    ms: np.ndarray,
    n_kinds: int,
    query_lead: np.ndarray,
    as_of: np.ndarray,
    bounds_ms: Sequence[int | np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """Per query and kind: events in [as_of - bound, as_of) for each bound (a number, or one
    per query), then all events before as_of (last slot); and the time of the last event of
    each kind before as_of (NaN when none).

    Events are sorted by (lead, time) once; running counts per kind and the index of the last
    event of each kind are prefix tables over that order. A query then needs one search per
    window edge (not per kind), and every count is a difference of two table rows. Events of
    unknown leads (lead < 0) are ignored.
    """
    counts, last_ms, _ = decayed_window_counts(
        origin, lead, kind, ms, n_kinds, query_lead, as_of, bounds_ms, ()
    )
    return counts, last_ms


def decayed_window_counts(
    origin: int,
    lead: np.ndarray,
    kind: np.ndarray,
    ms: np.ndarray,
    n_kinds: int,
    query_lead: np.ndarray,
    as_of: np.ndarray,
    bounds_ms: Sequence[int | np.ndarray],
    half_lives_ms: Sequence[int],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`window_counts`, and per query, kind and half-life ``h`` the decayed count
    ``sum(0.5 ** ((as_of - t) / h))`` over the lead's events of that kind before as_of
    (0.0 when none; shape queries × kinds × half-lives), to :data:`DECAY_UNIT`.

    A query's events of one kind are a run of the kind-by-kind order, found from the same
    prefix tables; each event's weight (:func:`halvings`, the same bits wherever it is
    computed) is rounded to whole units and each run summed exactly in integers (one
    ``np.add.reduceat`` segment): one lead alone, in any order, and the same lead among
    millions give the same bits. An event before the origin counts as at the origin, as its
    key does."""
    known = lead >= 0
    timeline = Timeline(origin, lead[known], ms[known])
    sorted_kind = np.asarray(kind, dtype=np.int64)[known][timeline.order]
    sorted_ms = np.asarray(ms, dtype=np.int64)[known][timeline.order]
    n_events = len(sorted_kind)
    # running[k, i]: events of kind k among the first i (kind-major, so each running sum is
    # a contiguous pass); by_kind lists event positions kind by kind, in time order.
    running = np.zeros((n_kinds, n_events + 1), dtype=np.int32)
    running[sorted_kind, np.arange(1, n_events + 1)] = 1
    np.cumsum(running, axis=1, out=running)
    by_kind = np.argsort(sorted_kind, kind="stable")
    kind_start = np.zeros(n_kinds, dtype=np.int64)
    kind_start[1:] = np.cumsum(np.bincount(sorted_kind, minlength=n_kinds))[:-1]

    n_queries = len(query_lead)
    n_bounds = len(bounds_ms)
    # Needles per query: each window's start, the lead's first event, then as_of; so that
    # `running at as_of - running at needle` lays out as [windows…, all time].
    needles = np.empty((n_queries, n_bounds + 2), dtype=np.int64)
    base = query_lead.astype(np.int64) * SPAN
    for b, bound in enumerate(bounds_ms):
        needles[:, b] = base + Timeline._relative(origin, as_of - bound)
    needles[:, -2] = base
    needles[:, -1] = base + Timeline._relative(origin, as_of)
    positions = np.searchsorted(timeline.keys, needles.ravel()).reshape(needles.shape)
    # One gather for every needle (a single take is several times faster than one per edge).
    running_at = running[:, positions]
    counts = running_at[:, :, -1:] - running_at[:, :, :-1]
    at = running_at[:, :, -1]
    # The last event of kind k before as_of is the at[k]-th of its kind overall.
    has_last = counts[:, :, -1] > 0
    if n_events:
        last_position = by_kind[np.maximum(kind_start[:, None] + at - 1, 0)]
        last_ms = np.where(has_last, sorted_ms[last_position], np.nan)
    else:
        last_ms = np.full(has_last.shape, np.nan)
    decayed = np.zeros((n_queries * n_kinds, len(half_lives_ms)))
    if len(half_lives_ms) and n_events:
        # Runs query by query, kind by kind: ranks [first, at) of the kind's events.
        first = (kind_start[:, None] + running_at[:, :, -2]).T.ravel()
        lengths = counts[:, :, -1].T.ravel().astype(np.int64)
        _decayed_sums(
            decayed,
            by_kind,
            np.maximum(sorted_ms, origin),
            first,
            lengths,
            np.repeat(as_of.astype(np.int64), n_kinds),
            half_lives_ms,
        )
    return (
        counts.transpose(1, 0, 2),
        last_ms.T,
        decayed.reshape(n_queries, n_kinds, len(half_lives_ms)),
    )


def _decayed_sums(
    out: np.ndarray,
    by_kind: np.ndarray,
    event_ms: np.ndarray,
    first: np.ndarray,
    lengths: np.ndarray,
    run_as_of: np.ndarray,
    half_lives_ms: Sequence[int],
) -> None:
    """``out[run, h]`` = the decayed count of each non-empty run of ``by_kind`` (ranks
    ``first[run]`` to ``first[run] + lengths[run]``), events aged ``run_as_of - event_ms``."""
    total = int(lengths.sum())
    if not total:
        return
    runs = np.flatnonzero(lengths)
    half_lives = np.asarray(half_lives_ms, dtype=np.float64)
    cuts = [0, len(runs)]
    if total > DECAY_CHUNK_PAIRS:  # whole runs, at most DECAY_CHUNK_PAIRS pairs (or one run)
        ends = np.cumsum(lengths[runs])
        cuts = [0]
        while cuts[-1] < len(runs):
            done = int(ends[cuts[-1] - 1]) if cuts[-1] else 0
            cut = int(np.searchsorted(ends, done + DECAY_CHUNK_PAIRS, side="right"))
            cuts.append(max(cut, cuts[-1] + 1))
    for start, stop in itertools.pairwise(cuts):
        chunk = runs[start:stop]
        n = lengths[chunk]
        offsets = np.cumsum(n) - n
        ranks = np.repeat(first[chunk] - offsets, n) + np.arange(int(offsets[-1] + n[-1]))
        age_ms = np.repeat(run_as_of[chunk], n) - event_ms[by_kind[ranks]]
        # Age over half-life as one division of milliseconds: exact at whole multiples (a
        # touch one half-life old weighs 0.5 exactly); pairs × half-lives.
        units = np.rint(halvings(age_ms[:, None] / half_lives) * DECAY_UNIT).astype(np.int64)
        # integer sums are exact: any grouping numpy picks gives the same total
        out[chunk] = np.add.reduceat(units, offsets, axis=0) / DECAY_UNIT


def window_hits(
    origin: int,
    event_lead: np.ndarray,
    event_ms: np.ndarray,
    query_lead: np.ndarray,
    as_of: np.ndarray,
    window_ms: int,
) -> np.ndarray:
    """Whether each query's lead has an event in (as_of, as_of + window] (integer ms)."""
    timeline = Timeline(origin, event_lead, event_ms)
    after = timeline.positions(query_lead, as_of + 1)
    until = timeline.positions(query_lead, as_of + window_ms + 1)
    return until > after
