"""Category and id encoding of the feature engine: values → vocabulary codes (floats, NaN for
missing, ``len(vocabulary)`` for unseen or rare), ids → positions in a fitted index, and the
kernel's output matrix written by feature name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc


def lookup_codes(values: pd.Series, vocabulary: Sequence[str]) -> np.ndarray:
    """Vocabulary codes as floats: NaN for missing, len(vocabulary) for unseen or rare."""
    codes = pd.Categorical(values, categories=list(vocabulary)).codes.astype(np.float64)
    codes[codes < 0] = len(vocabulary)
    codes[values.isna().to_numpy()] = np.nan
    return codes


def vocabulary_codes(values: pd.Series, vocabulary: Sequence[str], lowercase: bool) -> np.ndarray:
    """Normalised vocabulary codes (as :func:`lookup_codes` of :func:`normalise`), working
    on the distinct values only: a million touches have a dozen distinct types."""
    codes, distinct = _factorize(values)
    names = pd.Series(distinct.astype(str)).str.strip()
    names = names.str.lower() if lowercase else names
    lookup = np.asarray(pd.Index(list(vocabulary)).get_indexer(names), dtype=np.float64)
    lookup[lookup < 0] = len(vocabulary)
    lookup[(names == "").to_numpy()] = np.nan
    lookup = np.append(lookup, np.nan)  # code -1 (missing) reads the last slot
    return lookup[np.where(codes < 0, len(lookup) - 1, codes)]


def index_codes(index: pd.Index, values: pd.Series) -> np.ndarray:
    """Positions of ``values`` in ``index`` (-1 when absent). Text on both sides: one Arrow
    hash lookup (4-5x faster than pandas on 20 M touch ids, and it releases the GIL); other
    types: pandas, hashing distinct values once. ``index`` holds unique values."""
    array = pa.array(values, from_pandas=True)  # chunks kept: index_in reads them as they are
    if _is_text(array.type) and (index.dtype == object or pd.api.types.is_string_dtype(index)):
        keys = pa.array(index, from_pandas=True)
        if _is_text(keys.type):
            if keys.type != array.type:
                keys = keys.cast(array.type)
            found = pc.index_in(array, value_set=keys)
            return np.asarray(pc.fill_null(found, -1).to_numpy(), dtype=np.int64)
    codes, distinct = _factorize(values)
    lookup = np.append(np.asarray(index.get_indexer(distinct), dtype=np.int64), -1)
    return lookup[np.where(codes < 0, len(lookup) - 1, codes)]


def _arrow(values: pd.Series) -> pa.Array:
    array = pa.array(values, from_pandas=True)
    if isinstance(array, pa.ChunkedArray):
        array = array.chunk(0) if array.num_chunks == 1 else array.combine_chunks()
    return array


def _is_text(kind: pa.DataType) -> bool:
    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind))


def _factorize(values: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """Codes (-1 for missing) and distinct values. Arrow's dictionary encoding is 2-3x faster
    than ``pd.Categorical`` on the tens of millions of ids and types of a large history."""
    array = _arrow(values)
    if not _is_text(array.type):
        codes, distinct = pd.factorize(values)
        return np.asarray(codes, dtype=np.int64), pd.Index(distinct)
    encoded = pc.dictionary_encode(array)
    codes = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    return codes, pd.Index(encoded.dictionary.to_pylist(), dtype=object)


def normalise(values: pd.Series, lowercase: bool) -> pd.Series:
    values = values.astype("string").str.strip()
    values = values.str.lower() if lowercase else values
    return values.mask(values == "")


class Columns:
    """The kernel's output matrix, written column by column (or block by block) by name."""

    def __init__(self, positions: Mapping[str, int], rows: int) -> None:
        self.positions = positions
        self.matrix = np.full((rows, len(positions)), np.nan)
        self.written: set[str] = set()

    def __setitem__(self, name: str, values: np.ndarray) -> None:
        self.matrix[:, self.positions[name]] = values
        self.written.add(name)

    def put_block(self, first: str, values: np.ndarray) -> None:
        start = self.positions[first]
        self.matrix[:, start : start + values.shape[1]] = values

    def get(self, name: str) -> np.ndarray:
        if name in self.written:
            return self.matrix[:, self.positions[name]]
        return np.full(len(self.matrix), np.nan)
