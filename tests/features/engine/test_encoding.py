"""Id encoding: positions in a fitted index, whichever route (Arrow or pandas) computes them."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from features.engine.encoding import index_codes

TEXT = st.text(alphabet="ab É_ 1", max_size=4)


@given(
    keys=st.lists(TEXT, unique=True, max_size=12),
    values=st.lists(st.one_of(st.none(), TEXT), max_size=40),
    index_dtype=st.sampled_from([object, "str"]),
    values_dtype=st.sampled_from([object, "str", "string[pyarrow]", "large_string[pyarrow]"]),
)
def test_index_codes_are_positions_or_minus_one(
    keys: list[str], values: list[str | None], index_dtype: str, values_dtype: str
) -> None:
    index = pd.Index(keys, dtype=index_dtype)
    series = pd.Series(values, dtype=object)
    series = (
        series.astype(pd.ArrowDtype(pa.large_string()))
        if values_dtype == "large_string[pyarrow]"
        else series.astype(values_dtype)
    )
    position = {key: i for i, key in enumerate(keys)}
    expected = [-1 if v is None else position.get(v, -1) for v in values]
    assert index_codes(index, series).tolist() == expected


@given(values=st.lists(st.one_of(st.none(), st.integers(0, 9)), max_size=30))
def test_index_codes_of_numbers_use_pandas(values: list[int | None]) -> None:
    index = pd.Index([3, 1, 7])
    series = pd.Series(values, dtype="Int64")
    expected = [-1 if v is None else {3: 0, 1: 1, 7: 2}.get(v, -1) for v in values]
    assert index_codes(index, series).tolist() == expected
