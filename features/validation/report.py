"""The validation report: per-table and stage summaries, their log lines, the quarantine
threshold's failure line, and the report directory (summary.json, Data Docs pages, suites,
an index page).
"""

from __future__ import annotations

import html
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.storage import atomic_directory
from features.validation.coercion import ValidatedTable
from features.validation.suites import render_data_docs

# One logger for the whole stage, named as before the split into modules.
logger = logging.getLogger(__name__)


@dataclass
class TableSummary:
    name: str
    source: str
    rows_in: int
    rows_valid: int = 0
    rows_quarantined: int = 0
    rules: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)
    normalised: dict[str, int] = field(default_factory=dict)
    renamed: dict[str, str] = field(default_factory=dict)
    dropped_columns: list[str] = field(default_factory=list)
    added_columns: list[str] = field(default_factory=list)
    expectations: int = 0

    @property
    def share(self) -> float:
        return self.rows_quarantined / self.rows_in if self.rows_in else 0.0

    def top_rule(self) -> tuple[str, int] | None:
        return max(self.rules.items(), key=lambda item: item[1]) if self.rules else None


@dataclass
class ValidationSummary:
    tables: dict[str, TableSummary]
    horizon: str | None
    horizon_fixed: bool
    now: str
    max_quarantine_share: float
    seconds: float = 0.0
    ge_seconds: float = 0.0
    passed: bool = True
    failure: str | None = None

    @property
    def rows_in(self) -> int:
        return sum(table.rows_in for table in self.tables.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "failure": self.failure,
            "horizon": self.horizon,
            "horizon_fixed": self.horizon_fixed,
            "now": self.now,
            "max_quarantine_share": self.max_quarantine_share,
            "seconds": round(self.seconds, 3),
            "ge_seconds": round(self.ge_seconds, 3),
            "tables": {
                name: {
                    "source": table.source,
                    "rows_in": table.rows_in,
                    "rows_valid": table.rows_valid,
                    "rows_quarantined": table.rows_quarantined,
                    "quarantined_share": table.share,
                    "rules": table.rules,
                    "examples": table.examples,
                    "normalised": table.normalised,
                    "renamed_columns": table.renamed,
                    "dropped_columns": table.dropped_columns,
                    "added_columns": table.added_columns,
                    "expectations": table.expectations,
                }
                for name, table in self.tables.items()
            },
        }


def example_candidates(
    item: ValidatedTable, positions: np.ndarray, count: int, rows: np.ndarray | None = None
) -> list[tuple[int, str]]:
    """Up to ``count`` distinct ids (the table's key, else lead_id, else the row number) with
    the file row each is first met at (``rows``: the file's row of each of the table's rows;
    None: the table is the file)."""
    numbered = positions if rows is None else rows[positions]
    key = item.spec.key or ("lead_id" if "lead_id" in item.raw.columns else None)
    if key is None or key not in item.raw.columns:
        return [(int(row), f"row {row + 1}") for row in numbered[:count]]
    examples: dict[str, int] = {}
    step = max(count * 20, 100)
    for start in range(0, len(positions), step):
        head = positions[start : start + step]
        values = item.raw[key].iloc[head]
        for value, row in zip(values, numbered[start : start + step], strict=True):
            text = str(value) if pd.notna(value) else f"row {row + 1}"
            examples.setdefault(text, int(row))
            if len(examples) >= count:
                return [(row, text) for text, row in examples.items()]
    return [(row, text) for text, row in examples.items()]


def merge_examples(parts: list[list[tuple[int, str]]], count: int) -> list[str]:
    """The first ``count`` distinct ids of the whole table from its partitions' candidates
    (exact: an id among the first ``count`` of the table is among the first of its partition)."""
    first: dict[str, int] = {}
    for candidates in parts:
        for row, text in candidates:
            if text not in first or row < first[text]:
                first[text] = row
    return [text for text, _ in sorted(first.items(), key=lambda item: item[1])[:count]]


def summarise(item: ValidatedTable, example_ids: int) -> TableSummary:
    rows = len(item.typed)
    quarantined = int(item.quarantined.sum())
    return TableSummary(
        name=item.spec.name,
        source=str(item.path),
        rows_in=rows,
        rows_valid=rows - quarantined,
        rows_quarantined=quarantined,
        rules={rule: len(positions) for rule, positions in item.failures.items()},
        examples={
            rule: merge_examples([example_candidates(item, positions, example_ids)], example_ids)
            for rule, positions in item.failures.items()
        },
        normalised=dict(item.notes.normalised),
        renamed=dict(item.notes.renamed),
        dropped_columns=list(item.notes.dropped),
        added_columns=list(item.notes.added),
        expectations=len(item.result.results) if item.result is not None else 0,
    )


def _rows(count: int) -> str:
    return f"{count:,} row" if count == 1 else f"{count:,} rows"


def _percent(share: float) -> str:
    return f"{share:.1%}" if share == 0 or share >= 0.001 else f"{share:.2%}"


def log_summary(summary: ValidationSummary) -> None:
    horizon = summary.horizon or "none"
    logger.info(
        "data horizon %s (%s)", horizon, "fixed in params" if summary.horizon_fixed else "derived"
    )
    for table in summary.tables.values():
        logger.info(
            "%s: %s rows, %s valid, %s quarantined (%s)",
            table.name,
            f"{table.rows_in:,}",
            f"{table.rows_valid:,}",
            f"{table.rows_quarantined:,}",
            _percent(table.share),
        )
        for rule, count in sorted(table.rules.items(), key=lambda item: -item[1]):
            examples = ", ".join(table.examples.get(rule, []))
            logger.info("  %s: %s (e.g. %s)", rule, _rows(count), examples)
        for column, count in table.normalised.items():
            logger.info("  %s: %s values normalised (spaces/case)", column, f"{count:,}")
        for name, canonical in table.renamed.items():
            logger.info("  column %r read as %r", name, canonical)


def threshold_failure(summary: ValidationSummary, report: Path) -> str | None:
    over = [t for t in summary.tables.values() if t.share > summary.max_quarantine_share]
    if not over:
        return None
    first = over[0]
    top = first.top_rule()
    top_text = f" (top rule: {top[0]}, {_rows(top[1])})" if top else ""
    others = f"; also over: {', '.join(t.name for t in over[1:])}" if len(over) > 1 else ""
    return (
        f"{first.source}: {first.rows_quarantined:,} of {first.rows_in:,} rows "
        f"({_percent(first.share)}) quarantined > {_percent(summary.max_quarantine_share)} "
        f"allowed{top_text}{others}; report: {report / 'index.html'}"
    )


def _index_page(summary: ValidationSummary) -> str:
    status = "passed" if summary.passed else "FAILED"
    rows = []
    for table in summary.tables.values():
        rules = "<br>".join(
            f"{html.escape(rule)}: {count:,} (e.g. {html.escape(', '.join(table.examples[rule]))})"
            for rule, count in sorted(table.rules.items(), key=lambda item: -item[1])
        )
        rows.append(
            f"<tr><td><a href='data_docs/{table.name}.html'>{table.name}</a></td>"
            f"<td>{html.escape(table.source)}</td><td>{table.rows_in:,}</td>"
            f"<td>{table.rows_valid:,}</td><td>{table.rows_quarantined:,}</td>"
            f"<td>{_percent(table.share)}</td><td>{rules or '—'}</td></tr>"
        )
    failure = f"<p><b>{html.escape(summary.failure)}</b></p>" if summary.failure else ""
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>leadscore validation</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{border:1px solid #ccc;"
        "padding:4px 8px;vertical-align:top}table{border-collapse:collapse}</style></head><body>"
        f"<h1>Validation {status}</h1>{failure}"
        f"<p>Data horizon: {html.escape(summary.horizon or 'none')} "
        f"({'fixed in params' if summary.horizon_fixed else 'latest non-future time'}); "
        f"quarantine allowed per table: {_percent(summary.max_quarantine_share)}. "
        "Each table name links to its Great Expectations Data Docs page.</p>"
        "<table><tr><th>table</th><th>file</th><th>rows</th><th>valid</th><th>quarantined</th>"
        f"<th>share</th><th>rules</th></tr>{''.join(rows)}</table></body></html>\n"
    )


def write_report(report: Path, summary: ValidationSummary, results: dict[str, Any]) -> None:
    """The report directory; ``results``: per table its GE suite result (None: not run)."""
    with atomic_directory(report) as staging:
        (staging / "summary.json").write_text(
            json.dumps(summary.to_dict(), indent=2, default=str) + "\n", encoding="utf-8"
        )
        docs = staging / "data_docs"
        docs.mkdir()
        suites = staging / "suites"
        suites.mkdir()
        for name, result in results.items():
            if result is None:
                continue
            suite = result.suite_name
            try:
                page = render_data_docs(result)
            except Exception as error:  # the report page must never fail the stage
                logger.warning("%s: Data Docs page not rendered (%s)", name, error)
                page = f"<pre>{html.escape(json.dumps(result.to_json_dict(), indent=1))}</pre>"
            (docs / f"{name}.html").write_text(page, encoding="utf-8")
            expectations = [item.expectation_config.to_json_dict() for item in result.results]
            (suites / f"{name}.json").write_text(
                json.dumps({"name": suite, "expectations": expectations}, indent=1, default=str)
                + "\n",
                encoding="utf-8",
            )
        (staging / "index.html").write_text(_index_page(summary), encoding="utf-8")
