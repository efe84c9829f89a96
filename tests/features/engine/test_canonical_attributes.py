"""The feature engine reads a flat export's lead attributes by the contract's one
canonical-name rule (issue 11: a declared ``Country`` once raised ``KeyError: 'Country'`` in
``fit`` because validation had renamed it ``country``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.engine.engine import FeatureEngine
from features.errors import UserError

HORIZON = pd.Timestamp("2024-02-01", tz="UTC")


def leads(**columns: list[str | None]) -> pd.DataFrame:
    n = len(next(iter(columns.values())))
    return pd.DataFrame(
        {
            "lead_id": [f"L{i}" for i in range(n)],
            "created_at": pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC"),
            **columns,
        }
    )


@pytest.mark.parametrize("header", ["country", "Country", " COUNTRY "])
def test_a_declared_canonical_attribute_is_the_attribute_once(header: str) -> None:
    """The manifest of an older import (or any caller) may name it `Country`; the validated
    leads may hold it as `country` (or, unvalidated, as the export wrote it)."""
    table = leads(**{header: ["PT"] * 6 + ["ES"]}, Origin=["web"] * 7)
    engine = FeatureEngine(extra_categorical=("Country", "Origin"), min_category_count=2)
    engine.fit({"leads": table}, HORIZON)
    assert engine.lead_categoricals_ == ("country", "Origin")
    assert engine.vocabulary("country") == ("PT",)
    snapshots = pd.DataFrame({"lead_id": table["lead_id"], "as_of": table["created_at"]})
    matrix = engine.transform(snapshots, table)
    country = matrix[:, engine.feature_names_.index("country")]
    assert country.tolist() == [0.0] * 6 + [1.0]  # ES is rare: the "other" bucket
    one = engine.transform_one({"lead_id": "x", "created_at": HORIZON, "country": "PT"})
    assert one[engine.feature_names_.index("country")] == 0.0


def test_an_all_missing_declared_column_is_a_feature_without_values() -> None:
    table = leads(Fax=[None] * 4, Origin=["a", "b", "a", "a"])
    engine = FeatureEngine(extra_categorical=("Fax", "Origin"), min_category_count=1)
    engine.fit({"leads": table}, HORIZON)
    assert engine.vocabulary("Fax") == ()
    matrix = engine.transform(
        pd.DataFrame({"lead_id": table["lead_id"], "as_of": table["created_at"]}), table
    )
    assert np.isnan(matrix[:, engine.feature_names_.index("Fax")]).all()


def test_a_declared_column_the_leads_lack_is_one_line() -> None:
    engine = FeatureEngine(extra_categorical=("Lead Origin",))
    with pytest.raises(UserError, match="leads: no column 'Lead Origin'"):
        engine.fit({"leads": leads(Origin=["a"])}, HORIZON)
