import pyarrow as pa
import pytest

from features import contract


def test_tables_in_dependency_order_with_required_leads() -> None:
    names = list(contract.TABLES)
    assert names == ["campaigns", "accounts", "leads", "touches", "sales_events"]
    assert [t.name for t in contract.TABLES.values() if t.required] == ["leads"]
    for position, table in enumerate(contract.TABLES.values()):
        for column in table:
            if column.referenced_table:
                assert names.index(column.referenced_table) < position


def test_every_foreign_key_points_at_a_unique_key() -> None:
    for table in contract.TABLES.values():
        for column in table:
            if column.references:
                parent_name, parent_column = column.references.split(".")
                parent = contract.TABLES[parent_name]
                assert parent.key == parent_column
                assert parent.column(parent_column).unique


def test_keys_are_unique_and_required() -> None:
    for table in contract.TABLES.values():
        if table.key:
            key = table.column(table.key)
            assert key.unique
            assert not key.nullable


def test_arrow_schema_follows_kinds_and_nullability() -> None:
    schema = contract.LEADS.arrow_schema()
    assert schema.field("created_at").type == pa.timestamp("us", tz="UTC")
    assert not schema.field("lead_id").nullable
    assert schema.field("campaign_id").nullable
    assert contract.CAMPAIGNS.arrow_schema().field("spend").type == pa.float64()


def test_design_rules_are_encoded() -> None:
    assert contract.SALES_EVENTS.column("stage").allowed == contract.SALES_STAGES
    assert contract.CAMPAIGNS.column("ended_at").not_before_column == "started_at"
    assert contract.CAMPAIGNS.column("spend").min_value == 0.0
    for name in contract.EVENT_TABLES:
        occurred = contract.TABLES[name].column("occurred_at")
        assert occurred.not_before_lead_created
        assert occurred.not_after_horizon
    assert contract.LEADS.required_columns == ("lead_id", "created_at")


def test_unknown_names_fail_clearly() -> None:
    with pytest.raises(KeyError, match="unknown table 'deals'"):
        contract.table("deals")
    with pytest.raises(KeyError, match="leads has no column 'fax'"):
        contract.LEADS.column("fax")


def test_identity_fields_are_lead_columns_but_never_attributes() -> None:
    """Who the lead is travels with it (imports, the queue) but is never a feature."""
    assert contract.IDENTITY_FIELDS == ("first_name", "last_name", "email", "phone", "company_name")
    for name in contract.IDENTITY_FIELDS:
        column = contract.LEADS.column(name)
        assert column.identity
        assert column.nullable
        assert column.kind is contract.Kind.STRING
        assert name not in contract.LEAD_ATTRIBUTES
        assert contract.lead_attribute(name) is None
    assert not any(contract.LEADS.column(name).identity for name in contract.LEAD_ATTRIBUTES)
