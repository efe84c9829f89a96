"""The fit × engagement grid on the test slice (``kpis.json`` ``grid``, the dashboard's heat
map): per cell, how many test scores the model put there and how many of those leads reached
the primary target within the window, so both teams can see that the cells mean what they say.

Every labelled test snapshot counts (a lead at ages 0, 7, 14 and 30 days is four scores): at
its first snapshot a lead has rarely engaged yet, so first snapshots alone would pile nearly
every lead into one engagement column."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from models.scorer import LeadScorer


def grid_report(snapshots: pd.DataFrame, X: np.ndarray, scorer: LeadScorer) -> dict[str, Any]:
    """Per grid cell, the labelled test snapshots (the model never trained on them): their
    count, distinct leads, and the observed and predicted rate of the primary target."""
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
    positions = np.flatnonzero(labelled)
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
            "lead": snapshots["lead_id"].to_numpy()[positions],
            "positive": snapshots[label].to_numpy(dtype=np.float64)[positions] == 1,
            "predicted": summary.probabilities[primary],
        }
    ).dropna(subset=["cell"])
    by_cell = frame.groupby("cell", sort=False).agg(
        scores=("positive", "size"),
        leads=("lead", "nunique"),
        positives=("positive", "sum"),
        predicted=("predicted", "mean"),
    )
    cells = []
    for letter in fit_names:
        for digit in engagement_names:
            cell = f"{letter}{digit}"
            scores = int(by_cell["scores"].get(cell, 0))
            positives = int(by_cell["positives"].get(cell, 0))
            cells.append(
                {
                    "cell": cell,
                    "fit": letter,
                    "engagement": digit,
                    "scores": scores,
                    "leads": int(by_cell["leads"].get(cell, 0)),
                    "positives": positives,
                    "rate": round(positives / scores, 6) if scores else None,
                    "predicted": round(float(by_cell["predicted"][cell]), 6) if scores else None,
                }
            )
    return {
        **out,
        "available": True,
        "scores": len(frame),
        "leads": int(frame["lead"].nunique()),
        "cells": cells,
    }
