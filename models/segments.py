"""Models per segment with a pooled fallback: which segment a feature row belongs to, and how
the rows of one call are routed to their segment's scorer and put back in order.

A segment is read from one categorical feature of the model (``segments.by`` in params: a
country, channel, source, industry, or a flat export's declared column), each of its values
alone or grouped (``segments.groups``: ``emea: [GB, DE, FR]``). Training
(:mod:`models.segment_training`) gives a segment its own scorer only when it has enough labelled
data and its model beats the pooled one on the segment's own calibration rows; every other row
(other segments, rare, unseen or missing values) is scored by the pooled model, named
:data:`POOLED`.

Kept free of training and params code: the MLflow bundle's code closure imports it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

POOLED = "pooled"
"""The segment name of a row scored by the pooled model (trained on all rows)."""


def segment_lookup(
    vocabulary: Sequence[str], groups: Mapping[str, Sequence[str]] | None
) -> np.ndarray:
    """Per code of the feature (its vocabulary, then the shared other/unseen code) the segment
    name it belongs to: the value itself without ``groups``, else its group's name
    (:data:`POOLED` for a value in no group, and always for other/unseen)."""
    if groups:
        group_of = {str(v).strip().lower(): name for name, values in groups.items() for v in values}
        names = [group_of.get(str(v).strip().lower(), POOLED) for v in vocabulary]
    else:
        names = [str(v) for v in vocabulary]
    return np.asarray([*names, POOLED], dtype=object)


@dataclass
class Segmentation:
    """The segments of a trained model: where each row's segment is read from, and the scorer
    of every segment whose model is used (the others fall back to the pooled one)."""

    feature: str
    column: int
    lookup: np.ndarray
    """Per code (:func:`segment_lookup`), the segment name; a segment without its own scorer
    maps to :data:`POOLED`."""
    scorers: dict[str, Any] = field(default_factory=dict)
    """Per segment with its own model, its :class:`~models.scorer.LeadScorer` (not imported
    here: the scorer imports this module)."""
    report: dict[str, Any] = field(default_factory=dict)
    members: np.ndarray | None = None
    """Per code, the segment it belongs to whether or not that segment has its own model
    (reports compare each segment's rows); None: as ``lookup``."""

    def names(self, X: np.ndarray) -> np.ndarray:
        """The segment whose model scores each row (:data:`POOLED` for the pooled model)."""
        return self._read(X, self.lookup)

    def membership(self, X: np.ndarray) -> np.ndarray:
        """The segment each row belongs to (:data:`POOLED` only for rows in none)."""
        return self._read(X, self.lookup if self.members is None else self.members)

    def _read(self, X: np.ndarray, lookup: np.ndarray) -> np.ndarray:
        if not len(X):
            return np.zeros(0, dtype=object)
        codes = np.asarray(X[:, self.column], dtype=np.float64)
        other = len(lookup) - 1
        safe = np.where(np.isfinite(codes), codes, other)
        return lookup[np.clip(safe, 0, other).astype(np.int64)]


def route(segmentation: Segmentation | None, X: np.ndarray) -> list[tuple[str, np.ndarray]] | None:
    """The positions of ``X`` per segment with its own scorer and (last) of the pooled rows;
    None when every row is pooled (the caller scores them all itself)."""
    if segmentation is None or not segmentation.scorers or not len(X):
        return None
    names = segmentation.names(X)
    routes = [
        (name, positions)
        for name in segmentation.scorers
        if len(positions := np.flatnonzero(names == name))
    ]
    if not routes:
        return None
    pooled = np.flatnonzero(names == POOLED)
    if len(pooled):
        routes.append((POOLED, pooled))
    return routes


def stitch(parts: Sequence[tuple[np.ndarray, Any]], n: int) -> Any:
    """The results of the routed parts (arrays with one row per position, or dicts and tuples
    of them) put back in row order."""
    first = parts[0][1]
    if isinstance(first, dict):
        return {key: stitch([(p, r[key]) for p, r in parts], n) for key in first}
    if isinstance(first, tuple):
        return tuple(stitch([(p, r[i]) for p, r in parts], n) for i in range(len(first)))
    first = np.asarray(first)
    out = np.empty((n, *first.shape[1:]), dtype=first.dtype)
    for positions, result in parts:
        out[positions] = result
    return out
