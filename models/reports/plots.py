"""The evaluation's plots as PNG images, as ``mlflow.evaluate`` logs them with a run: the
reliability (calibration) curve, ROC, precision-recall, and cumulative gain with lift by decile,
of one model's probabilities for one target.

The figures are drawn from the same functions as the evaluate stage's plot data
(:mod:`models.reports.evaluation`: equal-width calibration bins, ROC and precision-recall
curves, gains with ties split fractionally), so a picture and its CSV agree. matplotlib's
object API with the Agg canvas is used directly, never ``pyplot``: no GUI backend is chosen,
nothing global is changed and no figure is left registered in the process.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import precision_recall_curve, roc_curve

from models.reports.evaluation import calibration_table, gains_on_grid, score_metric

logger = logging.getLogger(__name__)

DPI = 100
SIZE = (6.4, 4.8)  # inches: 640 × 480 pixels at DPI
DECILES = 10
PLOTS = {
    "calibration_curve": "reliability (calibration) curve",
    "roc_curve": "ROC curve",
    "precision_recall_curve": "precision-recall curve",
    "gain_lift_by_decile": "cumulative gain and lift by decile",
}
"""File stem → what the image shows."""


def _figure() -> Figure:
    figure = Figure(figsize=SIZE, dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)  # attaches itself: savefig renders with Agg
    return figure


def calibration_figure(y: np.ndarray, p: np.ndarray, title: str, bins: int = 10) -> Figure:
    """Observed rate against mean predicted probability per equal-width bin (marker area by
    rows), the diagonal of perfect calibration, and the distribution of predictions below."""
    table = calibration_table(y, p, bins)
    figure = _figure()
    curve, spread = figure.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    curve.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    share = table["count"].to_numpy() / max(len(y), 1)
    curve.plot(table["mean_predicted"], table["observed"], color="tab:blue", label="model")
    curve.scatter(table["mean_predicted"], table["observed"], s=20 + 400 * share, zorder=3)
    curve.set(ylabel="observed rate", xlim=(0, 1), ylim=(0, 1), title=title)
    curve.legend(loc="upper left")
    spread.hist(p, bins=50, range=(0, 1), color="tab:blue", alpha=0.7)
    spread.set(xlabel="predicted probability", ylabel="rows")
    return figure


def roc_figure(y: np.ndarray, p: np.ndarray, title: str) -> Figure:
    fpr, tpr, _ = roc_curve(y, p)
    auc = score_metric("roc_auc", y, p)
    figure = _figure()
    axes = figure.subplots()
    axes.plot(fpr, tpr, color="tab:blue", label=f"model (AUC {auc:.3f})")
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="random")
    axes.set(xlabel="false-positive rate", ylabel="true-positive rate", xlim=(0, 1), ylim=(0, 1.01))
    axes.set_title(title)
    axes.legend(loc="lower right")
    return figure


def precision_recall_figure(y: np.ndarray, p: np.ndarray, title: str) -> Figure:
    precision, recall, _ = precision_recall_curve(y, p)
    average = score_metric("pr_auc", y, p)
    base = float(np.mean(y))
    figure = _figure()
    axes = figure.subplots()
    axes.step(recall, precision, where="post", color="tab:blue", label=f"model (AP {average:.3f})")
    axes.axhline(base, linestyle="--", color="grey", label=f"base rate {base:.3f}")
    axes.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.01))
    axes.set_title(title)
    axes.legend(loc="upper right")
    return figure


def gain_lift_figure(y: np.ndarray, p: np.ndarray, title: str) -> Figure:
    """Left: share of positives captured working the top x of rows (deciles marked), beside
    random; right: each decile's positive rate over the overall rate (lift)."""
    grid = np.linspace(0.0, 1.0, 101)
    gains = gains_on_grid(y, p)
    at_deciles = gains[:: 100 // DECILES]
    lift = np.diff(at_deciles) * DECILES
    figure = _figure()
    gain, lifts = figure.subplots(1, 2)
    gain.plot(grid, gains, color="tab:blue", label="model")
    gain.plot(np.linspace(0, 1, DECILES + 1), at_deciles, "o", color="tab:blue")
    gain.plot([0, 1], [0, 1], linestyle="--", color="grey", label="random")
    gain.set(xlabel="share of rows worked", ylabel="share of positives", xlim=(0, 1), ylim=(0, 1))
    gain.set_title("cumulative gain")
    gain.legend(loc="lower right")
    deciles = np.arange(1, DECILES + 1)
    lifts.bar(deciles, lift, color="tab:blue")
    lifts.axhline(1.0, linestyle="--", color="grey")
    lifts.set(xlabel="decile (1 = highest scores)", ylabel="lift", xticks=deciles)
    lifts.set_title("lift by decile")
    figure.suptitle(title)
    return figure


def write_plots(y: np.ndarray, p: np.ndarray, out: Path, title: str) -> list[Path]:
    """Write the PNG images of :data:`PLOTS` for labels ``y`` and probabilities ``p`` into
    ``out``; returns the files written. Without rows nothing is written; with one class only,
    the ROC, precision-recall and gain curves are undefined and only the calibration curve is
    drawn (one log line says so)."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    if not len(y):
        logger.warning("no labelled rows: no evaluation plots")
        return []
    draw: dict[str, Callable[[np.ndarray, np.ndarray, str], Figure]] = {
        "calibration_curve": calibration_figure
    }
    if (y == 1).any() and (y == 0).any():
        draw |= {
            "roc_curve": roc_figure,
            "precision_recall_curve": precision_recall_figure,
            "gain_lift_by_decile": gain_lift_figure,
        }
    else:
        logger.warning("one class only in %d rows: only the calibration curve is drawn", len(y))
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for stem, make in draw.items():
        path = out / f"{stem}.png"
        make(y, p, f"{title}: {PLOTS[stem]}").savefig(path, format="png")
        written.append(path)
    return written
