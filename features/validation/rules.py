"""Rule names: the words every validation rule is reported with (quarantine reasons, the
summary, Data Docs), and :data:`RowFailures`, the rows failing each rule.
"""

from __future__ import annotations

import numpy as np

from features import contract

RowFailures = dict[str, np.ndarray]
"""Rule name → sorted positions (0-based rows of the input file) failing it."""

DUPLICATE_ID = "duplicate id"
AFTER_CLOSE = "occurred_at after lead won/lost"


def rule_missing(column: str) -> str:
    return f"missing {column}"


def rule_duplicate(table: contract.Table, column: str) -> str:
    return DUPLICATE_ID if column == table.key else f"duplicate {column}"


def rule_not_allowed(column: str) -> str:
    return f"unknown {column}"


def rule_below_min(column: str, minimum: float) -> str:
    return f"negative {column}" if minimum == 0 else f"{column} below {minimum:g}"


def rule_before_column(column: str, other: str) -> str:
    return f"{column} before {other}"


def rule_unknown_reference(column: str, table: str) -> str:
    return f"{column} not in {table}"


def rule_parent_quarantined(table: str) -> str:
    key = contract.TABLES[table].key or table
    return f"parent {key.removesuffix('_id')} quarantined"


def rule_before_lead_created(column: str) -> str:
    return f"{column} before lead created_at"


def rule_after_horizon(column: str) -> str:
    return f"{column} after horizon"


def rule_future(column: str) -> str:
    return f"future timestamp in {column}"


def rule_before_epoch(column: str) -> str:
    return f"timestamp before {contract.EARLIEST_TIME.date()} in {column}"


def rule_unparseable(column: str) -> str:
    return f"unparseable timestamp in {column}"


def rule_not_a_number(column: str) -> str:
    return f"not a number in {column}"
