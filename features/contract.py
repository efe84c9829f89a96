"""The data contract: the one definition of leadscore's canonical tables.

Everything that needs to know a table's columns reads them from here: the simulator's Arrow
schemas, the Great Expectations suites of the validation stage, the importers, the feature
engine and the API's request models. Nothing else may restate a column list.

Tables: ``campaigns``, ``accounts``, ``leads`` (required), ``touches``, ``sales_events``.
Timestamps are UTC. The data horizon is the latest event time unless params fix it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import pandas as pd
import pyarrow as pa


class Kind(StrEnum):
    STRING = "string"
    TIMESTAMP = "timestamp"
    FLOAT = "float"


ARROW_TYPES: dict[Kind, pa.DataType] = {
    Kind.STRING: pa.string(),
    Kind.TIMESTAMP: pa.timestamp("us", tz="UTC"),
    Kind.FLOAT: pa.float64(),
}

SALES_STAGES: tuple[str, ...] = ("assigned", "accepted", "rejected", "opportunity", "won", "lost")
CLOSING_STAGES: tuple[str, ...] = ("won", "lost")
"""After one of these no event of the lead may follow."""
CLOSED_STAGES: tuple[str, ...] = ("won", "lost", "rejected")
"""A lead whose latest sales stage is one of these is closed: it yields no snapshot."""

CHANNELS: tuple[str, ...] = (
    "paid_search",
    "paid_social",
    "email",
    "webinar",
    "event",
    "content_syndication",
    "organic",
    "referral",
    "outbound",
    "partner",
)
TOUCH_TYPES: tuple[str, ...] = (
    "email_open",
    "email_click",
    "web_visit",
    "pricing_page_visit",
    "content_download",
    "webinar_registration",
    "webinar_attendance",
    "event_attendance",
    "demo_request",
    "form_submit",
    "unsubscribe",
)


@dataclass(frozen=True)
class Column:
    """One column and every rule about it.

    ``allowed`` is a closed vocabulary (a value outside it is invalid); ``known_values`` is an
    open one (documented, used for vocabularies, but other values are valid). ``references``
    is a foreign key ``"table.column"``, checked only when that table is present.
    """

    name: str
    kind: Kind
    description: str
    nullable: bool = True
    unique: bool = False
    min_value: float | None = None
    allowed: tuple[str, ...] | None = None
    known_values: tuple[str, ...] = ()
    lowercase: bool = False
    references: str | None = None
    not_before_column: str | None = None
    not_before_lead_created: bool = False
    not_after_horizon: bool = False
    business_field: str | None = None
    identity: bool = False
    """Who the lead is (name, e-mail, phone, company): carried from imports into the queue and
    shown to sales, but never a feature, never in a log line or an error message."""

    @property
    def arrow_type(self) -> pa.DataType:
        return ARROW_TYPES[self.kind]

    @property
    def referenced_table(self) -> str | None:
        return self.references.split(".")[0] if self.references else None


@dataclass(frozen=True)
class Table:
    name: str
    description: str
    columns: tuple[Column, ...]
    key: str | None = None
    required: bool = False
    extra_columns_allowed: bool = False
    time_column: str | None = None
    rules: tuple[str, ...] = field(default=())

    def __iter__(self) -> Iterator[Column]:
        return iter(self.columns)

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.columns)

    def column(self, name: str) -> Column:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(f"{self.name} has no column {name!r}")

    @property
    def required_columns(self) -> tuple[str, ...]:
        """Columns that must be present in the file (non-nullable ones)."""
        return tuple(column.name for column in self.columns if not column.nullable)

    def arrow_schema(self) -> pa.Schema:
        return pa.schema([pa.field(c.name, c.arrow_type, nullable=c.nullable) for c in self])


EARLIEST_TIME = pd.Timestamp("1970-01-01", tz="UTC")
END_OF_TIME = pd.Timestamp("2200-01-01", tz="UTC")
"""The range of every timestamp a lead, a touch or a sales event may have: anything else is a
typo (year 1 for 2001, 9999 for "never"), and beyond the feature engine's clock. The validator
quarantines earlier times (later ones are after the horizon or in the future); the API and
``leadscore score`` refuse times outside it."""


CAMPAIGNS = Table(
    name="campaigns",
    description="Marketing campaigns with their channel, dates and spend.",
    key="campaign_id",
    columns=(
        Column("campaign_id", Kind.STRING, "Campaign identifier", nullable=False, unique=True),
        Column("name", Kind.STRING, "Campaign name"),
        Column(
            "channel",
            Kind.STRING,
            "Marketing channel",
            nullable=False,
            known_values=CHANNELS,
            lowercase=True,
            business_field="channel",
        ),
        Column("started_at", Kind.TIMESTAMP, "Campaign start (UTC)", nullable=False),
        Column(
            "ended_at",
            Kind.TIMESTAMP,
            "Campaign end (UTC); null while running",
            not_before_column="started_at",
        ),
        Column(
            "spend",
            Kind.FLOAT,
            "Total spend in params.data.currency",
            nullable=False,
            min_value=0.0,
            business_field="campaign spend",
        ),
    ),
)

ACCOUNTS = Table(
    name="accounts",
    description="Companies the leads work for.",
    key="account_id",
    extra_columns_allowed=True,
    columns=(
        Column("account_id", Kind.STRING, "Account identifier", nullable=False, unique=True),
        Column("industry", Kind.STRING, "Industry", lowercase=True, business_field="industry"),
        Column("country", Kind.STRING, "Account country (ISO 3166 alpha-2)"),
        Column("employees", Kind.FLOAT, "Employees", min_value=0.0, business_field="company size"),
        Column(
            "annual_revenue",
            Kind.FLOAT,
            "Annual revenue in params.data.currency",
            min_value=0.0,
            business_field="company revenue",
        ),
    ),
)

LEADS = Table(
    name="leads",
    description="One row per lead (person showing interest), created when first captured.",
    key="lead_id",
    required=True,
    extra_columns_allowed=True,
    time_column="created_at",
    columns=(
        Column("lead_id", Kind.STRING, "Lead identifier", nullable=False, unique=True),
        Column(
            "created_at",
            Kind.TIMESTAMP,
            "When the lead was captured (UTC)",
            nullable=False,
            not_after_horizon=True,
            business_field="lead age",
        ),
        Column(
            "campaign_id",
            Kind.STRING,
            "Campaign that brought the lead",
            references="campaigns.campaign_id",
            business_field="source campaign",
        ),
        Column(
            "account_id",
            Kind.STRING,
            "Account the lead works for",
            references="accounts.account_id",
            business_field="account",
        ),
        Column("source", Kind.STRING, "Lead source", lowercase=True, business_field="lead source"),
        Column("job_title", Kind.STRING, "Job title", business_field="job title"),
        Column(
            "seniority",
            Kind.STRING,
            "Seniority (c_level, vp, director, manager, individual, student, …)",
            lowercase=True,
            business_field="seniority",
        ),
        Column(
            "department", Kind.STRING, "Department", lowercase=True, business_field="department"
        ),
        Column("country", Kind.STRING, "Lead country (ISO 3166 alpha-2)", business_field="country"),
        Column(
            "first_name",
            Kind.STRING,
            "First name (identity: shown, never a feature)",
            identity=True,
        ),
        Column(
            "last_name", Kind.STRING, "Last name (identity: shown, never a feature)", identity=True
        ),
        Column(
            "email", Kind.STRING, "E-mail address (identity: shown, never a feature)", identity=True
        ),
        Column(
            "phone", Kind.STRING, "Phone number (identity: shown, never a feature)", identity=True
        ),
        Column(
            "company_name",
            Kind.STRING,
            "Company the lead works for (identity: shown, never a feature)",
            identity=True,
        ),
    ),
)

TOUCHES = Table(
    name="touches",
    description="Marketing interactions of a lead (email, web, content, webinars, events…).",
    time_column="occurred_at",
    columns=(
        Column("lead_id", Kind.STRING, "Lead touched", nullable=False, references="leads.lead_id"),
        Column(
            "occurred_at",
            Kind.TIMESTAMP,
            "When it happened (UTC)",
            nullable=False,
            not_before_lead_created=True,
            not_after_horizon=True,
        ),
        Column(
            "touch_type",
            Kind.STRING,
            "Kind of interaction",
            nullable=False,
            known_values=TOUCH_TYPES,
            lowercase=True,
        ),
        Column(
            "campaign_id", Kind.STRING, "Campaign behind it", references="campaigns.campaign_id"
        ),
    ),
)

SALES_EVENTS = Table(
    name="sales_events",
    description="Sales pipeline events of a lead: assignment, acceptance or rejection, "
    "opportunity, won or lost.",
    time_column="occurred_at",
    columns=(
        Column(
            "lead_id", Kind.STRING, "Lead concerned", nullable=False, references="leads.lead_id"
        ),
        Column(
            "occurred_at",
            Kind.TIMESTAMP,
            "When it happened (UTC)",
            nullable=False,
            not_before_lead_created=True,
            not_after_horizon=True,
        ),
        Column("stage", Kind.STRING, "Pipeline stage", nullable=False, allowed=SALES_STAGES),
        Column("owner_id", Kind.STRING, "Sales rep owning the lead"),
        Column("reason", Kind.STRING, "Reason given (rejection, loss)"),
        Column("amount", Kind.FLOAT, "Deal amount in params.data.currency", min_value=0.0),
    ),
    rules=("no event of a lead after its won or lost",),
)

TABLES: dict[str, Table] = {
    table.name: table for table in (CAMPAIGNS, ACCOUNTS, LEADS, TOUCHES, SALES_EVENTS)
}
"""Canonical tables in dependency order (parents before children)."""

EVENT_TABLES: tuple[str, ...] = ("touches", "sales_events")

LEAD_ATTRIBUTES: tuple[str, ...] = tuple(
    column.name
    for column in LEADS.columns
    if column.kind is Kind.STRING
    and column.nullable
    and not column.unique
    and column.references is None
    and not column.identity
)
"""Canonical lead attributes (``source``, ``job_title``, ``seniority``, ``department``,
``country``): text, not keys, not references, not times. A flat export may carry them as
features; the feature engine always uses them under these names."""


IDENTITY_FIELDS: tuple[str, ...] = tuple(column.name for column in LEADS.columns if column.identity)
"""Who the lead is: ``first_name``, ``last_name``, ``email``, ``phone``, ``company_name`` (the
lead's title is ``job_title``, a feature). Optional; sales needs them to act on a queue row."""


def canonical_name(column: object, table: str | Table = "leads") -> str | None:
    """The canonical column of ``table`` an export column named ``column`` stands for, or None.

    The one rule, applied alike by the importers, the validation stage and the feature engine
    (they once disagreed on ``Country``): the names are equal once surrounding spaces are
    stripped and letter case is folded, so ``Country`` and ``" country "`` are ``country``.
    Anything else (``Lead Country``, ``job title``) is not a canonical column."""
    spec = table if isinstance(table, Table) else TABLES[table]
    folded = str(column).strip().casefold()
    for name in spec.column_names:
        if name.casefold() == folded:
            return name
    return None


def canonical_renames(columns: Iterable[Any], table: str | Table) -> dict[Any, str]:
    """Header → canonical column for the headers of a file that are a canonical column of
    ``table`` by :func:`canonical_name`'s rule but not spelled exactly so. A header already
    exactly canonical wins over a look-alike (which is then left alone, an extra column), and
    of two look-alikes the first wins."""
    headers = list(columns)
    present = {str(name) for name in headers}
    renames: dict[Any, str] = {}
    for name in headers:
        canonical = canonical_name(name, table)
        if (
            canonical is not None
            and canonical != name
            and canonical not in present
            and canonical not in renames.values()
        ):
            renames[name] = canonical
    return renames


def lead_attribute(column: object) -> str | None:
    """The canonical lead attribute (:data:`LEAD_ATTRIBUTES`) an export column stands for, by
    :func:`canonical_name`'s rule; None for any other column."""
    name = canonical_name(column, LEADS)
    return name if name in LEAD_ATTRIBUTES else None


def table(name: str) -> Table:
    try:
        return TABLES[name]
    except KeyError:
        raise KeyError(f"unknown table {name!r}; canonical tables are {list(TABLES)}") from None


def utc(value: Any) -> pd.Timestamp:
    """One instant as a UTC timestamp: naive values are UTC (the contract's rule), aware ones
    are converted. Raises ``ValueError``/``TypeError`` for what is not a time."""
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def latest_time(
    frames: Mapping[str, pd.DataFrame], now: pd.Timestamp | None = None
) -> pd.Timestamp | None:
    """The latest time in any table's time column (leads.created_at, touches and sales_events
    occurred_at), ignoring times after ``now`` when given (raw data may hold future rows);
    None when there is none."""
    latest = []
    for name, spec in TABLES.items():
        if not spec.time_column or name not in frames or not len(frames[name]):
            continue
        times = frames[name][spec.time_column]
        if now is not None:
            times = times[times <= now]
        value = times.max()
        if pd.notna(value):
            latest.append(pd.Timestamp(value))
    return utc(max(latest)) if latest else None


def data_horizon(
    frames: Mapping[str, pd.DataFrame], fixed: dt.datetime | None = None
) -> pd.Timestamp:
    """The `as_of` of the whole dataset: ``fixed`` when params set it, else
    :func:`latest_time`. The one definition every stage uses."""
    if fixed is not None:
        return utc(fixed)
    latest = latest_time(frames)
    if latest is None:
        raise ValueError("no timestamps to derive the data horizon from")
    return latest
