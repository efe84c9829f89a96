"""The validation stage: the raw canonical tables are typed per the data contract, checked by
Great Expectations suites generated from it (per-table and cross-table rules), and split into
valid rows and quarantined ones, with a report (summary, Data Docs); the stage fails when a
table's quarantined share is too high. :mod:`~features.validation.validate` runs it, on top of
:mod:`~features.validation.rules` (rule names), :mod:`~features.validation.coercion`,
:mod:`~features.validation.suites`, :mod:`~features.validation.cross_table` and
:mod:`~features.validation.report`.
"""
