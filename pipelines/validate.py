"""Stage `validate`: canonical tables → validated tables, quarantine and report.

Great Expectations suites generated from the data contract check every table; failing rows go
to ``<out>/quarantine/<table>.parquet`` with the rules they break, valid rows to
``<out>/<table>.parquet`` typed per the contract. The stage fails (exit ≠ 0, one line, the
previous output kept) on a table-level problem or when too many rows of a table are quarantined.
"""

from __future__ import annotations

from pathlib import Path

from features.params import load_params
from features.validation.report import ValidationSummary
from features.validation.validate import validate_directory


def run(
    raw: Path,
    out: Path,
    report: Path = Path("artifacts/validation"),
    params_path: Path = Path("params.yaml"),
) -> ValidationSummary:
    params = load_params(params_path)
    return validate_directory(raw=raw, out=out, report=report, params=params)
