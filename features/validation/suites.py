"""Great Expectations: one ``ExpectationSuite`` per table generated from the data contract
(:func:`build_suite`), plus derived cross-table columns; running a suite, reading its row
failures (:func:`failures_from_result`) and rendering its Data Docs page.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from features import contract
from features.validation.rules import (
    RowFailures,
    rule_after_horizon,
    rule_before_column,
    rule_before_epoch,
    rule_below_min,
    rule_duplicate,
    rule_future,
    rule_missing,
    rule_not_allowed,
)

if TYPE_CHECKING:
    from great_expectations.core import ExpectationSuite, ExpectationSuiteValidationResult
    from great_expectations.data_context import AbstractDataContext


@dataclass(frozen=True)
class Derived:
    """A column computed by joining other tables, validated by GE like any other column."""

    column: str
    values: Any
    rule: str
    value_set: tuple[Any, ...] | None = None
    min_value: float | None = None
    max_value: float | None = None


@dataclass(frozen=True)
class SuiteSettings:
    """Values the contract's time rules need: ``horizon`` when params fix it, else ``now``."""

    now: pd.Timestamp
    horizon: pd.Timestamp | None = None
    tolerance_seconds: float = 0.0


def _quiet_gx() -> None:
    """GE logs hundreds of INFO lines while importing; keep its warnings only."""
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    # this one sets its own level (INFO) when imported
    logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.WARNING)


def _expectation(kind: str, rule: str, **kwargs: Any) -> Any:
    _quiet_gx()
    import great_expectations.expectations as gxe

    classes = {
        "not_null": gxe.ExpectColumnValuesToNotBeNull,
        "unique": gxe.ExpectColumnValuesToBeUnique,
        "in_set": gxe.ExpectColumnValuesToBeInSet,
        "between": gxe.ExpectColumnValuesToBeBetween,
        "pair_ge": gxe.ExpectColumnPairValuesAToBeGreaterThanB,
    }
    return classes[kind](meta={"rule": rule}, **kwargs)


def suite_expectations(
    table: contract.Table, settings: SuiteSettings, derived: Sequence[Derived] = ()
) -> list[Any]:
    """The GE expectations of ``table``, each with its rule name in ``meta["rule"]``."""
    expectations = []
    for column in table.columns:
        name = column.name
        if not column.nullable:
            expectations.append(_expectation("not_null", rule_missing(name), column=name))
        if column.unique:
            expectations.append(_expectation("unique", rule_duplicate(table, name), column=name))
        if column.allowed is not None:
            expectations.append(
                _expectation(
                    "in_set",
                    rule_not_allowed(name),
                    column=name,
                    value_set=list(column.allowed),
                )
            )
        if column.min_value is not None:
            expectations.append(
                _expectation(
                    "between",
                    rule_below_min(name, column.min_value),
                    column=name,
                    min_value=column.min_value,
                )
            )
        if column.not_before_column is not None:
            expectations.append(
                _expectation(
                    "pair_ge",
                    rule_before_column(name, column.not_before_column),
                    column_A=name,
                    column_B=column.not_before_column,
                    or_equal=True,
                    ignore_row_if="either_value_is_missing",
                )
            )
        if column.kind is contract.Kind.TIMESTAMP:
            expectations.append(
                _expectation(
                    "between",
                    rule_before_epoch(name),
                    column=name,
                    min_value=contract.EARLIEST_TIME.to_pydatetime(),
                )
            )
        if column.not_after_horizon:
            if settings.horizon is not None:
                bound, rule = settings.horizon, rule_after_horizon(name)
            else:
                bound, rule = settings.now, rule_future(name)
            expectations.append(
                _expectation("between", rule, column=name, max_value=bound.to_pydatetime())
            )
    for item in derived:
        if item.value_set is not None:
            expectations.append(
                _expectation(
                    "in_set", item.rule, column=item.column, value_set=list(item.value_set)
                )
            )
        else:
            expectations.append(
                _expectation(
                    "between",
                    item.rule,
                    column=item.column,
                    min_value=item.min_value,
                    max_value=item.max_value,
                )
            )
    return expectations


def build_suite(
    table: contract.Table, settings: SuiteSettings, derived: Sequence[Derived] = ()
) -> ExpectationSuite:
    """One GE suite for ``table`` generated from the contract, plus derived cross-table columns."""
    _quiet_gx()
    import great_expectations as gx

    suite = gx.ExpectationSuite(name=f"leadscore.{table.name}")
    for expectation in suite_expectations(table, settings, derived):
        suite.add_expectation(expectation)
    return suite


def ge_context() -> AbstractDataContext:
    _quiet_gx()
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    return context


def run_suite(
    context: AbstractDataContext, name: str, frame: pd.DataFrame, suite: ExpectationSuite
) -> ExpectationSuiteValidationResult:
    sources = context.data_sources
    source: Any = (
        sources.get("leadscore")
        if "leadscore" in sources.all()
        else sources.add_pandas("leadscore")
    )
    asset = source.add_dataframe_asset(name)
    batch_definition = asset.add_batch_definition_whole_dataframe("whole")
    suite = context.suites.add(suite)
    batch = batch_definition.get_batch(batch_parameters={"dataframe": frame})
    return batch.validate(suite, result_format={"result_format": "COMPLETE"})


def _raised(info: Any) -> str | None:
    if not isinstance(info, dict):
        return None
    if info.get("raised_exception"):
        return str(info.get("exception_message"))
    for value in info.values():
        if isinstance(value, dict) and value.get("raised_exception"):
            return str(value.get("exception_message"))
    return None


def failures_from_result(result: ExpectationSuiteValidationResult, table: str) -> RowFailures:
    """Rule → failing positions, from GE's ``unexpected_index_list`` (a ``RangeIndex`` frame)."""
    failures: RowFailures = {}
    for item in result.results:
        config = item.expectation_config
        rule = str(config.meta["rule"]) if config is not None and config.meta else "unknown rule"
        error = _raised(item.exception_info)
        if error is not None:
            raise RuntimeError(f"Great Expectations could not check {table}: {rule}: {error}")
        if item.success:
            continue
        index = item.result.get("unexpected_index_list") or []
        positions = np.unique(np.asarray(index, dtype=np.int64))
        if len(positions):
            failures[rule] = np.union1d(failures.get(rule, positions), positions)
    return failures


def trim_for_docs(result: ExpectationSuiteValidationResult) -> None:
    """Drop complete unexpected lists (kept: GE's partial lists of 20) before rendering."""
    for item in result.results:
        for key in ("unexpected_list", "unexpected_index_list", "unexpected_index_query"):
            item.result.pop(key, None)


@functools.cache
def _page_view() -> Any:
    """One Jinja view per process: it compiles GE's page templates once."""
    from great_expectations.render.view import DefaultJinjaPageView

    return DefaultJinjaPageView()


def render_data_docs(result: ExpectationSuiteValidationResult) -> str:
    """GE's own Data Docs page (HTML) for one suite's validation result."""
    from great_expectations.render.renderer import ValidationResultsPageRenderer

    document = ValidationResultsPageRenderer().render(result)
    return str(_page_view().render(document))
