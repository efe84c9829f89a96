"""The YAML mapping that drives :mod:`features.ingest.importers`: its pydantic models, reading
and validating a mapping file, and the strict parsers of the value formats a mapping declares.

Two forms of mapping (``mappings/README.md`` documents every key):

- ``format: flat`` (:class:`FlatMapping`): one row per lead, outcome in a column (most CRM
  exports and public lead datasets);
- ``format: tables`` (:class:`TablesMapping`): several files renamed onto the canonical tables of
  :mod:`features.contract`, with constants for columns the export lacks.

Mappings are validated with frozen pydantic models (``extra="forbid"``): a misspelled key or an
unknown canonical column is one :class:`UserError` line naming the mapping file, the key or
column, and the rule. Values that cannot be parsed in the declared formats (:func:`strict_numbers`,
:func:`strict_timestamps`) are one line naming the file, column, count of bad rows and examples.

YAML is read with 1.2 booleans: ``yes``/``no``/``on``/``off`` stay strings (``positive: [yes]``
means the text ``yes``); only ``true``/``false`` are booleans.
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from features import contract
from features.errors import UserError

MAX_EXAMPLES = 3
"""Distinct bad values quoted in a 'cannot be parsed' error."""

Value = str | int | float | bool
"""A YAML scalar in a mapping (outcome values, constants)."""

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
CANONICAL_LEAD_ATTRIBUTES = contract.LEAD_ATTRIBUTES
"""Canonical lead columns a flat export may carry as features (e.g. ``country``; an export's
``Country`` is the same column by :func:`features.contract.canonical_name`'s rule)."""


# ----------------------------------------------------------------------------- YAML
class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 booleans (``yes``/``no``/``on``/``off`` are text)."""


_BOOL_TAG = "tag:yaml.org,2002:bool"
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _BOOL_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


# ----------------------------------------------------------------------------- mapping models
class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _listify(value: Any) -> Any:
    """A single value where a list is expected is a one-item list (`positive: yes`)."""
    return [value] if isinstance(value, str | int | float) else value


def _listify_each(value: Any) -> Any:
    """``where: {Stage: Won}`` is ``where: {Stage: [Won]}``."""
    if isinstance(value, Mapping):
        return {key: _listify(item) for key, item in value.items()}
    return value


Where = dict[str, Annotated[tuple[Value, ...], Field(min_length=1)]]
"""``where``: export column → the values a row must hold there to be kept (all columns)."""
ValueMap = dict[str, dict[Value, Value | None]]
"""``values``: column → {export value: value written}; ``null`` writes a missing value."""


class ReadOptions(_Model):
    """How to read an export file (CSV options are ignored for Parquet, except ``na_values``)."""

    sep: str | None = None
    """Field delimiter; sniffed when absent."""
    encoding: str | None = None
    """Text encoding; UTF-8 (with or without BOM), then latin-1, when absent."""
    na_values: tuple[str, ...] = ()
    """Texts that mean 'missing' in every column (empty cells always do)."""
    decimal: Literal[".", ","] = "."
    """Decimal mark of numeric columns; thousands separators of the other kind are accepted."""
    timestamp_format: str | None = None
    """strftime format of time columns (e.g. ``%d/%m/%Y %H:%M``); ISO 8601 when absent."""
    timezone: str | None = None
    """IANA zone of times without an offset (default UTC); all times are stored in UTC."""

    _lists = field_validator("na_values", mode="before")(_listify)

    @field_validator("sep")
    @classmethod
    def _one_character(cls, value: str | None) -> str | None:
        if value is not None and len(value) != 1:
            raise ValueError(f"sep must be one character, not {value!r}")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                zoneinfo.ZoneInfo(value)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {value!r} (IANA name expected)") from None
        return value


class Outcome(_Model):
    """One outcome of a flat export: which column, which of its values are positive."""

    column: str | None = None
    positive: tuple[Value, ...] = ()
    negative: tuple[Value, ...] | None = None

    _lists = field_validator("positive", "negative", mode="before")(_listify)

    @model_validator(mode="after")
    def _values(self) -> Outcome:
        if self.column is not None and not self.positive:
            raise ValueError(f"outcome column {self.column!r} needs `positive` values")
        overlap = _texts(self.positive) & _texts(self.negative or ())
        if overlap:
            raise ValueError(f"values {sorted(overlap)} are both positive and negative")
        return self


IdentityField = Literal[contract.IDENTITY_FIELDS]  # type: ignore[valid-type]


class FlatMapping(_Model):
    """One row per lead, outcome(s) in columns."""

    format: Literal["flat"]
    read: ReadOptions = ReadOptions()
    id: str | None = None
    created_at: str | None = None
    order: Literal["file", "random"] | None = None
    outcome: Annotated[dict[str, Outcome], Field(min_length=1)]
    categorical: tuple[str, ...] = ()
    numeric: tuple[str, ...] = ()
    post_outcome: tuple[str, ...] = ()
    identity: dict[IdentityField, str] = Field(default_factory=dict)
    """Identity field (``first_name``, ``email``…) → export column: carried into the queue for
    sales, never a feature."""
    where: Where = Field(default_factory=dict)
    """Export column → values: only rows holding one of them (in every column) are imported."""
    values: ValueMap = Field(default_factory=dict)
    """Categorical or numeric column → {export value: value}, applied before typing."""
    labels: dict[str, Annotated[str, Field(pattern=r"\S")]] = Field(default_factory=dict)
    """Categorical or numeric column → the words reasons use for it (``nr.employed``:
    ``employed in the economy (thousands)``); without one, the column's name is de-jargoned."""
    engagement: tuple[str, ...] = ()
    """Declared columns that say what the lead *did* (contacts, calls, last outcome): they count
    on the engagement axis; every other feature column is fit (who the lead is)."""

    _lists = field_validator("categorical", "numeric", "post_outcome", "engagement", mode="before")(
        _listify
    )
    _where = field_validator("where", mode="before")(_listify_each)

    @field_validator("outcome")
    @classmethod
    def _targets(cls, value: dict[str, Outcome]) -> dict[str, Outcome]:
        for name in value:
            if not _NAME.match(name):
                raise ValueError(f"target name {name!r} must be lowercase letters, digits and _")
        if not any(outcome.column for outcome in value.values()):
            raise ValueError("no outcome has a column: there is nothing to learn from")
        return value

    @model_validator(mode="after")
    def _roles(self) -> FlatMapping:
        if self.created_at is None and self.order is None:
            raise ValueError(
                "without `created_at`, say how rows are ordered: `order: file` (row order is "
                "time order) or `order: random`"
            )
        if self.created_at is not None and self.order is not None:
            raise ValueError("`order` applies only without `created_at` (times give the order)")
        roles: dict[str, str] = {}

        def claim(name: str, role: str) -> None:
            if name in roles:
                raise ValueError(f"column {name!r} is both {roles[name]} and {role}")
            roles[name] = role

        for key in ("id", "created_at"):
            name = getattr(self, key)
            if name is not None:
                claim(name, key)
        outcome_columns = {o.column for o in self.outcome.values() if o.column is not None}
        for name in sorted(outcome_columns):  # one column may define several targets
            claim(name, "an outcome")
        for role in ("categorical", "numeric", "post_outcome"):
            for name in getattr(self, role):
                claim(name, role)
        for field, name in self.identity.items():
            claim(name, f"identity {field}")
        reserved = {"lead_id", "created_at"} | {f"outcome_{target}" for target in self.outcome}
        written: dict[str, str] = {}
        for name in (*self.categorical, *self.numeric):
            if name.strip().casefold() in reserved:
                raise ValueError(
                    f"feature column {name!r} would overwrite the column leadscore writes under "
                    "that name (use `id` / `created_at` for the lead's id and creation time)"
                )
            canonical = contract.canonical_name(name, contract.LEADS)
            if canonical is not None:
                if canonical not in CANONICAL_LEAD_ATTRIBUTES:
                    raise ValueError(
                        f"column {name!r} is the canonical lead column {canonical!r} "
                        f"({contract.LEADS.column(canonical).description}), which a flat import "
                        "cannot fill"
                    )
                if name in self.numeric:
                    raise ValueError(
                        f"column {name!r} is the canonical lead column {canonical!r}, which is "
                        "text: declare it categorical"
                    )
            target = self.written_name(name)
            if target in written:
                raise ValueError(
                    f"columns {written[target]!r} and {name!r} are both the canonical lead "
                    f"column {target!r}; declare one of them"
                )
            written[target] = name
        for role in ("values", "labels", "engagement"):
            for key in getattr(self, role):
                if self.feature_of(key) is None:
                    raise ValueError(
                        f"{role}: {key!r} is not a declared categorical or numeric column; "
                        f"those are {[*self.categorical, *self.numeric]}"
                    )
        return self

    @staticmethod
    def written_name(name: str) -> str:
        """The name a declared feature column is written under: the canonical attribute it
        stands for (``Country`` → ``country``), else its export name."""
        return contract.lead_attribute(name) or name

    def feature_of(self, key: str) -> str | None:
        """The declared feature column (export name) a ``values`` key names: the export name
        itself, or a canonical attribute written under that name."""
        for name in (*self.categorical, *self.numeric):
            if key == name or self.written_name(key) == self.written_name(name):
                return name
        return None

    def written_labels(self) -> dict[str, str]:
        """The ``labels``, by the name each column is written under (the import manifest's)."""
        out: dict[str, str] = {}
        for key, label in self.labels.items():
            name = self.feature_of(key)
            if name is not None:
                out[self.written_name(name)] = label.strip()
        return out

    def written_engagement(self) -> list[str]:
        """The ``engagement`` columns, by the name each is written under (the manifest's)."""
        names = (self.feature_of(key) for key in self.engagement)
        return [self.written_name(name) for name in names if name is not None]

    def value_map(self, name: str) -> dict[Value, Value | None] | None:
        """The ``values`` map of the declared feature column ``name`` (None: there is none)."""
        for key, table in self.values.items():
            if self.feature_of(key) == name:
                return table
        return None

    @property
    def has_timestamps(self) -> bool:
        return self.created_at is not None


class TableSource(_Model):
    """One export file feeding one canonical table."""

    file: str
    read: ReadOptions | None = None
    """Overrides the mapping's top-level ``read`` for this file."""
    columns: dict[str, str] = Field(default_factory=dict)
    """Canonical column name → export column name."""
    constants: dict[str, Value] = Field(default_factory=dict)
    """Canonical column name → the value every row gets."""
    extra: tuple[str, ...] = ()
    """Export columns kept under their own names (tables that allow extra columns only)."""
    where: Where = Field(default_factory=dict)
    """Export column → values: only rows holding one of them (in every column) are taken."""
    values: ValueMap = Field(default_factory=dict)
    """Canonical column → {export value: canonical value} (trimmed, case-insensitive)."""

    _lists = field_validator("extra", mode="before")(_listify)
    _where = field_validator("where", mode="before")(_listify_each)


class TablesMapping(_Model):
    """Several files renamed onto the canonical tables."""

    format: Literal["tables"]
    read: ReadOptions = ReadOptions()
    tables: Annotated[dict[str, tuple[TableSource, ...]], Field(min_length=1)]

    @field_validator("tables", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            return {
                name: [entry] if isinstance(entry, Mapping) else entry
                for name, entry in value.items()
            }
        return value

    @model_validator(mode="after")
    def _against_contract(self) -> TablesMapping:
        for name, sources in self.tables.items():
            if name not in contract.TABLES:
                raise ValueError(
                    f"tables.{name}: unknown table; canonical tables are {list(contract.TABLES)}"
                )
            spec = contract.TABLES[name]
            for source in sources:
                for key, names in (("columns", source.columns), ("constants", source.constants)):
                    for column in names:
                        if column not in spec.column_names:
                            raise ValueError(
                                f"tables.{name}.{key}: {column!r} is not a column of the "
                                f"canonical table {name}; its columns are "
                                f"{list(spec.column_names)}"
                            )
                both = sorted(set(source.columns) & set(source.constants))
                if both:
                    raise ValueError(f"tables.{name}: {both} in both `columns` and `constants`")
                for column, table in source.values.items():
                    if column not in spec.column_names:
                        raise ValueError(
                            f"tables.{name}.values: {column!r} is not a column of the canonical "
                            f"table {name}; its columns are {list(spec.column_names)}"
                        )
                    if column in source.constants:
                        raise ValueError(
                            f"tables.{name}.values: {column!r} is a constant; map its value "
                            "in `constants`"
                        )
                    allowed = spec.column(column).allowed
                    wrong = [
                        value
                        for value in table.values()
                        if allowed is not None
                        and value is not None
                        and _text(value) not in _texts(allowed)
                    ]
                    if wrong:
                        raise ValueError(
                            f"tables.{name}.values.{column}: {wrong[0]!r} is not a canonical "
                            f"{column}; use one of {list(allowed or ())}"
                        )
                if source.extra and not spec.extra_columns_allowed:
                    raise ValueError(
                        f"tables.{name}.extra: the canonical table {name} takes no extra columns"
                    )
                clash = sorted(
                    extra for extra in source.extra if contract.canonical_name(extra, spec)
                )
                if clash:
                    raise ValueError(
                        f"tables.{name}.extra: {clash} are canonical columns; map them in `columns`"
                    )
        return self


Mapping_ = FlatMapping | TablesMapping
_FORMATS: dict[str, type[FlatMapping] | type[TablesMapping]] = {
    "flat": FlatMapping,
    "tables": TablesMapping,
}


def _describe(error: ValidationError, path: Path, raw: Mapping[str, Any]) -> str:
    first = error.errors()[0]
    parts = list(first["loc"])
    # `tables.<name>` may be one entry or a list; show the index only for lists.
    if len(parts) >= 3 and parts[0] == "tables" and isinstance(parts[2], int):
        entry = (raw.get("tables") or {}).get(parts[1])
        if isinstance(entry, Mapping):
            del parts[2]
    key = ".".join(f"[{part}]" if isinstance(part, int) else str(part) for part in parts)
    key = key.replace(".[", "[")
    if first["type"] == "extra_forbidden":
        return f"{path}: unknown key '{key}' (misspelled?)"
    if first["type"] == "missing":
        return f"{path}: '{key}' is required"
    message = first["msg"].removeprefix("Value error, ")
    return f"{path}: '{key}': {message}" if key else f"{path}: {message}"


def parse_mapping(raw: object, path: Path = Path("mapping.yaml")) -> Mapping_:
    """Validate an already-parsed mapping; any problem is a one-line :class:`UserError`."""
    if not isinstance(raw, Mapping):
        raise UserError(f"{path}: a mapping must be a YAML mapping with a `format` key")
    kind = raw.get("format")
    if kind is None:
        raise UserError(f"{path}: 'format' is required ({' or '.join(_FORMATS)})")
    model = _FORMATS.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise UserError(f"{path}: unknown format {kind!r}; use {' or '.join(map(repr, _FORMATS))}")
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        raise UserError(_describe(error, path, raw)) from None


def load_mapping(path: Path | str) -> Mapping_:
    """Read and validate a mapping file."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is a directory, not a mapping file")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: mapping file not found") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: mapping file is not UTF-8 text") from None
    try:
        raw = yaml.load(text, Loader=_Loader)  # a SafeLoader subclass
    except yaml.YAMLError as error:
        where = ""
        mark = getattr(error, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise UserError(f"{path}: not valid YAML{where} ({problem})") from None
    return parse_mapping(raw, path)


# ----------------------------------------------------------------------------- values
def _texts(values: Iterable[Value]) -> set[str]:
    return {_text(value) for value in values}


def _text(value: Value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value).strip().casefold()


def _number(value: Value) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except ValueError:
        return None


def examples(values: pd.Series) -> str:
    """Up to :data:`MAX_EXAMPLES` distinct values, quoted, for an error message."""
    distinct = pd.unique(values.dropna())[:MAX_EXAMPLES]
    return ", ".join(repr(str(value)) for value in distinct)


def in_rows(bad: int, total: int) -> str:
    """``in <bad> of <total> rows`` for an error message."""
    return f"in {bad:,} of {total:,} rows"


def as_text(values: pd.Series) -> pd.Series:
    """Cells as stripped text (nulls and empty strings → null)."""
    if pd.api.types.is_bool_dtype(values):
        text = values.map({True: "true", False: "false"})
    elif pd.api.types.is_string_dtype(values) or values.dtype == object:
        text = values
    else:
        text = values.astype(object).where(values.notna(), None)
    text = text.astype("str").where(text.notna())
    text = text.str.strip()
    return text.where(text != "")


_YES_NO = ("yes", "no", "y", "n", "true", "false")


def strict_numbers(values: pd.Series, decimal: str, where: str) -> pd.Series:
    """Numbers as float64, strictly as the mapping declares them: ``1,234.5`` (thousands
    separators), ``1e3``, ``-7``; ``decimal=","`` reads ``1.234,5``. Anything else is a
    :class:`UserError` naming ``where`` and the rows (the validator's
    :func:`~features.validation.coercion.lenient_numbers` quarantines such rows instead)."""
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return values.astype("float64")
    text = as_text(values)
    group = "," if decimal == "." else "."
    separators = f"[{re.escape(group)} '\u00a0\u202f]"
    grouped = text.str.fullmatch(
        rf"[+-]?\d{{1,3}}(?:{separators}\d{{3}})+(?:{re.escape(decimal)}\d*)?", na=False
    )
    cleaned = text.where(~grouped, text.str.replace(separators, "", regex=True))
    stray = ~grouped & cleaned.str.contains(re.escape(group), regex=True, na=False)
    if decimal == ",":
        cleaned = cleaned.str.replace(",", ".", regex=False)
    numbers = pd.to_numeric(cleaned.where(~stray), errors="coerce").astype("float64")
    bad = text.notna() & (numbers.isna() | np.isinf(numbers))
    if bad.any():
        hint = ""
        if decimal == "." and text[bad].str.contains(",", regex=False).any():
            hint = " (decimal comma? set read.decimal: ',')"
        elif text[bad].str.casefold().isin(_YES_NO).all():
            hint = (
                " (a yes/no column: declare it categorical or map it with `values`, "
                "e.g. {Yes: 1, No: 0})"
            )
        raise UserError(
            f"{where}: not a number {in_rows(int(bad.sum()), len(values))}, "
            f"e.g. {examples(text[bad])}{hint}"
        )
    return numbers


def strict_timestamps(values: pd.Series, read: ReadOptions, where: str) -> pd.Series:
    """UTC timestamps, strictly in the mapping's declared format (default ISO 8601); naive ones
    are in ``read.timezone`` (default UTC). Unparseable non-empty values are a
    :class:`UserError`; empty ones stay null (validation quarantines them)."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC")
    if pd.api.types.is_datetime64_dtype(values):
        return _localise(values, read.timezone)
    text = as_text(values)
    fmt = read.timestamp_format or "ISO8601"
    try:
        if read.timezone is None:
            parsed = pd.to_datetime(text, format=fmt, errors="coerce", utc=True)
        else:
            parsed = pd.to_datetime(text, format=fmt, errors="coerce")
            parsed = (
                parsed.dt.tz_convert("UTC")
                if isinstance(parsed.dtype, pd.DatetimeTZDtype)
                else _localise(parsed, read.timezone)
            )
    except (ValueError, TypeError) as error:
        raise UserError(
            f"{where}: times cannot be read ({str(error).splitlines()[0]}); times with and "
            "without an offset cannot be mixed when read.timezone is set"
        ) from None
    bad = text.notna() & parsed.isna()
    if bad.any():
        expected, hint = (
            (f"in the format {read.timestamp_format!r}", "")
            if read.timestamp_format
            else ("an ISO 8601 time", " (set read.timestamp_format, e.g. '%d/%m/%Y %H:%M')")
        )
        raise UserError(
            f"{where}: not {expected} {in_rows(int(bad.sum()), len(values))}, "
            f"e.g. {examples(text[bad])}{hint}"
        )
    return parsed.astype("datetime64[us, UTC]")


def _localise(values: pd.Series, timezone: str | None) -> pd.Series:
    if timezone is None:
        return values.dt.tz_localize("UTC")
    localised = values.dt.tz_localize(
        timezone,
        ambiguous=np.zeros(len(values), dtype=bool),  # the repeated hour: standard time
        nonexistent="shift_forward",
    )
    return localised.dt.tz_convert("UTC")


def match_values(values: pd.Series, accepted: Sequence[Value]) -> np.ndarray:
    """Which cells equal one of ``accepted``: text compared trimmed and case-insensitively,
    numbers numerically (``1`` matches ``1.0``), ``true``/``false`` as text."""
    text = as_text(values).str.casefold()
    numbers = pd.to_numeric(text, errors="coerce")
    hit = np.zeros(len(values), dtype=bool)
    for value in accepted:
        hit |= (text == _text(value)).fillna(False).to_numpy(dtype=bool)
        number = _number(value)
        if number is not None:
            hit |= (numbers == number).fillna(False).to_numpy(dtype=bool)
    return hit


def _written(value: Value | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def keep_rows(
    frame: pd.DataFrame, where: Mapping[str, Sequence[Value]], label: str
) -> pd.DataFrame:
    """The rows of ``frame`` holding, in every ``where`` column, one of its values (compared as
    :func:`match_values` does), renumbered from 0. Keeping no row at all is a
    :class:`UserError`: the filter is then surely wrong (a misspelled value)."""
    if not where:
        return frame
    keep = np.ones(len(frame), dtype=bool)
    for column, accepted in where.items():
        hits = match_values(frame[column], accepted)
        if not hits.any():
            raise UserError(
                f"{label}: no row has one of {list(accepted)} in column {column!r} (where); "
                f"its values are e.g. {examples(as_text(frame[column]))}"
            )
        keep &= hits
    if not keep.any():
        raise UserError(f"{label}: no row passes every condition of `where` {dict(where)}")
    return frame[keep].reset_index(drop=True)


def map_values(
    values: pd.Series,
    table: Mapping[Value, Value | None],
    allowed: Sequence[str] | None,
    where: str,
) -> pd.Series:
    """Cells replaced per a ``values`` map (export value → value; keys compared trimmed and
    case-insensitively, numbers as their text), as text. With a closed vocabulary ``allowed``
    (``sales_events.stage``), a value already canonical is kept in its canonical spelling and
    any other unmapped value is a :class:`UserError` with the count and examples; without one,
    unmapped values are kept as they are."""
    text = as_text(values)
    folded = text.str.casefold()
    lookup = {_text(key): _written(value) for key, value in table.items()}
    mapped = folded.isin(list(lookup)).fillna(False).astype(bool)
    result = text.astype(object)
    result[mapped] = folded[mapped].map(lookup)
    if allowed is not None:
        canonical = {value.casefold(): value for value in allowed}
        known = ~mapped & folded.isin(list(canonical)).fillna(False).astype(bool)
        stray = text.notna() & ~mapped & ~known
        if stray.any():
            raise UserError(
                f"{where}: value neither mapped in `values` nor one of {list(allowed)} "
                f"{in_rows(int(stray.sum()), len(values))}, e.g. {examples(text[stray])}"
            )
        result[known] = folded[known].map(canonical)
    return result.astype("str").where(result.notna())
