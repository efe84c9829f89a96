"""The fit × engagement grid on the test slice (``kpis.json`` ``grid``, the dashboard's heat
map): per cell, how many test leads the model put there and how many of them reached the
primary target within the window, so both teams can see that the cells mean what they say."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from models.scorer import LeadScorer


def grid_report(snapshots: pd.DataFrame, X: np.ndarray, scorer: LeadScorer) -> dict[str, Any]:
    """Per grid cell of the test leads (each lead at its first labelled test snapshot: the
    model never trained on them), the lead count and observed rate of the primary target."""
    primary = scorer.primary
    fit_names, engagement_names = scorer.definition.grid.names()
    out: dict[str, Any] = {
        "target": primary,
        "slice": "test",
        "fit": fit_names,
        "engagement": engagement_names,
        "cells": [],
    }
    label = f"label_{primary}"
    labelled = (snapshots["split"] == "test").to_numpy() & snapshots[label].notna().to_numpy()
    if not labelled.any():
        return {**out, "available": False, "reason": "no labelled test snapshots"}
    test = snapshots[labelled].sort_values(["lead_id", "as_of"], kind="stable")
    rows = test.drop_duplicates("lead_id").index.to_numpy()
    positions = snapshots.index.get_indexer(rows)
    summary = scorer.summarise(X[positions])
    if all(cell is None for cell in summary.grid):
        return {
            **out,
            "available": False,
            "reason": "the model has features on one axis only (e.g. a flat export without "
            "touches): no grid",
        }
    frame = pd.DataFrame(
        {
            "cell": summary.grid,
            "positive": snapshots[label].to_numpy(dtype=np.float64)[positions] == 1,
            "predicted": summary.probabilities[primary],
        }
    ).dropna(subset=["cell"])
    by_cell = frame.groupby("cell", sort=False).agg(
        leads=("positive", "size"), positives=("positive", "sum"), predicted=("predicted", "mean")
    )
    cells = []
    for letter in fit_names:
        for digit in engagement_names:
            cell = f"{letter}{digit}"
            leads = int(by_cell["leads"].get(cell, 0))
            positives = int(by_cell["positives"].get(cell, 0))
            cells.append(
                {
                    "cell": cell,
                    "fit": letter,
                    "engagement": digit,
                    "leads": leads,
                    "positives": positives,
                    "rate": round(positives / leads, 6) if leads else None,
                    "predicted": round(float(by_cell["predicted"][cell]), 6) if leads else None,
                }
            )
    return {**out, "available": True, "leads": len(frame), "cells": cells}
