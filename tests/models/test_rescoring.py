"""The store's record of one score (models.rescoring.score_record): its as_of is the same
instant however the row carries it, as :func:`features.contract.utc` reads it."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

from features import contract
from models.rescoring import score_record

ZONES = st.builds(
    lambda minutes: dt.timezone(dt.timedelta(minutes=minutes)), st.integers(-14 * 60, 14 * 60)
)
MOMENTS = st.datetimes(
    min_value=dt.datetime(1971, 1, 1), max_value=dt.datetime(2100, 1, 1), timezones=ZONES
)


def _as_of(value: object) -> dt.datetime:
    row = {"lead_id": "L", "as_of": value, "p_converted": 0.4, "score": 40, "grade": "B"}
    row["handoff"] = True
    model = {"name": "m", "version": "1"}
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    return score_record(row, ["converted"], "converted", model, "api", now).as_of


@given(moment=MOMENTS, naive=st.booleans())
def test_every_spelling_of_an_instant_is_recorded_as_contract_utc_reads_it(
    moment: dt.datetime, naive: bool
) -> None:
    value = moment.replace(tzinfo=None) if naive else moment
    expected = contract.utc(value).to_pydatetime()
    spellings = [
        value,
        value.isoformat(),
        value.isoformat(sep=" "),
        pd.Timestamp(value),
        np.datetime64(value.replace(tzinfo=None)) if naive else value,
    ]
    if not naive:
        spellings.append(value.isoformat().replace("+00:00", "Z"))
    for spelling in spellings:
        got = _as_of(spelling)
        assert got == expected, spelling
        assert got.tzinfo == dt.UTC, spelling
        assert type(got) is dt.datetime, spelling


def test_texts_iso_cannot_read_still_go_through_the_contract() -> None:
    assert _as_of("1 March 2026 10:00") == dt.datetime(2026, 3, 1, 10, tzinfo=dt.UTC)
