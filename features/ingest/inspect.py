"""``leadscore inspect``: profile an unknown CRM export and draft the mapping ``leadscore import``
reads (:mod:`features.ingest.mapping`), every decision commented for the person who reviews it.

Per column: the type guessed (number, timestamp, boolean, text), the missing share, the distinct
count, examples, and the role it seems to play: the lead's **id**, its **creation time**, a likely
**outcome**, a **post-outcome** column (written after, or from, the outcome: a stage, a status, a
rating, a later date, a call's duration, a counter running up to the export date), a
**reference** to another record, a **feature**, or nothing usable. The guesses come from names and
values only, so the draft says why it chose each one; a person decides.

A file gives a ``format: flat`` draft (outcome in a column). A directory gives a ``format: tables``
draft when one file looks like the leads and others refer to them (deals/opportunities become
sales events, campaign members or activities become touches, campaigns become campaigns);
otherwise the largest file's flat draft.

Files are read with the importer's own reader (:func:`features.ingest.readers.read_csv_file`), so
delimiter, encoding and missing values behave exactly as in ``leadscore import``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from features import contract
from features.errors import UserError
from features.ingest.mapping import ReadOptions, as_text, strict_numbers, strict_timestamps
from features.ingest.readers import file_kind, read_csv_file, read_parquet_file, sniff_csv
from features.ingest.suspicion import POST_OUTCOME_WORDS, matched_words, name_words

EXAMPLES = 3
"""Distinct example values shown per column."""
FEW_VALUES = 30
"""A column with at most this many distinct values may be an outcome or a stage."""
LEAK_AUC = 0.9
"""A feature that alone separates the likely outcome this well is declared post-outcome."""
SUSPICIOUS_AUC = 0.75
"""... and from this value on, it is kept but flagged in its comment."""
NA_TOKENS: tuple[str, ...] = (
    "unknown",
    "Unknown",
    "N/A",
    "n/a",
    "#N/A",
    "null",
    "NULL",
    "None",
    "Select",
    "-",
    "--",
)
"""Texts exports write for a missing value (not ``NA``: it is Namibia's country code)."""
TIME_FORMATS: tuple[str, ...] = (
    "%d/%m/%Y %H:%M",
    "%m/%d/%Y %H:%M",
    "%d/%m/%Y",
    "%m/%d/%Y",
    "%d.%m.%Y %H:%M",
    "%d.%m.%Y",
    "%m/%d/%Y %I:%M %p",
)
"""Non-ISO time formats tried, in this order, when ISO 8601 does not read a column."""

ID_WORDS = {"id", "key", "uuid", "guid"}
CREATED_WORDS = {
    "create",
    "created",
    "creation",
    "capture",
    "captured",
    "signup",
    "registered",
    "submitted",
    "first",
}
OUTCOME_NAME_WORDS = {
    "y",
    "target",
    "outcome",
    "label",
    "converted",
    "isconverted",
    "won",
    "iswon",
    "subscribed",
    "purchased",
    "success",
    "churn",
    "closed",
}
POSITIVE_WORDS = {
    "yes",
    "true",
    "1",
    "won",
    "win",
    "customer",
    "converted",
    "evangelist",
    "subscribed",
    "success",
    "purchased",
    "signed",
    "paid",
}
NEGATION_WORDS = {"no", "not", "non", "false", "0", "lost", "unqualified", "disqualified", "un"}
STAGE_WORDS = ("stage", "status", "lifecycle")
EXTRA_POST_WORDS = (
    "lifecycle",
    "duration",
    "became",
    "close",
    "result",
    "outcome",
    "rating",
    "talk time",
    "call length",
)
COUNTER_WORDS = {"count", "total", "sessions", "pageviews", "visits", "views", "clicks", "opens"}
REFERENCE_WORDS = {
    "owner",
    "campaign",
    "account",
    "contact",
    "lead",
    "opportunity",
    "user",
    "company",
    "associated",
}

LEAD_SYNONYMS: dict[str, tuple[str, ...]] = {
    "source": ("source", "leadsource", "originalsource", "lead source"),
    "job_title": ("jobtitle", "title", "job_title"),
    "country": ("country", "countryregion"),
    "department": ("department",),
    "seniority": ("seniority",),
}
"""Canonical lead attributes and the export names (letters and digits, case-folded) that are
them in a tables draft."""
ACCOUNT_SYNONYMS: dict[str, tuple[str, ...]] = {
    "industry": ("industry",),
    "employees": ("numberofemployees", "employees", "companysize", "employeecount"),
    "annual_revenue": ("annualrevenue", "revenue", "companyrevenue"),
}
LEADS_FILE_WORDS = ("lead", "contact", "prospect", "mql", "person", "people", "signup")
CAMPAIGN_FILE_WORDS = ("campaign",)
MEMBER_FILE_WORDS = ("member", "activit", "touch", "engagement", "event", "response", "visit")


# ----------------------------------------------------------------------------- profiles
@dataclass(frozen=True)
class ColumnProfile:
    """One column of an export: what it holds and the role the draft gives it."""

    name: str
    kind: str
    """``number``, ``timestamp``, ``boolean``, ``text`` or ``empty``."""
    missing_share: float
    distinct: int
    examples: tuple[str, ...]
    role: str = "feature"
    """``id``, ``created_at``, ``outcome``, ``post_outcome``, ``reference``, ``feature`` or
    ``ignore``."""
    reason: str = ""
    """Why: the comment the draft writes beside the column."""
    values: tuple[str, ...] = ()
    """The distinct values, when there are at most :data:`FEW_VALUES`."""
    positive: tuple[str, ...] = ()
    """For an outcome candidate: the values read as positive."""
    timestamp_format: str | None = None
    """For a timestamp column not in ISO 8601: the strftime format that reads it."""
    unique: bool = False

    @property
    def categorical(self) -> bool:
        return self.kind != "number"

    def describe(self) -> str:
        """``text, 12 values, 0.4 % missing, e.g. 'a', 'b'`` for a comment."""
        examples = ", ".join(repr(value) for value in self.examples)
        return (
            f"{self.kind}, {self.distinct:,} value{'s' if self.distinct != 1 else ''}, "
            f"{100 * self.missing_share:.1f} % missing" + (f", e.g. {examples}" if examples else "")
        )


@dataclass(frozen=True)
class FileProfile:
    """One export file: how it reads and its columns."""

    path: Path
    rows: int
    sep: str | None
    na_values: tuple[str, ...]
    columns: tuple[ColumnProfile, ...]
    frame: pd.DataFrame = field(repr=False, compare=False)
    """The file as read (text, nulls for missing values): the tables draft looks up
    references and filters in it."""

    def column(self, name: str) -> ColumnProfile:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(name)

    def with_role(self, *roles: str) -> list[ColumnProfile]:
        return [column for column in self.columns if column.role in roles]

    @property
    def id(self) -> ColumnProfile | None:
        found = self.with_role("id")
        return found[0] if found else None

    @property
    def created_at(self) -> ColumnProfile | None:
        found = self.with_role("created_at")
        return found[0] if found else None

    @property
    def outcomes(self) -> list[ColumnProfile]:
        """Outcome candidates, the likeliest first (stage columns are post-outcome but may
        define an outcome too)."""
        found = [c for c in self.columns if c.positive and c.missing_share == 0]
        return sorted(found, key=_outcome_rank)


def _outcome_rank(column: ColumnProfile) -> tuple[int, int, str]:
    named = bool(set(name_words(column.name)) & OUTCOME_NAME_WORDS)
    return (0 if column.role == "outcome" else 1, 0 if named else 1, column.name)


def _normal(name: str) -> str:
    return re.sub(r"[^0-9a-z]+", "", name.casefold())


def _words(name: str) -> set[str]:
    return set(name_words(name))


def _read(path: Path) -> tuple[pd.DataFrame, str | None]:
    if file_kind(path) == "parquet":
        frame = read_parquet_file(path)
        text = pd.DataFrame({str(name): as_text(frame[name]) for name in frame.columns})
        return text, None
    layout = sniff_csv(path)
    return read_csv_file(path), layout.delimiter


def _na_tokens(frame: pd.DataFrame) -> tuple[str, ...]:
    """The :data:`NA_TOKENS` that appear in at least one column beside other values."""
    found = []
    for token in NA_TOKENS:
        for name in frame.columns:
            column = frame[name]
            hits = (column == token).sum()
            if hits and hits < column.notna().sum():
                found.append(token)
                break
    return tuple(found)


def _kind(values: pd.Series) -> tuple[str, str | None]:
    """The type of a text column's non-missing cells, with a strftime format for non-ISO
    times."""
    present = values.dropna()
    if present.empty:
        return "empty", None
    if set(present.str.strip().str.casefold().unique()) <= {"true", "false"}:
        return "boolean", None
    try:
        strict_numbers(present, ".", "inspect")
        return "number", None
    except UserError:
        pass
    if not present.str.contains(r"\d", regex=True).all():
        return "text", None
    for fmt in (None, *TIME_FORMATS):
        try:
            strict_timestamps(present, ReadOptions(timestamp_format=fmt), "inspect")
        except UserError:
            continue
        return "timestamp", fmt
    return "text", None


def _positives(values: Sequence[str]) -> tuple[str, ...]:
    """The values that read as a success (``yes``, ``Closed Won``, ``Customer``), none that
    read as a negation (``Closed - Not Converted``, ``Closed Lost``)."""
    found = []
    for value in values:
        words = set(name_words(value)) | {value.strip().casefold()}
        if words & POSITIVE_WORDS and not words & NEGATION_WORDS:
            found.append(value)
    if not found and len(values) == 2 and set(values) == {"0", "1"}:
        found = ["1"]
    return tuple(found)


def profile_frame(frame: pd.DataFrame) -> tuple[ColumnProfile, ...]:
    """Profile every column of an export read as text, and give each a role (see module doc)."""
    n = len(frame)
    bare: list[ColumnProfile] = []
    for name in frame.columns:
        values = frame[name]
        present = values.dropna()
        kind, fmt = _kind(values)
        distinct = int(present.nunique())
        few = tuple(sorted(map(str, present.unique()))) if distinct <= FEW_VALUES else ()
        bare.append(
            ColumnProfile(
                name=str(name),
                kind=kind,
                missing_share=round(1 - len(present) / n, 4) if n else 0.0,
                distinct=distinct,
                examples=tuple(str(v) for v in present.unique()[:EXAMPLES]),
                values=few,
                timestamp_format=fmt,
                unique=distinct == len(present) and len(present) == n,
            )
        )
    return _assign_roles(bare, frame)


def _assign_roles(columns: list[ColumnProfile], frame: pd.DataFrame) -> tuple[ColumnProfile, ...]:
    n = len(frame)
    roles: dict[str, tuple[str, str, tuple[str, ...]]] = {}

    def give(column: ColumnProfile, role: str, reason: str, positive: tuple[str, ...] = ()) -> None:
        roles[column.name] = (role, reason, positive)

    # The id: a complete, unique column named like one (else any complete unique text column).
    ids = [
        c
        for c in columns
        if c.unique and c.kind in ("text", "number") and _words(c.name) & ID_WORDS
    ]
    if ids:
        give(ids[0], "id", f"unique on all {n:,} rows, named like an id")
    times = [c for c in columns if c.kind == "timestamp"]
    created = [c for c in times if c.missing_share == 0 and _words(c.name) & CREATED_WORDS]
    if not created:
        created = [c for c in times if c.missing_share == 0][:1]
    if created:
        give(created[0], "created_at", "complete timestamp named like a creation time")
    has_time = bool(created)
    for column in columns:
        if column.name in roles:
            continue
        words = _words(column.name)
        post = tuple(
            dict.fromkeys(matched_words(column.name, (*POST_OUTCOME_WORDS, *EXTRA_POST_WORDS)))
        )
        if column.kind == "empty":
            give(column, "ignore", "empty in every row")
        elif column.distinct <= 1:
            give(column, "ignore", "one value only: nothing to learn")
        elif column.kind == "timestamp":
            give(column, "post_outcome", "a later date: known only once it happened")
        elif words & OUTCOME_NAME_WORDS and 2 <= column.distinct <= 2 + int(
            column.missing_share > 0
        ):
            positive = _positives(column.values)
            give(column, "outcome", "two values, named like an outcome", positive)
        elif post:
            quoted = ", ".join(f"'{w}'" for w in post)
            positive = _positives(column.values) if column.values else ()
            give(
                column,
                "post_outcome",
                f"its name says {quoted}: written after (or from) the outcome",
                positive,
            )
        elif has_time and column.kind == "number" and words & COUNTER_WORDS:
            give(
                column,
                "post_outcome",
                "a counter running up to the export date: it includes what happened after "
                "the outcome",
            )
        elif words & ID_WORDS or (
            words & REFERENCE_WORDS and column.kind == "text" and not column.values
        ):
            give(column, "reference", "a reference to another record, not a feature")
        elif column.kind == "text" and column.distinct > max(50, 0.5 * n):
            give(column, "ignore", "free text or an identifier: almost every row differs")
        elif column.kind == "number":
            give(column, "feature", "numeric feature")
        else:
            give(column, "feature", "categorical feature")
    profiled = [
        _replace(column, *roles.get(column.name, ("feature", "", ()))) for column in columns
    ]
    return _flag_leaks(tuple(profiled), frame)


def _replace(
    column: ColumnProfile, role: str, reason: str, positive: tuple[str, ...]
) -> ColumnProfile:
    return ColumnProfile(
        name=column.name,
        kind=column.kind,
        missing_share=column.missing_share,
        distinct=column.distinct,
        examples=column.examples,
        role=role,
        reason=reason,
        values=column.values,
        positive=positive,
        timestamp_format=column.timestamp_format,
        unique=column.unique,
    )


def _auc(score: np.ndarray, label: np.ndarray) -> float | None:
    """ROC AUC of ``score`` for ``label`` (Mann-Whitney, ties averaged), either direction."""
    positives = int(label.sum())
    negatives = len(label) - positives
    if not positives or not negatives:
        return None
    ranks = pd.Series(score).rank().to_numpy()
    auc = (ranks[label].sum() - positives * (positives + 1) / 2) / (positives * negatives)
    return float(max(auc, 1 - auc))


def _flag_leaks(
    columns: tuple[ColumnProfile, ...], frame: pd.DataFrame
) -> tuple[ColumnProfile, ...]:
    """Features that alone separate the likely outcome too well: post-outcome above
    :data:`LEAK_AUC`, flagged in their comment above :data:`SUSPICIOUS_AUC`."""
    candidates = sorted(
        (c for c in columns if c.positive and c.missing_share == 0), key=_outcome_rank
    )
    if not candidates:
        return columns
    outcome = candidates[0]
    text = as_text(frame[outcome.name]).str.casefold()
    label = text.isin([value.casefold() for value in outcome.positive]).to_numpy()
    flagged = []
    for column in columns:
        auc = None
        if column.role == "feature":
            values = frame[column.name]
            if column.kind == "number":
                numbers = strict_numbers(values, ".", "inspect").to_numpy()
                known = ~np.isnan(numbers)
                auc = _auc(numbers[known], label[known]) if known.sum() > 10 else None
            elif column.distinct <= FEW_VALUES:
                codes = as_text(values).fillna("")
                rate = pd.Series(label).groupby(codes.to_numpy()).transform("mean").to_numpy()
                auc = _auc(rate, label)
        if auc is not None and auc >= LEAK_AUC:
            column = _replace(
                column,
                "post_outcome",
                f"alone it separates {outcome.name!r} with ROC AUC {auc:.2f}: surely written "
                "from the outcome",
                column.positive,
            )
        elif auc is not None and auc >= SUSPICIOUS_AUC:
            column = _replace(
                column,
                column.role,
                f"{column.reason}; SUSPICIOUS: alone it separates {outcome.name!r} with ROC AUC "
                f"{auc:.2f}: declare it post_outcome if it is known only after the outcome",
                column.positive,
            )
        flagged.append(column)
    return tuple(flagged)


def profile_file(path: Path | str) -> FileProfile:
    """Read one export (CSV, ``.csv.gz``, Parquet) as ``leadscore import`` would and profile it;
    missing-value texts (``unknown``, ``N/A``…) found in it are read as missing."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: file not found")
    if file_kind(path) is None:
        raise UserError(f"{path}: not a CSV or Parquet file (.csv, .csv.gz, .tsv, .txt, .parquet)")
    frame, sep = _read(path)
    tokens = _na_tokens(frame)
    if tokens:
        frame = frame.where(~frame.isin(list(tokens)))
    return FileProfile(path, len(frame), sep, tokens, profile_frame(frame), frame)


# ----------------------------------------------------------------------------- YAML text
def q(value: object) -> str:
    """A YAML scalar, always quoted (``yes``, ``1``, ``Country/Region`` stay text)."""
    return json.dumps(str(value), ensure_ascii=False)


def _flow(values: Iterable[object]) -> str:
    return "[" + ", ".join(q(value) for value in values) + "]"


def _mapping_flow(items: dict[str, object]) -> str:
    parts = []
    for key, value in items.items():
        # Canonical keys (`lead_id`, `stage`) stay bare; export names and values are quoted, so
        # `yes`, `1` or `Closed Won` stay text.
        key = key if re.fullmatch(r"[a-z_]+", key) else q(key)
        if isinstance(value, dict):
            parts.append(f"{key}: {_mapping_flow(value)}")
        elif isinstance(value, list | tuple):
            parts.append(f"{key}: {_flow(value)}")
        else:
            parts.append(f"{key}: {q(value)}")
    return "{" + ", ".join(parts) + "}"


def _read_block(profile: FileProfile) -> dict[str, object]:
    read: dict[str, object] = {}
    if profile.sep is not None and profile.sep != ",":
        read["sep"] = profile.sep
    if profile.na_values:
        read["na_values"] = list(profile.na_values)
    formats = {c.timestamp_format for c in profile.columns if c.kind == "timestamp"} - {None}
    if len(formats) == 1:
        read["timestamp_format"] = formats.pop()
    return read


def _outcome_line(column: ColumnProfile, rows: int, frame: pd.DataFrame) -> str:
    entry: dict[str, object] = {"column": column.name, "positive": list(column.positive)}
    negative = [value for value in column.values if value not in column.positive]
    if negative:
        entry["negative"] = negative
    text = as_text(frame[column.name]).str.casefold()
    share = text.isin([value.casefold() for value in column.positive]).mean()
    return f"converted: {_mapping_flow(entry)}  # {100 * share:.1f} % positive; {column.reason}"


def draft_flat(profile: FileProfile) -> str:
    """The ``format: flat`` draft of one profiled file, every decision commented."""
    lines = [
        f"# Draft mapping by `leadscore inspect` for {profile.path.name} ({profile.rows:,} rows, "
        f"{len(profile.columns)} columns).",
        "# Review every line: the guesses come from column names and values only.",
        f"#   leadscore import --mapping <this file> --input {profile.path} --out data/raw",
        "format: flat",
    ]
    read = _read_block(profile)
    if read:
        why = []
        if "sep" in read:
            why.append(f"fields separated by {profile.sep!r}")
        if "na_values" in read:
            why.append(f"{', '.join(map(repr, profile.na_values))} stand(s) for a missing value")
        if "timestamp_format" in read:
            why.append("times are not ISO 8601")
        lines.append(f"read: {_mapping_flow(read)}  # {'; '.join(why)}")
    ident, created = profile.id, profile.created_at
    if ident is not None:
        lines.append(f"id: {q(ident.name)}  # {ident.reason}")
    else:
        lines.append("id: null  # no complete unique id column: leads are row-1, row-2, …")
    if created is not None:
        lines.append(f"created_at: {q(created.name)}  # {created.reason}; {created.describe()}")
    else:
        lines.append("created_at: null  # no complete timestamp column")
        lines.append(
            "order: file  # without times: `file` if rows are in time order (a time-ordered "
            "split), `random` if not"
        )
    candidates = profile.outcomes
    lines.append("# OUTCOME: what leadscore learns to predict. CHOOSE it: keep one `converted`")
    lines.append(
        "# line (uncomment a candidate instead if it is the right one), keep in `positive`"
    )
    lines.append("# the values that mean a converted lead; an `accepted:` target may be added.")
    lines.append("outcome:")
    if candidates:
        lines.append("  " + _outcome_line(candidates[0], profile.rows, profile.frame))
        for other in candidates[1:]:
            lines.append("  # " + _outcome_line(other, profile.rows, profile.frame))
    else:
        lines.append(
            "  converted: {column: null}  # CHOOSE: no column looks like an outcome; name the "
            "column and its positive values"
        )
    outcome_columns = {candidates[0].name} if candidates else set()
    features = [c for c in profile.with_role("feature") if c.name not in outcome_columns]
    sections = (
        ("categorical", [c for c in features if c.categorical]),
        ("numeric", [c for c in features if not c.categorical]),
        (
            "post_outcome",
            [
                c
                for c in profile.with_role("post_outcome", "outcome")
                if c.name not in outcome_columns
            ],
        ),
    )
    for key, columns in sections:
        if key == "post_outcome":
            lines.append("# Known only after the outcome: checked to exist, never a feature.")
        if not columns:
            lines.append(f"{key}: []")
            continue
        lines.append(f"{key}:")
        for column in columns:
            lines.append(f"  - {q(column.name)}  # {column.reason}; {column.describe()}")
    ignored = [c for c in profile.with_role("reference", "ignore") if c.name not in outcome_columns]
    if ignored:
        lines.append("# Not used:")
        for column in ignored:
            lines.append(f"#   {q(column.name)}: {column.reason}; {column.describe()}")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- tables
@dataclass
class _Entry:
    """One entry of a tables draft (one file feeding one table), with its comments."""

    table: str
    file: str
    columns: dict[str, str]
    comment: str
    constants: dict[str, str] = field(default_factory=dict)
    values: dict[str, dict[str, str]] = field(default_factory=dict)
    where: dict[str, list[str]] = field(default_factory=dict)

    def text(self) -> list[str]:
        body: dict[str, object] = {"file": self.file, "columns": self.columns}
        if self.constants:
            body["constants"] = self.constants
        if self.values:
            body["values"] = self.values
        if self.where:
            body["where"] = self.where
        return [f"    # {self.comment}", f"    - {_mapping_flow(body)}"]


def _synonym(profile: FileProfile, synonyms: dict[str, tuple[str, ...]]) -> dict[str, str]:
    """Canonical column → the file's column that is it by name (first match)."""
    found: dict[str, str] = {}
    for canonical, names in synonyms.items():
        for column in profile.columns:
            if column.role in ("feature",) and _normal(column.name) in {_normal(n) for n in names}:
                found[canonical] = column.name
                break
    return found


def _references(profile: FileProfile, keys: set[str], own: str | None) -> str | None:
    """The column of ``profile`` whose values (nearly all) are among ``keys``."""
    best, best_share = None, 0.0
    for column in profile.columns:
        if column.name == own or column.kind not in ("text", "number"):
            continue
        present = profile.frame[column.name].dropna().astype(str).str.strip()
        if present.empty:
            continue
        share = float(present.isin(keys).mean())
        if share > best_share:
            best, best_share = column.name, share
    return best if best_share >= 0.95 else None


def _partition(profile: FileProfile, date: str) -> tuple[str, list[str]] | None:
    """A filter for the rows where ``date`` is filled: a column whose values on those rows never
    occur on the others (``IsConverted: [true]`` for ``ConvertedDate``); booleans first."""
    filled = profile.frame[date].notna().to_numpy()
    if filled.all():
        return None
    options = []
    for column in profile.columns:
        if column.name == date or not column.values or column.missing_share > 0:
            continue
        cells = profile.frame[column.name].astype(str)
        inside, outside = set(cells[filled]), set(cells[~filled])
        if inside and not inside & outside:
            rank = (
                0
                if column.kind == "boolean"
                else 1
                if _words(column.name) & set(STAGE_WORDS)
                else 2
            )
            options.append((rank, column.name, sorted(inside)))
    if not options:
        return None
    _, name, values = min(options)
    return name, values


def _close_values(column: ColumnProfile) -> dict[str, str]:
    """A stage column's values that mean won or lost (``Closed Won`` → won)."""
    mapped = {}
    for value in column.values:
        words = set(name_words(value))
        if "won" in words or ("closed" in words and "converted" in words and "not" not in words):
            mapped[value] = "won"
        elif "lost" in words or ("closed" in words and "not" in words):
            mapped[value] = "lost"
    return mapped if "won" in mapped.values() else {}


def _event_stage(name: str) -> str | None:
    """The sales stage a lead's own later date marks, by its name."""
    words = _words(name)
    text = " ".join(name_words(name))
    if "customer" in words or "won" in words:
        return "won"
    if "opportunity" in words and "close" not in words:
        return "opportunity"
    if words & {"converted", "accepted"} or "sales qualified" in text or "sql" in words:
        return "accepted"
    return None


def _stage_column(profile: FileProfile) -> tuple[ColumnProfile, dict[str, str]] | None:
    """The column whose values say won or lost: values with a literal ``won`` first, then a
    ``stage`` column before a ``status`` one (a lead's Status is not its opportunity's)."""
    options = []
    for column in profile.columns:
        words = _words(column.name)
        if words & set(STAGE_WORDS) and column.values:
            mapped = _close_values(column)
            if mapped:
                literal = any("won" in name_words(value) for value in mapped)
                options.append((0 if literal else 1, 0 if "stage" in words else 1, column.name))
    if not options:
        return None
    column = profile.column(min(options)[2])
    return column, _close_values(column)


def _named(profile: FileProfile, words: set[str], kinds: tuple[str, ...]) -> ColumnProfile | None:
    for column in profile.columns:
        if column.kind in kinds and _words(column.name) & words:
            return column
    return None


def _dated_entry(
    profile: FileProfile, table: str, date: str, columns: dict[str, str], comment: str
) -> _Entry | None:
    """An entry at ``date``, filtered to the rows that have it; None when no filter exists
    (its empty dates would be quarantined by validation)."""
    entry = _Entry(table, profile.path.name, {**columns, "occurred_at": date}, comment)
    if profile.frame[date].isna().any():
        partition = _partition(profile, date)
        if partition is None:
            return None
        entry.where = {partition[0]: partition[1]}
        entry.comment += f" (rows with a {date}: {partition[0]} in {partition[1]})"
    return entry


def _sales_entries(profile: FileProfile, lead_ref: str, won_elsewhere: bool) -> list[_Entry]:
    """Sales events from a file of deals/opportunities, or from the leads file's own dates."""
    entries: list[_Entry] = []
    base = {"lead_id": lead_ref}
    owner = _named(profile, {"owner"}, ("text", "number"))
    if owner is not None and owner.role == "reference":
        base["owner_id"] = owner.name
    amount = _named(profile, {"amount", "value"}, ("number",))
    stage = _stage_column(profile)
    for column in profile.with_role("post_outcome", "created_at"):
        if column.kind != "timestamp":
            continue
        words = _words(column.name)
        if column.role == "created_at":
            if profile.id is not None and profile.id.name != lead_ref and stage is not None:
                entry = _Entry(
                    "sales_events",
                    profile.path.name,
                    {**base, "occurred_at": column.name},
                    f"a {profile.path.stem} record created: an opportunity",
                )
                entry.constants = {"stage": "opportunity"}
                if amount is not None:
                    entry.columns["amount"] = amount.name
                entries.append(entry)
            continue
        if words & {"close", "closed"} and stage is not None:
            stage_column, mapped = stage
            entry = _Entry(
                "sales_events",
                profile.path.name,
                {**base, "occurred_at": column.name, "stage": stage_column.name},
                f"closed won or lost on {column.name}; open ones are left out (their date is "
                "only expected)",
            )
            if amount is not None:
                entry.columns["amount"] = amount.name
            entry.values = {"stage": mapped}
            entry.where = {stage_column.name: sorted(mapped)}
            entries.append(entry)
            continue
        kind = _event_stage(column.name)
        if kind is None or (kind == "won" and won_elsewhere):
            continue
        dated = _dated_entry(
            profile,
            "sales_events",
            column.name,
            dict(base),
            f"{column.name}: the lead reached `{kind}`",
        )
        if dated is not None:
            dated.constants = {"stage": kind}
            entries.append(dated)
    return entries


def _touch_entry(profile: FileProfile, lead_ref: str, campaign: str | None) -> _Entry | None:
    times = [c for c in profile.columns if c.kind == "timestamp"]
    if not times:
        return None
    preferred = [
        c
        for c in times
        if _words(c.name) & {"responded", "response", "occurred", "activity", "date", "time"}
        and not _words(c.name) & {"created", "modified"}
    ]
    date = (preferred or times)[0]
    kind = None
    for column in profile.columns:
        if (
            column.kind == "text"
            and column.values
            and _words(column.name) & {"status", "type", "activity", "action"}
        ):
            kind = column
            break
    columns = {"lead_id": lead_ref}
    if campaign is not None:
        columns["campaign_id"] = campaign
    entry = _dated_entry(
        profile,
        "touches",
        date.name,
        columns,
        f"touches of the leads in {profile.path.name}, at {date.name}",
    )
    if entry is None:
        return None
    if kind is not None:
        entry.columns["touch_type"] = kind.name
        entry.comment += (
            f"; touch_type from {kind.name} (map its values to leadscore's with `values:`)"
        )
    else:
        entry.constants = {"touch_type": "form_submit"}
        entry.comment += "; no type column: every touch is a form_submit (change it)"
    return entry


def _campaign_entry(profile: FileProfile) -> _Entry | None:
    ident = profile.id
    start = _named(profile, {"start", "started", "begin"}, ("timestamp",))
    spend = _named(profile, {"cost", "spend", "budget", "actualcost"}, ("number",))
    channel = _named(profile, {"type", "channel", "medium"}, ("text",))
    if ident is None or start is None or spend is None or channel is None:
        return None
    if profile.frame[[start.name, spend.name, channel.name]].isna().any().any():
        return None
    columns = {
        "campaign_id": ident.name,
        "channel": channel.name,
        "started_at": start.name,
        "spend": spend.name,
    }
    name = _named(profile, {"name", "title"}, ("text",))
    end = _named(profile, {"end", "ended"}, ("timestamp",))
    if name is not None:
        columns["name"] = name.name
    if end is not None:
        columns["ended_at"] = end.name
    return _Entry(
        "campaigns",
        profile.path.name,
        columns,
        f"campaigns; channel from {channel.name} (map its values to leadscore's "
        "channels with `values:`)",
    )


def _leads_score(profile: FileProfile) -> tuple[int, int, int]:
    named = any(word in profile.path.name.casefold() for word in LEADS_FILE_WORDS)
    usable = profile.id is not None and profile.created_at is not None
    return (int(usable), int(named), profile.rows)


def draft_tables(profiles: Sequence[FileProfile]) -> str | None:
    """The ``format: tables`` draft of an export directory, or None when no file looks like the
    leads with another file referring to them."""
    usable = [p for p in profiles if p.id is not None and p.created_at is not None]
    if not usable:
        return None
    leads = max(usable, key=_leads_score)
    assert leads.id is not None
    assert leads.created_at is not None
    keys = set(leads.frame[leads.id.name].astype(str).str.strip())
    entries: list[_Entry] = []
    lead_columns = {"lead_id": leads.id.name, "created_at": leads.created_at.name}
    attributes = _synonym(leads, LEAD_SYNONYMS)
    firmographics = _synonym(leads, ACCOUNT_SYNONYMS)
    if firmographics:
        lead_columns["account_id"] = leads.id.name
    lead_columns |= attributes
    entries.append(
        _Entry(
            "leads",
            leads.path.name,
            lead_columns,
            f"one lead per row of {leads.path.name}"
            + (
                "; each lead is its own account (its company's data is on the lead)"
                if firmographics
                else ""
            ),
        )
    )
    if firmographics:
        account = {"account_id": leads.id.name, **firmographics}
        if "country" in attributes:
            account["country"] = attributes["country"]
        entries.append(
            _Entry(
                "accounts", leads.path.name, account, "the lead's company, as recorded on the lead"
            )
        )
    campaigns = {
        p.path.name: p
        for p in profiles
        if p is not leads
        and p.id is not None
        and any(w in p.path.name.casefold() for w in CAMPAIGN_FILE_WORDS)
        and not any(w in p.path.name.casefold() for w in MEMBER_FILE_WORDS)
    }
    campaign_entries = {name: _campaign_entry(p) for name, p in campaigns.items()}
    referring = []
    for profile in profiles:
        if profile is leads or profile.path.name in campaigns:
            continue
        ref = _references(profile, keys, profile.id.name if profile.id else None)
        if ref is not None:
            referring.append((profile, ref))
    deals = [(p, ref) for p, ref in referring if _stage_column(p) is not None]
    for profile, ref in deals:
        entries += _sales_entries(profile, ref, won_elsewhere=False)
    entries += _sales_entries(leads, leads.id.name, won_elsewhere=bool(deals))
    used_campaigns: set[str] = set()
    for profile, ref in referring:
        if (profile, ref) in deals:
            continue
        campaign_ref = None
        for name, campaign in campaigns.items():
            entry = campaign_entries[name]
            if entry is None or campaign.id is None:
                continue
            ids = set(campaign.frame[campaign.id.name].astype(str).str.strip())
            campaign_ref = _references(profile, ids, profile.id.name if profile.id else None)
            if campaign_ref is not None:
                used_campaigns.add(name)
                break
        touch = _touch_entry(profile, ref, campaign_ref)
        if touch is not None:
            entries.append(touch)
    for name in sorted(used_campaigns):
        entry = campaign_entries[name]
        assert entry is not None
        entries.append(entry)
    if len(entries) == 1:
        return None
    lines = [
        f"# Draft mapping by `leadscore inspect` for {leads.path.parent} ({len(profiles)} files).",
        "# Review every line: the guesses come from column names and values only.",
        f"#   leadscore import --mapping <this file> --input {leads.path.parent} --out data/raw",
        "# The OUTCOME of a tables export is its sales events: `accepted`, `opportunity`, `won`,",
        "# `lost` below (params.yaml `targets` says which stages count). CHOOSE: check each",
        "# event's date and filter; drop the ones that are not what your sales team means.",
        "format: tables",
        "tables:",
    ]
    used_files = {entry.file for entry in entries}
    for table in contract.TABLES:
        mine = [entry for entry in entries if entry.table == table]
        if not mine:
            continue
        lines.append(f"  {table}:")
        for entry in mine:
            lines += entry.text()
    for profile in profiles:
        if profile.path.name not in used_files:
            lines.append(
                f"# {profile.path.name}: not used (no column refers to the leads' {leads.id.name})"
            )
    for profile in profiles:
        mapped = {
            name
            for entry in entries
            if entry.file == profile.path.name
            for name in (*entry.columns.values(), *entry.where)
        }
        unused = [c for c in profile.columns if c.name not in mapped]
        post = [c for c in unused if c.role in ("post_outcome", "outcome")]
        if post and profile.path.name in used_files:
            lines.append(f"# {profile.path.name}, post-outcome columns (not features):")
            lines += [f"#   {q(c.name)}: {c.reason}" for c in post]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- entry point
@dataclass(frozen=True)
class Inspection:
    profiles: tuple[FileProfile, ...]
    draft: str
    format: str


def export_files(directory: Path) -> list[Path]:
    files = sorted(
        p
        for p in directory.iterdir()
        if p.is_file() and not p.name.startswith(".") and file_kind(p) is not None
    )
    if not files:
        raise UserError(f"{directory}: no CSV or Parquet file to inspect")
    return files


def inspect_export(path: Path | str) -> Inspection:
    """Profile a file or every export file of a directory and draft its mapping."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: not found")
    if path.is_dir():
        profiles = tuple(profile_file(file) for file in export_files(path))
        tables = draft_tables(profiles)
        if tables is not None:
            return Inspection(profiles, tables, "tables")
        largest = max(profiles, key=lambda p: p.rows)
        return Inspection(profiles, draft_flat(largest), "flat")
    profile = profile_file(path)
    return Inspection((profile,), draft_flat(profile), "flat")


def summary(profile: FileProfile) -> list[str]:
    """One line per column for the console: name, type, missing, distinct, role."""
    width = max(len(c.name) for c in profile.columns)
    head = f"{profile.path}: {profile.rows:,} rows, {len(profile.columns)} columns"
    return [head] + [
        f"  {c.name:<{width}}  {c.kind:<9} {100 * c.missing_share:5.1f}% missing "
        f"{c.distinct:>7,} distinct  {c.role:<12} {c.reason}"
        for c in profile.columns
    ]
