"""Read the pipeline's reports for the dashboard and ``/v1/model``, defensively.

Files under ``LEADSCORE_ARTIFACTS`` (default ``artifacts/``), written by other stages:

- ``kpis.json`` (evaluate): the shared KPIs ``by_channel`` / ``by_campaign`` / ``by_month``;
- ``metrics.json`` (evaluate): per target, the model beside the baselines on the test slice;
- ``plots/calibration_<model>.csv``, ``plots/grades.csv`` … (evaluate): DVC plot data;
- ``model_card.md`` (evaluate);
- ``queue.parquet`` (``leadscore queue``): open leads, best first, with reasons.

Any of them may be missing, half-written by an older version, or of another shape: each reader
returns what it could read, or ``None`` with the reason, and never raises. Results are cached
by file modification time and size, so the dashboard polling does not re-read big files.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

T = TypeVar("T")
MAX_CSV_ROWS = 2000


@dataclass(frozen=True)
class Read:
    value: Any
    reason: str | None = None
    path: str | None = None
    """The report's name inside the artifacts directory (answers never say where that is)."""


def json_safe(value: Any) -> Any:
    """JSON-safe: NaN/inf/NA → None, numpy scalars and arrays → Python, timestamps → ISO."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return [json_safe(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, pd.Timestamp):
        return None if pd.isna(value) else value.isoformat()
    if value is pd.NaT or value is pd.NA:  # a nullable column's missing value
        return None
    return value


class ArtifactStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._cache: dict[str, tuple[tuple[float, int], Any]] = {}
        self._lock = threading.Lock()

    def path(self, name: str) -> Path:
        return self.root / name

    def _cached(self, name: str, parse: Callable[[Path], T]) -> Read:
        path = self.path(name)
        try:
            stat = path.stat()
        except OSError:
            return Read(None, f"{name} not found (run `dvc repro` or the stage that writes it)")
        key = (stat.st_mtime, stat.st_size)
        with self._lock:
            hit = self._cache.get(name)
        if hit is not None and hit[0] == key:
            return Read(hit[1], None, name)
        try:
            value = parse(path)
        except Exception as error:  # a report we cannot read is shown as unavailable
            logger.warning("cannot read %s: %s: %s", path, type(error).__name__, error)
            return Read(None, f"{name} could not be read ({type(error).__name__})")
        with self._lock:
            self._cache[name] = (key, value)
        return Read(value, None, name)

    # ----------------------------------------------------------------- json
    def json(self, name: str) -> Read:
        return self._cached(name, lambda p: json_safe(json.loads(p.read_text(encoding="utf-8"))))

    def kpis(self) -> Read:
        read = self.json("kpis.json")
        if read.value is not None and not isinstance(read.value, dict):
            return Read(None, f"{read.path}: not a JSON object")
        return read

    def metrics(self) -> Read:
        read = self.json("metrics.json")
        if read.value is not None and not isinstance(read.value, dict):
            return Read(None, f"{read.path}: not a JSON object")
        return read

    def text(self, name: str) -> Read:
        return self._cached(name, lambda p: p.read_text(encoding="utf-8"))

    # ------------------------------------------------------------------ csv
    def table(self, name: str) -> Read:
        """A small CSV (plot data) as a list of records; numbers parsed."""

        def parse(path: Path) -> list[dict[str, Any]]:
            rows: list[dict[str, Any]] = []
            with path.open(encoding="utf-8", newline="") as handle:
                for i, row in enumerate(csv.DictReader(handle)):
                    if i >= MAX_CSV_ROWS:
                        break
                    rows.append({k: _number(v) for k, v in row.items() if k is not None})
            return rows

        return self._cached(name, parse)

    def plots(self) -> dict[str, Any]:
        """Calibration tables per model and the grade table, when present."""
        out: dict[str, Any] = {"calibration": {}, "grades": None}
        folder = self.path("plots")
        if folder.is_dir():
            for path in sorted(folder.glob("calibration_*.csv")):
                read = self.table(f"plots/{path.name}")
                if read.value:
                    out["calibration"][path.stem.removeprefix("calibration_")] = read.value
            grades = self.table("plots/grades.csv")
            out["grades"] = grades.value
        return out

    # -------------------------------------------------------------- parquet
    def queue(self) -> Read:
        def parse(path: Path) -> pd.DataFrame:
            return pd.read_parquet(path)

        return self._cached("queue.parquet", parse)


def _number(text: str | None) -> Any:
    if text is None or text == "":
        return None
    try:
        value = float(text)
    except ValueError:
        return text
    if not math.isfinite(value):
        return None
    return int(value) if value.is_integer() and "." not in text and "e" not in text else value
