"""The feature catalog: what every feature means, declared once.

Each feature, or feature pattern (per touch type × window or half-life, per sales stage, per
target × level, per lead attribute), is one :class:`Declaration` in :data:`CATALOG` with

- its name, a template over slots (``{touch}_{days}d``),
- its family and kind (numeric or categorical),
- its business field, the group a reason shown to sales is about. A feature that carries a
  contract column's value names the column (``source="accounts.employees"``) and takes the
  column's ``business_field``: the data contract (features/contract.py) stays the source of
  truth for canonical attributes,
- a description of what it is (``feature_spec.json``, the model card),
- how its value is worded for people (``words``; a missing value reads ``not known``),
- how a plain reader takes the value (``reads``: as a plus, a minus or neither), so a reason is
  offered only on the side its words agree with ("no demo requests" is never a plus,
  "2.3× the average share" never a minus), and whether it may be a reason at all (``reason``:
  the lead's own sales-stage counts restate where the lead already is and are features only).

The engine lists its features from here (:func:`features`, in the engine's column order, which
the model's feature matrix depends on); the reasons word values from here (:func:`word`, which
finds a feature's declaration from its name alone, so models trained earlier are worded the same
way). Adding a feature is one declaration here (and its computation in the engine's kernel).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from features import contract

OTHER = "__other__"
"""The bucket of touch types (and categories) too rare to have features of their own."""
NEVER_DAYS = 9999.0
"""The value of a days-since feature when the event never happened (worded "never")."""
AXES = ("fit", "engagement")
"""The two sides of a lead marketing reads: is it the right company and person (*fit*), and is
it in-market now (*engagement*)."""
FAMILY_AXES = {
    "lead": "fit",
    "campaign": "fit",
    "account": "fit",
    "rates": "fit",
    "touches": "engagement",
    "sales": "engagement",
}
"""Each feature family's axis (a declaration may say otherwise: the lead's age is recency)."""

Slots = Mapping[str, str]


# ----------------------------------------------------------------- words
def _whole(value: float) -> int:
    return round(value)


@dataclass(frozen=True)
class Counted:
    """A count in words, with its plural: ``{n}`` is the count (thousands separated)."""

    one: str
    many: str
    none: str

    def __call__(self, count: float) -> str:
        n = _whole(count)
        if n == 0:
            return self.none
        return (self.one if n == 1 else self.many).format(n=f"{n:,}")


def nouns(one: str, many: str, none: str | None = None) -> Counted:
    """``1 website visit``, ``3 website visits``, ``no website visits``."""
    return Counted(f"1 {one}", f"{{n}} {many}", none or f"no {many}")


def days_ago(days: float) -> str:
    """Elapsed whole days: ``today`` (under one day), ``1 day ago``, ``3 days ago``."""
    if days < 0:
        return "recently"
    whole = math.floor(days)
    if whole == 0:
        return "today"
    return f"{whole:,} day{'' if whole == 1 else 's'} ago"


def number(value: float) -> str:
    """A plain number for people: ``41``, ``4,992``, ``4.857``, ``-1.8``."""
    if value == round(value) or abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.4g}"


def amount(value: float, one: str, many: str) -> str:
    """A measured quantity with its unit: ``1 lead``, ``0.04 leads``, ``12.5 leads``."""
    small = 0 < abs(value) < 0.95
    text = f"{value:.2g}" if small else f"{value:,.1f}".removesuffix(".0")
    return f"{text} {one if text == '1' else many}"


def money(value: float, currency: str) -> str:
    """An amount of money: ``85 EUR``, ``0.40 EUR``, ``12.5 million EUR`` (``85 (currency not
    known)`` when none is configured: a bare number reads as any currency)."""
    size = abs(value)
    if size >= 1e9:
        text = f"{value / 1e9:,.1f}".removesuffix(".0") + " billion"
    elif size >= 1e6:
        text = f"{value / 1e6:,.1f}".removesuffix(".0") + " million"
    elif size < 10 and value != round(value):
        text = f"{value:,.2f}"
    else:
        text = f"{value:,.0f}"
    return f"{text} {currency}" if currency else f"{text} (currency not known)"


@dataclass(frozen=True)
class TouchWords:
    field: str
    """Business field of the touch type's features."""
    noun: str
    """Descriptions: ``days since the lead's last demo request``."""
    plural: str
    """Descriptions: ``demo requests in the 7 days before as_of``."""
    verb: str
    """Past tense: ``requested a demo`` (3 days ago)."""
    counted: Counted | None = None
    """A count of them; default ``1 demo request``, ``3 demo requests``, ``no demo requests``."""
    fewer_is_better: bool = False
    """A plain reader takes this touch as a minus (an unsubscribe), its absence as a plus."""

    @property
    def count(self) -> Counted:
        return self.counted or nouns(self.noun, self.plural)


def _attended(thing: str, things: str) -> Counted:
    return Counted(f"attended 1 {thing}", f"attended {{n}} {things}", f"attended no {things}")


TOUCHES: dict[str, TouchWords] = {
    "email_open": TouchWords("email open", "email open", "email opens", "opened an email"),
    "email_click": TouchWords("email click", "email click", "email clicks", "clicked an email"),
    "web_visit": TouchWords("web visit", "website visit", "website visits", "visited the website"),
    "pricing_page_visit": TouchWords(
        "pricing page visit",
        "pricing-page visit",
        "pricing-page visits",
        "visited the pricing page",
    ),
    "content_download": TouchWords(
        "content download", "content download", "content downloads", "downloaded content"
    ),
    "webinar_registration": TouchWords(
        "webinar registration",
        "webinar registration",
        "webinar registrations",
        "registered for a webinar",
    ),
    "webinar_attendance": TouchWords(
        "webinar attendance",
        "webinar attendance",
        "webinar attendances",
        "attended a webinar",
        _attended("webinar", "webinars"),
    ),
    "event_attendance": TouchWords(
        "event attendance",
        "event attendance",
        "event attendances",
        "attended an event",
        _attended("event", "events"),
    ),
    "demo_request": TouchWords("demo request", "demo request", "demo requests", "requested a demo"),
    "form_submit": TouchWords(
        "form submit", "form submission", "form submissions", "submitted a form"
    ),
    "unsubscribe": TouchWords(
        "unsubscribe",
        "unsubscribe",
        "unsubscribes",
        "unsubscribed from emails",
        Counted("unsubscribed once", "unsubscribed {n} times", "no unsubscribes"),
        fewer_is_better=True,
    ),
    OTHER: TouchWords(
        "other interaction",
        "touch of a rare or unknown type",
        "touches of rare or unknown types",
        "had another interaction",
        nouns("other interaction", "other interactions"),
    ),
}
"""Words of the contract's touch types (and of the bucket of rare ones)."""


def touch_words(touch: str) -> TouchWords:
    """The words of a touch type; a type outside the contract (seen in the data often enough to
    get its own features) is worded from its name."""
    known = TOUCHES.get(touch)
    if known is not None:
        return known
    label = touch.replace("_", " ")
    return TouchWords(label, f"'{label}' touch", f"'{label}' touches", f"had a '{label}' touch")


STAGE_WORDS: dict[str, Counted] = {
    "assigned": nouns("earlier assignment to sales", "earlier assignments to sales"),
    "accepted": nouns("earlier acceptance by sales", "earlier acceptances by sales"),
    "rejected": nouns("earlier rejection by sales", "earlier rejections by sales"),
    "opportunity": nouns("earlier opportunity", "earlier opportunities"),
    "won": nouns("earlier win", "earlier wins"),
    "lost": nouns("earlier loss", "earlier losses"),
}
"""Counts of a lead's own earlier sales events, per stage of the contract."""


# --------------------------------------------------------------- context
@dataclass(frozen=True)
class Context:
    """What wording needs beyond a feature's name and value."""

    currency: str = ""
    """Money amounts are in this currency (params ``data.currency``); empty: none shown."""
    trend_days: int = 7
    """The engagement trend compares the last N days with the N before (params
    ``features.trend_days``)."""
    cooled_days: int = 30
    """From this many days without an engaging touch on, engagement reads as cooled (params
    ``features.cooled_days``)."""
    labels: Mapping[str, str] = field(default_factory=dict)
    """Readable labels of a flat export's columns (the mapping's ``labels``), by column."""


# ---------------------------------------------------------------- shapes
@dataclass(frozen=True)
class Shape:
    """What one fitted engine has features for (its fitted state)."""

    lead_attributes: tuple[str, ...] = ()
    """Categorical lead attributes: the contract's, then those a flat export declares."""
    numerics: tuple[str, ...] = ()
    """Numeric lead attributes a flat export declares."""
    touches: bool = False
    sales: bool = False
    campaigns: bool = False
    accounts: bool = False
    touch_types: tuple[str, ...] = ()
    windows_days: tuple[int, ...] = (7, 30, 90)
    trend_days: int = 7
    half_lives_days: tuple[int, ...] = (7, 30)
    """Half-lives of the decayed touch counts (params ``features.half_lives_days``)."""
    targets: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    """Readable labels of a flat export's columns (the mapping's ``labels``), by column."""

    @property
    def history(self) -> bool:
        """Anything beyond the lead's own attributes (a flat export has none)."""
        return self.touches or self.sales or self.campaigns


def _always(shape: Shape) -> bool:
    return True


def _history(*tables: str) -> Callable[[Shape], bool]:
    def when(shape: Shape) -> bool:
        return shape.history and all(getattr(shape, table) for table in tables)

    return when


def _once(shape: Shape) -> Iterable[dict[str, str]]:
    return ({},)


Wording = Callable[[float, Slots, Context], str]
"""How a (non-missing) value reads: value, the feature's slots, the context."""
Reads = Callable[[float, Slots, Context], int]
"""How a plain reader takes a (non-missing) value: 1 a plus, -1 a minus, 0 either,
:data:`NEITHER` neither (it explains no score, up or down); given what its words are given,
so that it reads the value as the words show it (engagement cooled after
``Context.cooled_days``)."""
NEITHER = 2


# ---------------------------------------------------------- declarations
@dataclass(frozen=True)
class Declaration:
    """One feature, or one pattern of features (a name template over slots)."""

    name: str
    family: str
    description: str
    """Template over the slots (and the words they bring, see :func:`slot_words`)."""
    words: Wording | None = None
    """Numeric features only; categorical values read ``{field}: {value}``."""
    field: str = ""
    """Template; unused when ``source`` names a contract column with a business field."""
    source: str | None = None
    """``table.column`` (a template) of the contract column whose value the feature carries."""
    kind: str = "numeric"
    unknown: str = "{field} not known"
    """How a missing value reads (template, with ``field``)."""
    missing: float | None = None
    """A missing value reads as this value (days since: 'never')."""
    each: Callable[[Shape], Iterable[dict[str, str]]] = _once
    """The slot values an engine of a shape has features for."""
    when: Callable[[Shape], bool] = _always
    fallback: bool = False
    """Matches any name: flat-export columns, tried after every other declaration."""
    reads: Reads | None = None
    """How a plain reader takes a value (None: neither a plus nor a minus, whatever it is)."""
    reason: bool = True
    """False: a feature the model uses but sales is never given as a reason."""
    axis: str | None = None
    """The feature's side, fit or engagement (:data:`AXES`); None: its family's."""

    @functools.cached_property
    def pattern(self) -> re.Pattern[str]:
        parts = re.split(r"\{(\w+)\}", self.name)
        regex = "".join(
            f"(?P<{part}>{SLOT_PATTERNS[part]})" if i % 2 else re.escape(part)
            for i, part in enumerate(parts)
        )
        return re.compile(regex)

    def contract_column(self, slots: Slots) -> contract.Column | None:
        if self.source is None:
            return None
        table, _, column = self.source.format_map(slots).partition(".")
        spec = contract.TABLES[table]
        return spec.column(column) if column in spec.column_names else None

    def instance(self, slots: Slots, labels: Mapping[str, str] | None = None) -> Feature:
        words = slot_words(slots, labels)
        column = self.contract_column(slots)
        field = (
            column.business_field
            if column is not None and column.business_field
            else self.field.format_map(words)
        )
        return Feature(
            name=self.name.format_map(slots),
            family=self.family,
            kind=self.kind,
            business_field=field,
            description=self.description.format_map(words),
            declaration=self,
            slots=dict(slots),
        )


@dataclass(frozen=True)
class Block:
    """Declarations expanded together, one slot value at a time: the engine lays the touch
    features out type by type (``[windows…, all, days_since, decayed…]`` each)."""

    each: Callable[[Shape], Iterable[dict[str, str]]]
    members: tuple[Declaration, ...]
    when: Callable[[Shape], bool] = _always


@dataclass(frozen=True)
class Feature:
    """One feature of one engine: a declaration with its slots filled."""

    name: str
    family: str
    kind: str
    business_field: str
    description: str
    declaration: Declaration = field(repr=False)
    slots: Mapping[str, str] = field(repr=False)

    @property
    def axis(self) -> str:
        """Fit or engagement (:data:`AXES`): the side of the lead this feature describes."""
        return self.declaration.axis or FAMILY_AXES[self.family]

    @property
    def offered(self) -> bool:
        """Whether the feature may be a reason shown to sales (it is a feature either way)."""
        return self.declaration.reason

    def reads(self, value: float, context: Context | None = None) -> int:
        """How a plain reader takes the value: 1 a plus, -1 a minus, 0 either (missing values
        and categories among them), :data:`NEITHER` neither; ``context`` as for :meth:`word`."""
        if math.isnan(value):
            if self.declaration.missing is None:
                return 0
            value = self.declaration.missing
        rule = self.declaration.reads
        if rule is None or self.kind == "categorical":
            return 0
        return rule(value, self.slots, context or Context())

    def agrees(self, value: float, sign: float, context: Context | None = None) -> bool:
        """Whether the value's words may stand on the side of a contribution of this sign: a
        reason offered as a plus never reads as a minus, nor the other way round."""
        reading = self.reads(value, context)
        return self.offered and (reading == 0 or reading == sign)

    def word(
        self,
        value: float,
        vocabulary: Sequence[str] | None = None,
        context: Context | None = None,
    ) -> str:
        """The value in words (categorical values are vocabulary codes: NaN unknown,
        ``len(vocabulary)`` or more for unseen or rare categories)."""
        context = context or Context()
        field = self.business_field
        if self.declaration.fallback and self.slots["column"] in context.labels:
            field = context.labels[self.slots["column"]]
        if math.isnan(value):
            if self.declaration.missing is None:
                return self.declaration.unknown.format(field=field)
            value = self.declaration.missing
        if self.kind == "categorical":
            code = int(value)
            label = vocabulary[code] if vocabulary is not None and code < len(vocabulary) else None
            return f"{field}: {'other' if label is None else label.replace('_', ' ')}"
        if self.declaration.words is None:
            return f"{field}: {number(value)}"
        return self.declaration.words(value, self.slots, context)


SLOT_PATTERNS: dict[str, str] = {
    "touch": r"[a-z0-9_]+",
    "days": r"[0-9]+",
    "half_life": r"[0-9]+",
    "stage": "|".join(contract.SALES_STAGES),
    "level": "campaign|channel",
    "target": r"[a-z0-9_]+",
    "column": r".+",
}
"""What each slot can be when a feature is found from its name."""

LEVELS = ("campaign", "channel")


class _Words(dict[str, str]):
    def __missing__(self, key: str) -> str:
        if key == "trend_days":  # a feature found from its name alone: the period is unknown
            return "N"
        raise KeyError(key)


def column_label(column: str, labels: Mapping[str, str] | None = None) -> str:
    """A flat export's column for people: its label in the mapping, else its name with the
    separators exports use turned into spaces (``nr.employed`` → ``nr employed``)."""
    if labels and column in labels:
        return labels[column]
    return " ".join(part for part in re.split(r"[\s._]+", column) if part) or column


def slot_words(slots: Slots, labels: Mapping[str, str] | None = None) -> dict[str, str]:
    """The slots and the words templates use: ``touch_field``, ``touch_noun``,
    ``touch_plural``, ``touch_verb``, ``last_days``, ``half_life_days`` (``7 days``),
    ``column_label`` (``labels``: a flat export's, by column), ``column_description``,
    ``trend_days`` (the engine's; "N" for a feature found from its name alone)."""
    words = _Words(slots)
    if "touch" in slots:
        touch = touch_words(slots["touch"])
        words |= {
            "touch_field": touch.field,
            "touch_noun": touch.noun,
            "touch_plural": touch.plural,
            "touch_verb": touch.verb,
        }
    if "days" in slots:
        words["last_days"] = (
            "the last day" if slots["days"] == "1" else f"the last {slots['days']} days"
        )
    if "half_life" in slots:
        half_life = slots["half_life"]
        words["half_life_days"] = f"{half_life} day{'' if half_life == '1' else 's'}"
    if "column" in slots:
        column = slots["column"]
        known = column in contract.LEADS.column_names
        words |= {
            "column_label": column_label(column, labels),
            "column_description": contract.LEADS.column(column).description
            if known
            else f"`{column}`, a column declared in the flat export's mapping",
        }
    return words


# ---------------------------------------------------------------- wording
def _days_since(verb: str, never: str | None = None) -> Wording:
    """``never {verb}``, ``{verb} today``, ``{verb} 3 days ago`` (template over the slots)."""

    def words(value: float, slots: Slots, context: Context) -> str:
        phrase = verb.format_map(slot_words(slots))
        if value >= NEVER_DAYS:
            return (never or "never {verb}").format(verb=phrase)
        return f"{phrase} {days_ago(value)}"

    return words


def _touch_count(period: str) -> Wording:
    def words(value: float, slots: Slots, context: Context) -> str:
        return f"{touch_words(slots['touch']).count(value)} {period.format_map(slot_words(slots))}"

    return words


def weighted(value: float, counted: Counted) -> str:
    """A count weighted by recency (a decayed count) in words: ``no demo requests`` (none at
    all), ``1 demo request``, ``1.8 demo requests``, ``0.25 demo requests``, ``under 0.01
    demo requests`` (only old ones)."""
    if value <= 0:
        return counted.none
    if value < 0.01:
        text = "under 0.01"
    elif value < 0.95:
        text = f"{value:.2g}"
    else:
        text = f"{value:,.1f}".removesuffix(".0")
    return counted.one if text == "1" else counted.many.format(n=text)


def _decayed_count(value: float, slots: Slots, context: Context) -> str:
    counted = touch_words(slots["touch"]).count
    if value <= 0:
        return counted.none
    half_life = slot_words(slots)["half_life_days"]
    return f"{weighted(value, counted)}, weighted by recency (half-life {half_life})"


def _engaged(value: float, slots: Slots, context: Context) -> str:
    """``last engaged 3 days ago`` until ``context.cooled_days``, then ``engagement has
    cooled: no touch in 45 days``; ``no engagement yet`` when there was none."""
    if value >= NEVER_DAYS:
        return "no engagement yet"
    if value >= context.cooled_days:
        days = math.floor(value)
        return f"engagement has cooled: no touch in {days:,} day{'' if days == 1 else 's'}"
    return f"last engaged {days_ago(value)}"


def _count(counted: Counted) -> Wording:
    def words(value: float, slots: Slots, context: Context) -> str:
        return counted(value)

    return words


def _money(template: str) -> Wording:
    def words(value: float, slots: Slots, context: Context) -> str:
        return template.format(money=money(value, context.currency))

    return words


def _stage_count(value: float, slots: Slots, context: Context) -> str:
    return STAGE_WORDS[slots["stage"]](value)


def _trend(value: float, slots: Slots, context: Context) -> str:
    days = int(slots.get("trend_days", context.trend_days))
    period = f"in the last {days} days than in the {days} before"
    n = _whole(value)
    if n == 0:
        return f"engagement steady: as many touches in the last {days} days as in the {days} before"
    word, more = ("rising", "more") if n > 0 else ("falling", "fewer")
    touches = "touch" if abs(n) == 1 else "touches"
    return f"engagement {word}: {abs(n):,} {more} {touches} {period}"


def _recycled(value: float, slots: Slots, context: Context) -> str:
    return "recycled lead (assigned to sales again)" if value else "first time with sales"


def _lift(value: float, slots: Slots, context: Context) -> str:
    share = f"the average share of leads {slots['target']}"
    if _lift_reads(value, slots, context) == NEITHER:  # shown as 1.0×: neither better nor worse
        return f"{slots['level']} track record: about {share}"
    return f"{slots['level']} track record: {value:.1f}× {share}"


# ------------------------------------------------------------- readings
def _lift_reads(value: float, slots: Slots, context: Context) -> int:
    """Above or below the average as the words show it; "about the average" (1.04) explains
    neither a higher nor a lower score."""
    shown = float(f"{value:.1f}")
    return (shown > 1) - (shown < 1) or NEITHER


def _some(value: float) -> bool:
    return _whole(value) != 0


def _none_is_a_minus(value: float, slots: Slots, context: Context) -> int:
    """A count of good things: none of them reads as a minus, any number as either."""
    return 0 if _some(value) else -1


def _some_is_a_plus(value: float, slots: Slots, context: Context) -> int:
    """A count of good outcomes (wins at the account): none a minus, any a plus."""
    return 1 if _some(value) else -1


def _touch_count_reads(value: float, slots: Slots, context: Context) -> int:
    if touch_words(slots["touch"]).fewer_is_better:  # unsubscribes: none a plus, any a minus
        return -1 if _some(value) else 1
    return _none_is_a_minus(value, slots, context)


def _touch_days_reads(value: float, slots: Slots, context: Context) -> int:
    never = value >= NEVER_DAYS
    if touch_words(slots["touch"]).fewer_is_better:
        return 1 if never else -1
    return -1 if never else 0


def _touch_decay_reads(value: float, slots: Slots, context: Context) -> int:
    """As the touch's counts read, on the value as :func:`weighted` shows it (any touch at all
    shows as some: ``under 0.01 demo requests``)."""
    if touch_words(slots["touch"]).fewer_is_better:  # unsubscribes: none a plus, any a minus
        return -1 if value > 0 else 1
    return 0 if value > 0 else -1


def _engaged_reads(value: float, slots: Slots, context: Context) -> int:
    """Cooled (or never engaged) reads as a minus; a recent touch as either: it is why a score
    is higher, and also why it is lower than leads engaged more recently still."""
    return -1 if value >= context.cooled_days else 0


def _trend_reads(value: float, slots: Slots, context: Context) -> int:
    n = _whole(value)
    return (n > 0) - (n < 0)


def _employees(value: float, slots: Slots, context: Context) -> str:
    return f"company size: {nouns('employee', 'employees', 'no employees on record')(value)}"


def _lead_age(value: float, slots: Slots, context: Context) -> str:
    return f"lead created {days_ago(value)}"


def _daily_leads(value: float, slots: Slots, context: Context) -> str:
    if value == 0:
        return "source campaign has brought no leads yet"
    return f"source campaign brings {amount(value, 'lead', 'leads')} a day"


def _touch_types(shape: Shape) -> Iterator[dict[str, str]]:
    for touch in (*shape.touch_types, OTHER):
        yield {"touch": touch}


def _windows(shape: Shape) -> Iterator[dict[str, str]]:
    for days in shape.windows_days:
        yield {"days": str(days)}


def _half_lives(shape: Shape) -> Iterator[dict[str, str]]:
    for days in shape.half_lives_days:
        yield {"half_life": str(days)}


def _stages(shape: Shape) -> Iterator[dict[str, str]]:
    for stage in contract.SALES_STAGES:
        yield {"stage": stage}


def _targets_levels(shape: Shape) -> Iterator[dict[str, str]]:
    for target in shape.targets:
        for level in LEVELS:
            yield {"target": target, "level": level}


def _attributes(shape: Shape) -> Iterator[dict[str, str]]:
    for column in shape.lead_attributes:
        yield {"column": column}


def _numerics(shape: Shape) -> Iterator[dict[str, str]]:
    for column in shape.numerics:
        yield {"column": column}


_CAMPAIGN = _history("campaigns")
_ACCOUNT = _history("accounts")
_TOUCH = _history("touches")
_SALES = _history("sales")
_MONEY_NOTE = "in params data.currency"

CATALOG: tuple[Declaration | Block, ...] = (
    Declaration(
        "{column}",
        "lead",
        "{column_description}",
        kind="categorical",
        field="{column_label}",
        source="leads.{column}",
        each=_attributes,
        fallback=True,
    ),
    Declaration(
        "{column}",
        "lead",
        "{column_description}",
        field="{column_label}",
        each=_numerics,
        fallback=True,
    ),
    Declaration(
        "lead_age_days",
        "lead",
        "days since the lead was created",
        _lead_age,
        source="leads.created_at",
        when=_history(),
        axis="engagement",  # how long ago the lead came in: recency, not who it is
    ),
    Declaration(
        "channel",
        "campaign",
        "marketing channel of the lead's source campaign",
        kind="categorical",
        source="campaigns.channel",
        when=_CAMPAIGN,
    ),
    # Rates per day rather than running totals: totals grow with calendar time and would not
    # mean the same in the test period as in training.
    Declaration(
        "campaign_daily_spend",
        "campaign",
        f"source campaign's spend per day while running, accrued before as_of ({_MONEY_NOTE})",
        _money("source campaign spends {money} a day"),
        source="campaigns.spend",
        when=_CAMPAIGN,
    ),
    Declaration(
        "campaign_daily_leads",
        "campaign",
        "leads per day the source campaign brought before as_of",
        _daily_leads,
        source="leads.campaign_id",
        when=_CAMPAIGN,
    ),
    Declaration(
        "campaign_spend_per_lead",
        "campaign",
        f"source campaign's spend so far per lead it brought ({_MONEY_NOTE})",
        _money("source campaign spends {money} per lead"),
        source="campaigns.spend",
        when=_CAMPAIGN,
    ),
    Declaration(
        "industry",
        "account",
        "industry of the lead's account",
        kind="categorical",
        source="accounts.industry",
        when=_ACCOUNT,
    ),
    Declaration(
        "account_employees",
        "account",
        "employees of the lead's account",
        _employees,
        source="accounts.employees",
        when=_ACCOUNT,
    ),
    Declaration(
        "account_annual_revenue",
        "account",
        f"annual revenue of the lead's account ({_MONEY_NOTE})",
        _money("company revenue: {money}"),
        source="accounts.annual_revenue",
        when=_ACCOUNT,
    ),
    Declaration(
        "account_earlier_leads",
        "account",
        "other leads of the same account created before as_of",
        _count(nouns("earlier lead from the same account", "earlier leads from the same account")),
        field="account history",
        unknown="account not known",
        reads=_none_is_a_minus,
        when=_history(),
    ),
    Declaration(
        "account_opportunities",
        "account",
        "opportunities of the account's other leads before as_of",
        _count(
            nouns(
                "earlier opportunity at the same account",
                "earlier opportunities at the same account",
            )
        ),
        field="account history",
        unknown="account not known",
        reads=_some_is_a_plus,
        when=_SALES,
    ),
    Declaration(
        "account_wins",
        "account",
        "wins of the account's other leads before as_of",
        _count(nouns("earlier win at the same account", "earlier wins at the same account")),
        field="account history",
        unknown="account not known",
        reads=_some_is_a_plus,
        when=_SALES,
    ),
    Block(
        _touch_types,
        (
            Declaration(
                "{touch}_{days}d",
                "touches",
                "{touch_plural} in the {days} days before as_of",
                _touch_count("in {last_days}"),
                field="{touch_field}",
                each=_windows,
                reads=_touch_count_reads,
            ),
            Declaration(
                "{touch}_all",
                "touches",
                "{touch_plural} before as_of",
                _touch_count("so far"),
                field="{touch_field}",
                reads=_touch_count_reads,
            ),
            Declaration(
                "{touch}_days_since",
                "touches",
                f"days since the lead's last {{touch_noun}} ({NEVER_DAYS:.0f} if none)",
                _days_since("{touch_verb}"),
                field="{touch_field}",
                missing=NEVER_DAYS,
                reads=_touch_days_reads,
            ),
            # Windows count a touch fully until it drops out; a decayed count fades it: 1 when
            # new, 0.5 one half-life later (params features.half_lives_days).
            Declaration(
                "{touch}_decay{half_life}d",
                "touches",
                "{touch_plural} before as_of, each weighted by its age: 1 when new, halving "
                "every {half_life_days} (sum of 0.5 ** (age in days / {half_life}))",
                _decayed_count,
                field="{touch_field}",
                each=_half_lives,
                reads=_touch_decay_reads,
            ),
        ),
        when=_TOUCH,
    ),
    Declaration(
        "touches_trend",
        "touches",
        "engaging touches (all but unsubscribes) in the last {trend_days} days minus the "
        "{trend_days} days before",
        _trend,
        field="engagement trend",
        reads=_trend_reads,
        each=lambda shape: ({"trend_days": str(shape.trend_days)},),
        when=_TOUCH,
    ),
    Declaration(
        "touches_days_since_last",
        "touches",
        "days since the lead's last engaging touch (any type but unsubscribes and rare "
        f"types; {NEVER_DAYS:.0f} if none)",
        _engaged,
        field="engagement recency",
        missing=NEVER_DAYS,
        reads=_engaged_reads,
        when=_TOUCH,
    ),
    Declaration(
        "distinct_campaigns",
        "touches",
        "distinct campaigns the lead interacted with before as_of",
        _count(
            Counted(
                "interacted with 1 campaign",
                "interacted with {n} different campaigns",
                "interacted with no campaign",
            )
        ),
        field="campaigns touched",
        reads=_none_is_a_minus,
        when=_TOUCH,
    ),
    Declaration(
        "sales_{stage}_count",
        "sales",
        "earlier '{stage}' sales events of the lead",
        _stage_count,
        field="earlier sales {stage}",
        each=_stages,
        when=_SALES,
        # The lead's own stage counts say where the lead already is (an open lead with an
        # earlier opportunity *is* an opportunity): the model may use them, but "1 earlier
        # opportunity" tells sales nothing they do not see in the CRM, so never a reason.
        reason=False,
    ),
    Declaration(
        "sales_recycled",
        "sales",
        "1 if the lead was assigned to sales more than once",
        _recycled,
        field="recycled lead",
        when=_SALES,
    ),
    Declaration(
        "sales_days_since_last",
        "sales",
        f"days since the lead's last sales event ({NEVER_DAYS:.0f} if none)",
        _days_since("last sales activity", never="no sales activity yet"),
        field="sales activity",
        missing=NEVER_DAYS,
        when=_SALES,
    ),
    Declaration(
        "{level}_{target}_lift",
        "rates",
        "smoothed share of the {level}'s matured leads that were {target}, relative to the "
        "share over all matured leads (1 = average)",
        _lift,
        field="{level} track record",
        unknown="no {field} yet",
        reads=_lift_reads,
        each=_targets_levels,
        when=_SALES,
    ),
)
"""Every feature, in the engine's column order."""


def declarations(catalog: Sequence[Declaration | Block] | None = None) -> list[Declaration]:
    """Every declaration of the catalog (blocks opened), in catalog order."""
    out: list[Declaration] = []
    for entry in CATALOG if catalog is None else catalog:
        out += entry.members if isinstance(entry, Block) else (entry,)
    return out


# ------------------------------------------------------------------- use
def features_of(
    shape: Shape, catalog: Sequence[Declaration | Block] | None = None
) -> list[Feature]:
    """The features an engine of ``shape`` produces, in its column order."""
    out: list[Feature] = []
    for entry in CATALOG if catalog is None else catalog:
        if not entry.when(shape):
            continue
        if isinstance(entry, Block):
            for outer in entry.each(shape):
                for member in entry.members:
                    if member.when(shape):
                        out += [
                            member.instance({**outer, **inner}, shape.labels)
                            for inner in member.each(shape)
                        ]
        else:
            out += [entry.instance(slots, shape.labels) for slots in entry.each(shape)]
    return out


@functools.lru_cache(maxsize=4096)
def lookup(name: str, categorical: bool | None = None) -> Feature:
    """A feature from its name alone (``categorical``: its kind, when known). Names no other
    declaration claims are lead attributes: the contract's, or a flat export's columns."""
    ordered = sorted(declarations(), key=lambda d: d.fallback)  # stable: catalog order else
    for declaration in ordered:
        if categorical is not None and (declaration.kind == "categorical") != categorical:
            continue
        if categorical is None and declaration.fallback:
            is_lead_attribute = name in contract.LEADS.column_names
            if (declaration.kind == "categorical") != is_lead_attribute:
                continue
        match = declaration.pattern.fullmatch(name)
        if match is not None:
            return declaration.instance(match.groupdict())
    raise AssertionError(f"no catalog declaration matches {name!r}")  # fallbacks match all


def word(
    name: str,
    value: float,
    categories: Mapping[str, Sequence[str]] | None = None,
    context: Context | None = None,
) -> str:
    """One feature value in words; ``categories`` maps each categorical feature to its
    vocabulary (a name outside it is numeric); ``context``: the fitted engine's
    (:meth:`FeatureEngine.wording_context`), default none (no currency, 7-day trend)."""
    vocabulary = None if categories is None else categories.get(name)
    return lookup(name, vocabulary is not None).word(value, vocabulary, context)


def description(name: str) -> str:
    """What a feature is, from its name alone (the model card)."""
    return lookup(name).description
