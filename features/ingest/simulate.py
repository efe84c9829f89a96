"""A realistic B2B CRM simulator.

The world it simulates, in one paragraph: leads arrive from ten channels with different cost and
quality, through campaigns that run for weeks or months, over many months with growth and a
weekly rhythm. Most leads work for an account; a few accounts send many leads. Each lead has a
latent quality (channel, campaign, account, seniority, department and an unobserved part) and an
*intent* that rises or fades over time; touches (email opens, web visits, pricing-page visits,
webinars, demo requests, …) arrive as Poisson processes whose rates follow that intent. Sales
assigns each lead to a rep, who accepts or rejects it (reps differ in how easily they accept);
accepted leads may become opportunities, which are won or lost after a sales cycle of days to
months, longer for larger accounts. Everything after the horizon is cut off, so recent leads are
naturally still open (censoring).

``truth.parquet`` holds, per lead, the simulator's exact probability that the lead is accepted,
and that it converts (is won), within ``window_days`` of its creation. It is calibrated by
construction: the outcome draws use exactly these probabilities, and the timing of every step
before the sales cycle is drawn independently of the outcome, so the only random part left is
the cycle length, whose distribution function is known.

Leads are simulated in chunks of a fixed size with one random generator, so the output is
byte-identical for the same seed and size, and memory stays bounded at a million leads.

**Drift** (``generate.drift``, off by default): from ``after`` (00:00 UTC) on, the world
changes, so that monitoring can be shown to catch it. The ``quality_channel``'s new leads are
accepted by sales at ``quality_factor`` times their propensity (so they also convert at that
factor: conversion needs acceptance); the ``volume_channel``'s daily lead volume is multiplied
by ``volume_factor`` while the other channels keep theirs (the total stays ``leads``: the days
before the date get fewer); with ``new_campaign``, a campaign of the volume channel that did
not exist before starts on the date, of poorer quality than any typical campaign, and brings
half of that channel's new leads. The outcome draws use the changed probabilities, so
``truth.parquet`` stays exact. Drift-only random draws come from their own stream, and with
``after: null`` no drift code runs: the output is the drift-free world's, byte for byte.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from scipy.special import expit, ndtr

from features import contract
from features.params import GenerateParams

logger = logging.getLogger(__name__)

CHUNK_LEADS = 25_000
DAY_NS = 86_400 * 10**9


@dataclass(frozen=True)
class Channel:
    name: str
    share: float
    quality: float
    cost_per_lead: float
    sources: tuple[str, ...]
    campaign_days: int


# The simulated market. These are properties of the fictional world, not tunables of leadscore.
CHANNEL_PROFILES: tuple[Channel, ...] = (
    Channel("paid_search", 0.19, 0.15, 120.0, ("google_ads", "bing_ads"), 60),
    Channel("paid_social", 0.15, -0.45, 80.0, ("linkedin_ads", "facebook_ads"), 45),
    Channel("email", 0.08, 0.0, 25.0, ("newsletter", "nurture_email"), 30),
    Channel("webinar", 0.10, 0.35, 140.0, ("webinar",), 21),
    Channel("event", 0.06, 0.45, 380.0, ("trade_show", "meetup"), 14),
    Channel("content_syndication", 0.12, -0.65, 55.0, ("techtarget", "g2"), 90),
    Channel("organic", 0.13, 0.1, 12.0, ("seo", "direct"), 180),
    Channel("referral", 0.05, 0.85, 45.0, ("customer_referral",), 180),
    Channel("outbound", 0.07, -0.2, 210.0, ("sdr_outbound",), 60),
    Channel("partner", 0.05, 0.55, 170.0, ("reseller", "alliance"), 90),
)

INDUSTRIES = (
    ("software", 0.22, 0.35),
    ("financial_services", 0.12, 0.2),
    ("healthcare", 0.10, 0.0),
    ("manufacturing", 0.13, 0.05),
    ("retail", 0.10, -0.2),
    ("education", 0.07, -0.45),
    ("government", 0.05, -0.35),
    ("telecom", 0.06, 0.15),
    ("media", 0.07, -0.1),
    ("logistics", 0.08, 0.0),
)
COUNTRIES = (
    ("US", 0.38),
    ("GB", 0.12),
    ("DE", 0.10),
    ("FR", 0.07),
    ("CA", 0.06),
    ("NL", 0.04),
    ("AU", 0.04),
    ("IN", 0.07),
    ("BR", 0.04),
    ("ES", 0.03),
    ("SE", 0.05),
)
AMERICAS, EMEA, APAC = 0, 1, 2
REGIONS = {"US": AMERICAS, "CA": AMERICAS, "BR": AMERICAS, "AU": APAC, "IN": APAC}
REGION_OF_COUNTRY = np.array([REGIONS.get(c, EMEA) for c, _ in COUNTRIES])
"""Per country index, its region (``generate.segment_drivers``: the drivers differ by region)."""
SENIORITIES = (
    ("c_level", 0.06, 0.45, "Chief {} Officer"),
    ("vp", 0.09, 0.4, "VP {}"),
    ("director", 0.16, 0.3, "Director of {}"),
    ("manager", 0.30, 0.1, "{} Manager"),
    ("individual", 0.34, -0.25, "{} Specialist"),
    ("student", 0.05, -1.1, "{} Student"),
)
DEPARTMENTS = (
    ("it", 0.22, 0.35, "IT"),
    ("engineering", 0.18, 0.2, "Engineering"),
    ("operations", 0.12, 0.1, "Operations"),
    ("finance", 0.10, 0.0, "Finance"),
    ("marketing", 0.16, -0.05, "Marketing"),
    ("sales", 0.10, -0.15, "Sales"),
    ("hr", 0.05, -0.35, "HR"),
    ("other", 0.07, -0.45, "Business"),
)

# Touch types: (base daily rate at intent 0, sensitivity to intent, campaign channel behind it).
TOUCH_PROFILES: dict[str, tuple[float, float, str | None]] = {
    "email_open": (0.16, 0.25, "email"),
    "email_click": (0.035, 0.55, "email"),
    "web_visit": (0.10, 0.5, None),
    "pricing_page_visit": (0.012, 1.0, None),
    "content_download": (0.02, 0.45, "content_syndication"),
    "webinar_registration": (0.008, 0.6, "webinar"),
    "webinar_attendance": (0.005, 0.8, "webinar"),
    "event_attendance": (0.003, 0.6, "event"),
    "demo_request": (0.0025, 1.3, None),
    "form_submit": (0.009, 0.7, "source"),
    "unsubscribe": (0.002, -0.9, None),
}
assert tuple(TOUCH_PROFILES) == contract.TOUCH_TYPES
EMAIL_TOUCHES = ("email_open", "email_click")

REJECTION_REASONS = ("not a fit", "no budget", "student or job seeker", "duplicate", "no response")
LOSS_REASONS = ("no budget", "chose competitor", "no decision", "timing", "price")


def _pick(rng: np.random.Generator, weights: np.ndarray | list[float], size: int) -> np.ndarray:
    return _pick_with(weights, rng.random(size))


def _pick_with(weights: np.ndarray | list[float], uniform: np.ndarray) -> np.ndarray:
    """Categories drawn with ``weights`` from given uniform numbers (``_pick``'s inverse CDF)."""
    weights = np.asarray(weights, dtype=float)
    cumulative = np.cumsum(weights / weights.sum())
    cumulative[-1] = 1.0
    return np.searchsorted(cumulative, uniform, side="right").astype(np.int64)


FIRST_NAMES = (
    "Ada", "Alan", "Amara", "Ana", "Ben", "Carla", "Chen", "Dara", "Elif", "Emma", "Farah",
    "Grace", "Hugo", "Ines", "Ivan", "Jonas", "Kai", "Lena", "Luca", "Maya", "Mei", "Nadia",
    "Noah", "Omar", "Priya", "Rosa", "Sami", "Sofia", "Tom", "Yara", "Yusuf", "Zoe",
)  # fmt: skip
LAST_NAMES = (
    "Andersen", "Baker", "Costa", "Dubois", "Evans", "Fischer", "Garcia", "Haddad", "Ito",
    "Jansen", "Kowalski", "Larsen", "Meyer", "Novak", "Okafor", "Patel", "Quinn", "Rossi",
    "Silva", "Tanaka", "Ueda", "Varga", "Weber", "Yilmaz", "Zhang",
)  # fmt: skip
COMPANY_WORDS = (
    ("Blue", "North", "Bright", "Iron", "Silver", "Green", "Rapid", "Clear", "Summit", "Delta"),
    ("Harbor", "Forge", "Leaf", "Peak", "Stone", "Wave", "Field", "Bridge", "Grid", "Path"),
    ("Systems", "Labs", "Group", "Works", "Analytics", "Logistics", "Health", "Energy"),
)


def _identities(seed: int, n: int, account: np.ndarray) -> dict[str, pa.Array]:
    """Made-up names, e-mails, phones and companies (identity fields: never features). From
    their own random stream, so adding them changed no other simulated value; a lead's company
    is its account's (``account < 0``: a company of its own)."""
    rng = np.random.default_rng([seed, 0x1D])
    first = rng.integers(0, len(FIRST_NAMES), n)
    last = rng.integers(0, len(LAST_NAMES), n)
    own = rng.integers(0, 10**6, n)
    company_code = np.where(account >= 0, account, own + 10**7)
    words = [
        COMPANY_WORDS[0][c % 10] + COMPANY_WORDS[1][(c // 10) % 10] + " "
        + COMPANY_WORDS[2][(c // 100) % len(COMPANY_WORDS[2])]
        + (f" {c // 800}" if c >= 800 else "")
        for c in company_code.tolist()
    ]  # fmt: skip
    firsts = [FIRST_NAMES[i] for i in first.tolist()]
    lasts = [LAST_NAMES[i] for i in last.tolist()]
    emails = [
        f"{f.lower()}.{s.lower()}@{c.replace(' ', '').lower()}.example"
        for f, s, c in zip(firsts, lasts, words, strict=True)
    ]
    phones = [
        f"+1 555 01{d // 10000:02d} {d % 10000:04d}" for d in rng.integers(0, 10**6, n).tolist()
    ]
    return {
        "first_name": pa.array(firsts, type=pa.string()),
        "last_name": pa.array(lasts, type=pa.string()),
        "email": pa.array(emails, type=pa.string()),
        "phone": pa.array(phones, type=pa.string()),
        "company_name": pa.array(words, type=pa.string()),
    }


def _ids(prefix: str, count: int, width: int) -> pa.Array:
    numbers = np.arange(1, count + 1)
    return pa.array([f"{prefix}{n:0{width}d}" for n in numbers], type=pa.string())


def _timestamps(ns: np.ndarray) -> pa.Array:
    values = pa.array(ns.astype("int64") // 1000, type=pa.int64())
    return values.cast(pa.timestamp("us", tz="UTC"))


def _take_strings(
    dictionary: pa.Array, codes: np.ndarray, mask: np.ndarray | None = None
) -> pa.Array:
    """Strings by integer code (vectorised in Arrow); ``mask`` marks nulls."""
    indices = pa.array(codes.astype(np.int32), mask=mask)
    return pa.DictionaryArray.from_arrays(indices, dictionary).cast(pa.string())


# How the drifted world's new campaign differs (properties of the fictional world).
NEW_CAMPAIGN_SHARE = 0.5
"""Share of the volume channel's leads, from the drift date on, that the new campaign brings."""
NEW_CAMPAIGN_QUALITY = -0.9
"""Its quality offset: three standard deviations below a typical campaign's (sd 0.3)."""
DRIFT_STREAM = 0xD21F7
"""Seeds the drift-only random stream beside the main one, so drift draws shift no other."""


@dataclass
class Drift:
    """The world's change from ``after_ns`` on (``generate.drift``), channels by index."""

    after_ns: int
    quality_channel: int
    quality_factor: float
    volume_channel: int
    volume_factor: float
    new_campaign: int | None  # its index in the campaign table
    rng: np.random.Generator  # drift-only draws (the new campaign's leads)

    def volume_boost(self) -> float:
        """How much the total daily volume grows when only the volume channel's grows."""
        shares = np.array([c.share for c in CHANNEL_PROFILES])
        share = shares[self.volume_channel] / shares.sum()
        return float(1.0 + share * (self.volume_factor - 1.0))

    def channel_shares(self) -> np.ndarray:
        """Channel mix of the new leads from the date on."""
        shares = np.array([c.share for c in CHANNEL_PROFILES], dtype=float)
        shares[self.volume_channel] *= self.volume_factor
        return shares


@dataclass
class World:
    """Everything decided before the leads are simulated."""

    start_ns: int
    horizon_ns: int
    campaigns: pd.DataFrame
    campaign_quality: np.ndarray
    channel_streams: list[list[np.ndarray]]
    accounts: pd.DataFrame
    account_propensity: np.ndarray
    account_weights: np.ndarray
    rep_leniency: np.ndarray
    drift: Drift | None = None


def _build_campaigns(
    rng: np.random.Generator, start_ns: int, horizon_ns: int
) -> tuple[pd.DataFrame, np.ndarray, list[list[np.ndarray]]]:
    """Campaigns tile the period in two overlapping streams per channel.

    Returns the campaign table (spend filled in later), each campaign's quality offset, and per
    channel the start times of each stream's campaigns (index into the table) for lookups.
    """
    rows: list[dict[str, Any]] = []
    streams: list[list[np.ndarray]] = []
    lead_in = 30 * DAY_NS  # campaigns that started before the first lead
    for channel_index, channel in enumerate(CHANNEL_PROFILES):
        channel_streams = []
        for stream in range(2):
            length = channel.campaign_days * DAY_NS
            cursor = start_ns - lead_in - stream * length // 2
            indices = []
            while cursor < horizon_ns:
                duration = int(length * rng.uniform(0.7, 1.3))
                always_on = channel.name in ("organic", "referral") and stream == 0
                ended = cursor + duration
                rows.append(
                    {
                        "channel_index": channel_index,
                        "started_at": cursor,
                        "ended_at": None if always_on and ended >= horizon_ns else ended,
                    }
                )
                indices.append(len(rows) - 1)
                cursor = ended
            channel_streams.append(np.array(indices, dtype=np.int64))
        streams.append(channel_streams)
    frame = pd.DataFrame(rows)
    quality = rng.normal(0.0, 0.3, len(frame))
    return frame, quality, streams


def _campaign_at(
    world: World, channel: np.ndarray, times: np.ndarray, stream: np.ndarray
) -> np.ndarray:
    """Index of the campaign of ``channel``/``stream`` running at ``times`` (vectorised)."""
    result = np.empty(len(times), dtype=np.int64)
    starts = world.campaigns["started_at"].to_numpy(dtype=np.int64)
    for channel_index in np.unique(channel):
        for stream_index in (0, 1):
            selected = np.flatnonzero((channel == channel_index) & (stream == stream_index))
            if len(selected) == 0:
                continue
            campaign_ids = world.channel_streams[channel_index][stream_index]
            position = np.searchsorted(starts[campaign_ids], times[selected], side="right") - 1
            result[selected] = campaign_ids[np.clip(position, 0, len(campaign_ids) - 1)]
    return result


def _build_world(settings: GenerateParams, rng: np.random.Generator) -> World:
    start_ns = pd.Timestamp(settings.start, tz="UTC").value
    horizon = pd.Timestamp(settings.start, tz="UTC") + pd.DateOffset(months=settings.months)
    horizon_ns = horizon.value
    campaigns, campaign_quality, streams = _build_campaigns(rng, start_ns, horizon_ns)

    n_accounts = max(
        20,
        round(settings.leads * (1 - settings.share_without_account) / settings.leads_per_account),
    )
    industry = _pick(rng, [w for _, w, _ in INDUSTRIES], n_accounts)
    country = _pick(rng, [w for _, w in COUNTRIES], n_accounts)
    employees = np.minimum(np.floor(8 * (1 + rng.pareto(1.05, n_accounts))), 250_000)
    revenue = employees * np.exp(rng.normal(math.log(160_000), 0.5, n_accounts))
    propensity = np.array([effect for _, _, effect in INDUSTRIES])[industry] + rng.normal(
        0.0, 0.45, n_accounts
    )
    # A few accounts send many leads: Zipf-like popularity, larger companies more often.
    popularity = (np.arange(1, n_accounts + 1, dtype=float) ** -0.6) * employees**0.1
    popularity = popularity[rng.permutation(n_accounts)]
    accounts = pd.DataFrame(
        {
            "industry": industry,
            "country": country,
            "employees": employees,
            "annual_revenue": np.round(revenue, -3),
        }
    )
    rep_leniency = rng.normal(0.0, 0.55, settings.reps)
    drift = None
    if settings.drift.after is not None:
        campaigns, campaign_quality, drift = _drift(
            settings, campaigns, campaign_quality, horizon_ns
        )
    return World(
        start_ns=start_ns,
        horizon_ns=horizon_ns,
        campaigns=campaigns,
        campaign_quality=campaign_quality,
        channel_streams=streams,
        accounts=accounts,
        account_propensity=propensity,
        account_weights=popularity,
        rep_leniency=rep_leniency,
        drift=drift,
    )


def _drift(
    settings: GenerateParams,
    campaigns: pd.DataFrame,
    campaign_quality: np.ndarray,
    horizon_ns: int,
) -> tuple[pd.DataFrame, np.ndarray, Drift]:
    """The drifted world's parts: the new campaign appended last to the campaign table (so
    every older campaign keeps its id), and the change itself."""
    params = settings.drift
    assert params.after is not None
    after_ns = pd.Timestamp(params.after, tz="UTC").value
    index = {c.name: i for i, c in enumerate(CHANNEL_PROFILES)}
    volume_channel = index[params.volume_channel]
    new_campaign = None
    if params.new_campaign and after_ns < horizon_ns:
        new_campaign = len(campaigns)
        row = pd.DataFrame(
            {"channel_index": [volume_channel], "started_at": [after_ns], "ended_at": [np.nan]}
        )
        campaigns = pd.concat([campaigns, row], ignore_index=True)
        campaign_quality = np.append(campaign_quality, NEW_CAMPAIGN_QUALITY)
    drift = Drift(
        after_ns=after_ns,
        quality_channel=index[params.quality_channel],
        quality_factor=params.quality_factor,
        volume_channel=volume_channel,
        volume_factor=params.volume_factor,
        new_campaign=new_campaign,
        rng=np.random.default_rng([settings.seed, DRIFT_STREAM]),
    )
    return campaigns, campaign_quality, drift


def _creation_times(settings: GenerateParams, world: World, rng: np.random.Generator) -> np.ndarray:
    """Lead creation times: growth over the period, weekly rhythm, a summer and winter dip."""
    days = pd.date_range(
        pd.Timestamp(world.start_ns, tz="UTC"),
        pd.Timestamp(world.horizon_ns, tz="UTC"),
        freq="D",
        inclusive="left",
    )
    progress = np.arange(len(days)) / max(1, len(days) - 1)
    weekday = np.array([1.0, 1.1, 1.1, 1.05, 0.9, 0.3, 0.22])[days.dayofweek]
    month = np.where(days.month == 8, 0.8, 1.0) * np.where(
        (days.month == 12) & (days.day > 18), 0.6, 1.0
    )
    weights = (1.0 + settings.growth * progress) * weekday * month
    if world.drift is not None:
        # The other channels keep their daily volume; the volume channel's is multiplied.
        weights = weights * np.where(
            days.asi8 >= world.drift.after_ns, world.drift.volume_boost(), 1.0
        )
    day_index = np.sort(_pick(rng, weights, settings.leads))
    seconds = np.clip(rng.normal(14.5 * 3600, 3.2 * 3600, settings.leads), 0, 86_399)
    times = days.asi8[day_index] + (seconds * 1e9).astype(np.int64)
    return np.sort(times)


@dataclass
class LeadBlock:
    """Per-lead attributes and latent state for one chunk."""

    created: np.ndarray
    channel: np.ndarray
    campaign: np.ndarray
    account: np.ndarray  # -1 when none
    seniority: np.ndarray
    department: np.ndarray
    country: np.ndarray
    source: np.ndarray
    fit: np.ndarray  # profile fit, visible in the lead's and account's attributes
    interest: np.ndarray  # unobserved interest, visible only through touches
    slope: np.ndarray


def _simulate_leads(
    settings: GenerateParams, world: World, created: np.ndarray, rng: np.random.Generator
) -> LeadBlock:
    n = len(created)
    if world.drift is None:
        channel = _pick(rng, [c.share for c in CHANNEL_PROFILES], n)
    else:
        channel = _drifted_channels(world.drift, created, rng.random(n))
    campaign = _campaign_at(world, channel, created, rng.integers(0, 2, n))
    if world.drift is not None and world.drift.new_campaign is not None:
        drift = world.drift
        joins = (channel == drift.volume_channel) & (created >= drift.after_ns)
        joins &= drift.rng.random(n) < NEW_CAMPAIGN_SHARE
        campaign[joins] = drift.new_campaign
    has_account = rng.random(n) >= settings.share_without_account
    account = np.where(has_account, _pick(rng, world.account_weights, n), -1)
    seniority = _pick(rng, [w for _, w, _, _ in SENIORITIES], n)
    department = _pick(rng, [w for _, w, _, _ in DEPARTMENTS], n)
    account_country = world.accounts["country"].to_numpy()[np.maximum(account, 0)]
    own_country = _pick(rng, [w for _, w in COUNTRIES], n)
    country = np.where(has_account & (rng.random(n) < 0.9), account_country, own_country)
    source_choice = rng.random(n)
    source = np.empty(n, dtype=np.int64)
    offset = 0
    source_offsets = []
    for index, profile in enumerate(CHANNEL_PROFILES):
        source_offsets.append(offset)
        mask = channel == index
        source[mask] = offset + (source_choice[mask] * len(profile.sources)).astype(np.int64)
        offset += len(profile.sources)
    channel_effect = np.array([c.quality for c in CHANNEL_PROFILES])[channel]
    seniority_effect = np.array([e for _, _, e, _ in SENIORITIES])[seniority]
    department_effect = np.array([e for _, _, e, _ in DEPARTMENTS])[department]
    profile_effect = _fit_with_account(world, account, has_account, seniority, department)
    if settings.segment_drivers:
        # Regions that buy differently: the drivers' signs flip by region, which one pooled
        # model can only learn as interactions with the country.
        region = REGION_OF_COUNTRY[country]
        emea = region == EMEA
        seniority_effect = np.where(emea, -2.0 * seniority_effect, seniority_effect)
        department_effect = np.where(emea, -2.0 * department_effect, department_effect)
        profile_effect = np.where(emea, -2.0 * profile_effect, profile_effect)
        channel_effect = np.where(region == APAC, -3.0 * channel_effect, channel_effect)
    # Summed in this order so that the default world stays bit for bit what it was.
    fit = (
        channel_effect
        + world.campaign_quality[campaign]
        + np.where(has_account, world.account_propensity[np.maximum(account, 0)], -0.35)
        + seniority_effect
        + department_effect
        + profile_effect
    )
    interest = rng.normal(0.0, 0.75, n)
    slope = rng.normal(0.0, 0.6, n)
    return LeadBlock(
        created,
        channel,
        campaign,
        account,
        seniority,
        department,
        country,
        source,
        fit,
        interest,
        slope,
    )


def _drifted_channels(drift: Drift, created: np.ndarray, uniform: np.ndarray) -> np.ndarray:
    """Channels from the same uniform draws as the drift-free world: the usual mix before the
    date, the drifted one from it on."""
    before = _pick_with([c.share for c in CHANNEL_PROFILES], uniform)
    after = _pick_with(drift.channel_shares(), uniform)
    return np.where(created >= drift.after_ns, after, before)


TECHNICAL_DEPARTMENTS = ("it", "engineering")
TECHNICAL_INDUSTRIES = ("software", "telecom", "financial_services")
DECIDERS = ("c_level", "vp")
NON_DECIDERS = ("individual", "student")


def _fit_with_account(
    world: World,
    account: np.ndarray,
    has_account: np.ndarray,
    seniority: np.ndarray,
    department: np.ndarray,
) -> np.ndarray:
    """Ideal-customer-profile fit: interactions a points score or a linear model miss.

    Technical buyers at technical companies fit best; at large companies individual
    contributors cannot buy, while at small ones executives decide alone; mid-market
    companies buy most (a hump in company size, not a line).
    """
    names = np.array([s for s, _, _, _ in SENIORITIES])[seniority]
    departments = np.array([d for d, _, _, _ in DEPARTMENTS])[department]
    index = np.maximum(account, 0)
    industry = np.array([i for i, _, _ in INDUSTRIES])[world.accounts["industry"].to_numpy()[index]]
    employees = world.accounts["employees"].to_numpy()[index]
    technical = (
        np.isin(departments, TECHNICAL_DEPARTMENTS)
        & np.isin(industry, TECHNICAL_INDUSTRIES)
        & has_account
    )
    large = has_account & (employees >= 1000)
    small = has_account & (employees < 100)
    mid_market = has_account & (employees >= 100) & (employees < 2000)
    tiny = has_account & (employees < 20)
    return (
        1.5 * technical
        - 2.0 * (large & np.isin(names, NON_DECIDERS))
        + 1.2 * (small & np.isin(names, DECIDERS))
        + 1.0 * mid_market
        - 0.8 * tiny
    )


@dataclass
class SalesPath:
    """Sales events and outcome probabilities of a chunk's leads (times in ns, NaT as -1)."""

    lead: np.ndarray
    time: np.ndarray
    stage: np.ndarray
    owner: np.ndarray
    reason: np.ndarray  # index into reasons, -1 for none
    amount: np.ndarray  # NaN for none
    close_time: np.ndarray  # per lead: won/lost time (int64 max if open)
    p_accepted: np.ndarray
    p_converted: np.ndarray


def _simulate_sales(
    world: World, block: LeadBlock, rng: np.random.Generator, window_days: int
) -> SalesPath:
    n = len(block.created)
    employees = np.where(
        block.account >= 0, world.accounts["employees"].to_numpy()[np.maximum(block.account, 0)], 3
    )
    owner = rng.integers(0, len(world.rep_leniency), n)
    assign_delay = rng.exponential(1.5, n)
    decision_delay = 0.5 + np.minimum(rng.exponential(4.0, n), 30.0)
    opportunity_delay = 1.0 + np.minimum(rng.exponential(6.0, n), 30.0)
    log_size = np.log10(employees + 1)
    # Sales cycle (opportunity → won/lost): lognormal, median 10 days for tiny companies,
    # months for large ones.
    cycle_median = 10.0 * (1.0 + 0.9 * log_size**1.4)
    cycle_sigma = 0.75

    # Engagement only turns into pipeline for leads that fit: a student who downloads
    # everything never buys. The gate makes fit and engagement interact.
    gate = expit(2.0 * block.fit)
    engagement = block.interest + 0.6 * block.slope
    p_accept = expit(-1.2 + 0.9 * block.fit + 0.9 * engagement + world.rep_leniency[owner])
    if world.drift is not None:
        # The drifted channel's new leads are worse in a way no attribute shows: sales accepts
        # them (and so they convert) at quality_factor times their propensity.
        drift = world.drift
        hit = (block.channel == drift.quality_channel) & (block.created >= drift.after_ns)
        p_accept = np.where(hit, np.minimum(p_accept * drift.quality_factor, 1.0), p_accept)
    p_opportunity = expit(-0.3 + 0.7 * block.fit + 1.2 * gate * engagement)
    p_win = expit(-1.75 + 0.65 * block.fit + 0.8 * gate * engagement + 0.08 * log_size)

    accepted = rng.random(n) < p_accept
    opportunity = accepted & (rng.random(n) < p_opportunity)
    won = opportunity & (rng.random(n) < p_win)
    cycle = np.exp(np.log(cycle_median) + cycle_sigma * rng.standard_normal(n))
    no_opportunity_close = 20.0 + rng.exponential(45.0, n)

    t_assign = assign_delay
    t_decision = t_assign + decision_delay
    t_opportunity = t_decision + opportunity_delay
    t_close = np.where(opportunity, t_opportunity + cycle, t_decision + no_opportunity_close)

    budget = window_days - t_opportunity
    within = np.where(
        budget > 0,
        ndtr((np.log(np.maximum(budget, 1e-9)) - np.log(cycle_median)) / cycle_sigma),
        0.0,
    )
    p_converted = p_accept * p_opportunity * p_win * within
    p_accepted = p_accept * (t_decision <= window_days)

    # Recycling: some rejected leads come back later, after the scoring window.
    recycled = (~accepted) & (rng.random(n) < 0.12)
    t_recycle = t_decision + window_days + rng.exponential(60.0, n)
    recycle_accepted = recycled & (rng.random(n) < 0.45)
    recycle_won = recycle_accepted & (rng.random(n) < 0.25)
    t_recycle_decision = t_recycle + 1.0 + rng.exponential(4.0, n)
    t_recycle_close = t_recycle_decision + np.exp(
        np.log(cycle_median) + cycle_sigma * rng.standard_normal(n)
    )
    deal_size = np.round(2_500 * (employees + 5) ** 0.45 * np.exp(rng.normal(0, 0.4, n)), -1)
    reject_reason = rng.integers(0, len(REJECTION_REASONS), n)
    loss_reason = rng.integers(0, len(LOSS_REASONS), n)

    idx = np.arange(n)
    events: list[tuple[np.ndarray, np.ndarray, str, np.ndarray, np.ndarray]] = []

    def add(
        mask: np.ndarray,
        days: np.ndarray,
        stage: str,
        reason: np.ndarray | None = None,
        amount: np.ndarray | None = None,
    ) -> None:
        selected = idx[mask]
        events.append(
            (
                selected,
                days[mask],
                stage,
                (reason[mask] if reason is not None else np.full(len(selected), -1)),
                (amount[mask] if amount is not None else np.full(len(selected), np.nan)),
            )
        )

    everyone = np.ones(n, dtype=bool)
    add(everyone, t_assign, "assigned")
    add(accepted, t_decision, "accepted")
    add(~accepted, t_decision, "rejected", reject_reason)
    add(opportunity, t_opportunity, "opportunity", amount=deal_size)
    add(won, t_close, "won", amount=deal_size)
    add(opportunity & ~won, t_close, "lost", loss_reason + len(REJECTION_REASONS), deal_size)
    add(accepted & ~opportunity, t_close, "lost", loss_reason + len(REJECTION_REASONS))
    add(recycled, t_recycle, "assigned")
    add(recycle_accepted, t_recycle_decision, "accepted")
    add(recycled & ~recycle_accepted, t_recycle_decision, "rejected", reject_reason)
    add(recycle_won, t_recycle_close, "won", amount=deal_size)
    add(
        recycle_accepted & ~recycle_won,
        t_recycle_close,
        "lost",
        loss_reason + len(REJECTION_REASONS),
    )

    lead = np.concatenate([e[0] for e in events])
    days = np.concatenate([e[1] for e in events])
    stage = np.concatenate([np.full(len(e[0]), contract.SALES_STAGES.index(e[2])) for e in events])
    reason = np.concatenate([e[3] for e in events])
    amount = np.concatenate([e[4] for e in events])
    time = block.created[lead] + (days * DAY_NS).astype(np.int64)

    close_days = np.where(accepted, t_close, np.where(recycle_accepted, t_recycle_close, np.inf))
    close_time = np.where(
        np.isfinite(close_days),
        block.created + (np.nan_to_num(close_days, posinf=0) * DAY_NS).astype(np.int64),
        np.iinfo(np.int64).max,
    )
    keep = time <= world.horizon_ns
    return SalesPath(
        lead[keep],
        time[keep],
        stage[keep],
        owner[lead[keep]],
        reason[keep],
        amount[keep],
        close_time,
        p_accepted,
        p_converted,
    )


def _simulate_touches(
    settings: GenerateParams,
    world: World,
    block: LeadBlock,
    close_time: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Touch events: per day and type, Poisson counts whose rate follows the lead's intent."""
    n = len(block.created)
    days = settings.simulate_days
    day = np.arange(days, dtype=float)
    intent = (0.4 * block.fit + block.interest)[:, None] + block.slope[:, None] * (
        day[None, :] / 30.0
    )
    fade = np.exp(-day / 45.0)[None, :]
    # The base rates above average about 14.4 touches per lead in this world; scale to the param.
    scale = settings.touches_per_lead / 14.4
    type_names = list(TOUCH_PROFILES)
    counts = np.empty((n, days, len(type_names)), dtype=np.int16)
    for k, name in enumerate(type_names):
        base, sensitivity, _ = TOUCH_PROFILES[name]
        rate = scale * base * np.exp(np.clip(sensitivity * intent, -4.0, 3.0)) * fade
        counts[:, :, k] = rng.poisson(rate)
    # No emails after an unsubscribe.
    unsubscribe = type_names.index("unsubscribe")
    unsubscribed = np.cumsum(counts[:, :, unsubscribe], axis=1) > 0
    first_day_unsubscribed = np.roll(unsubscribed, 1, axis=1)
    first_day_unsubscribed[:, 0] = False
    for name in EMAIL_TOUCHES:
        counts[:, :, type_names.index(name)][first_day_unsubscribed] = 0
    lead, event_day, kind = np.nonzero(counts)
    repeat = counts[lead, event_day, kind].astype(np.int64)
    lead = np.repeat(lead, repeat)
    event_day = np.repeat(event_day, repeat)
    kind = np.repeat(kind, repeat)
    offset_ns = ((event_day + rng.random(len(lead))) * DAY_NS).astype(np.int64)
    time = block.created[lead] + offset_ns
    keep = (time <= world.horizon_ns) & (time < close_time[lead])
    lead, time, kind = lead[keep], time[keep], kind[keep]
    order = np.lexsort((time, lead))
    return lead[order], time[order], kind[order]


def _touch_campaigns(
    world: World,
    block: LeadBlock,
    lead: np.ndarray,
    time: np.ndarray,
    kind: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Campaign behind each touch: the running campaign of its channel, or the lead's own."""
    campaign = np.full(len(lead), -1, dtype=np.int64)
    channel_index = {c.name: i for i, c in enumerate(CHANNEL_PROFILES)}
    for k, name in enumerate(TOUCH_PROFILES):
        behind = TOUCH_PROFILES[name][2]
        if behind is None:
            continue
        selected = np.flatnonzero(kind == k)
        if behind == "source":
            campaign[selected] = block.campaign[lead[selected]]
            continue
        channel = np.full(len(selected), channel_index[behind])
        campaign[selected] = _campaign_at(
            world, channel, time[selected], rng.integers(0, 2, len(selected))
        )
    return campaign, campaign < 0


class _Writers:
    """One Parquet writer per table, opened lazily, so chunks stream to disk."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.writers: dict[str, pq.ParquetWriter] = {}

    def write(self, name: str, table: pa.Table) -> None:
        if name not in self.writers:
            self.writers[name] = pq.ParquetWriter(
                self.out / f"{name}.parquet", table.schema, compression="zstd"
            )
        self.writers[name].write_table(table, row_group_size=1_000_000)

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()


def simulate(settings: GenerateParams, out: Path, window_days: int = 90) -> dict[str, int]:
    """Simulate the CRM and write its tables as Parquet into ``out``; returns row counts.

    ``window_days`` is the quality-lead window of truth.parquet's probabilities.
    """
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(settings.seed)
    world = _build_world(settings, rng)
    created = _creation_times(settings, world, rng)
    width = max(7, len(str(settings.leads)))
    lead_ids = _ids("L", settings.leads, width)
    campaign_ids = _ids("C", len(world.campaigns), 5)
    account_ids = _ids("A", len(world.accounts), width)
    rep_ids = _ids("R", settings.reps, 3)
    touch_dictionary = pa.array(contract.TOUCH_TYPES)
    stage_dictionary = pa.array(contract.SALES_STAGES)
    reason_dictionary = pa.array(REJECTION_REASONS + LOSS_REASONS)
    sources = pa.array([s for c in CHANNEL_PROFILES for s in c.sources])
    countries = pa.array([c for c, _ in COUNTRIES])
    seniority_names = pa.array([s for s, _, _, _ in SENIORITIES])
    department_names = pa.array([d for d, _, _, _ in DEPARTMENTS])
    titles = pa.array([t.format(d) for _, _, _, t in SENIORITIES for _, _, _, d in DEPARTMENTS])

    leads_per_campaign = np.zeros(len(world.campaigns), dtype=np.int64)
    counts = {"leads": 0, "touches": 0, "sales_events": 0}
    writers = _Writers(out)
    try:
        for begin in range(0, settings.leads, CHUNK_LEADS):
            end = min(begin + CHUNK_LEADS, settings.leads)
            block = _simulate_leads(settings, world, created[begin:end], rng)
            sales = _simulate_sales(world, block, rng, window_days)
            t_lead, t_time, t_kind = _simulate_touches(
                settings, world, block, sales.close_time, rng
            )
            t_campaign, t_no_campaign = _touch_campaigns(world, block, t_lead, t_time, t_kind, rng)
            np.add.at(leads_per_campaign, block.campaign, 1)
            n = end - begin
            no_account = block.account < 0
            writers.write(
                "leads",
                pa.table(
                    {
                        "lead_id": lead_ids[begin:end],
                        "created_at": _timestamps(block.created),
                        "campaign_id": _take_strings(campaign_ids, block.campaign),
                        "account_id": _take_strings(
                            account_ids, np.maximum(block.account, 0), no_account
                        ),
                        "source": _take_strings(sources, block.source),
                        "job_title": _take_strings(
                            titles, block.seniority * len(DEPARTMENTS) + block.department
                        ),
                        "seniority": _take_strings(seniority_names, block.seniority),
                        "department": _take_strings(department_names, block.department),
                        "country": _take_strings(countries, block.country),
                        **_identities(settings.seed + begin, n, block.account),
                    },
                    schema=contract.LEADS.arrow_schema(),
                ),
            )
            writers.write(
                "touches",
                pa.table(
                    {
                        "lead_id": lead_ids.take(pa.array(t_lead + begin)),
                        "occurred_at": _timestamps(t_time),
                        "touch_type": _take_strings(touch_dictionary, t_kind),
                        "campaign_id": _take_strings(
                            campaign_ids, np.maximum(t_campaign, 0), t_no_campaign
                        ),
                    },
                    schema=contract.TOUCHES.arrow_schema(),
                ),
            )
            order = np.lexsort((sales.stage, sales.time, sales.lead))
            writers.write(
                "sales_events",
                pa.table(
                    {
                        "lead_id": lead_ids.take(pa.array(sales.lead[order] + begin)),
                        "occurred_at": _timestamps(sales.time[order]),
                        "stage": _take_strings(stage_dictionary, sales.stage[order]),
                        "owner_id": _take_strings(rep_ids, sales.owner[order]),
                        "reason": _take_strings(
                            reason_dictionary,
                            np.maximum(sales.reason[order], 0),
                            sales.reason[order] < 0,
                        ),
                        "amount": pa.array(sales.amount[order], from_pandas=True),
                    },
                    schema=contract.SALES_EVENTS.arrow_schema(),
                ),
            )
            writers.write(
                "truth",
                pa.table(
                    {
                        "lead_id": lead_ids[begin:end],
                        "p_accepted": pa.array(sales.p_accepted),
                        "p_converted": pa.array(sales.p_converted),
                    }
                ),
            )
            counts["leads"] += n
            counts["touches"] += len(t_lead)
            counts["sales_events"] += len(order)
            logger.debug("simulated leads %d..%d", begin, end)
    finally:
        writers.close()

    _write_campaigns(world, leads_per_campaign, campaign_ids, rng, out)
    _write_accounts(world, account_ids, out)
    counts["campaigns"] = len(world.campaigns)
    counts["accounts"] = len(world.accounts)
    if settings.dirty:
        from features.ingest.defects import add_defects

        counts["defects"] = add_defects(out, rng, world.horizon_ns)
    return counts


def _write_campaigns(
    world: World,
    leads_per_campaign: np.ndarray,
    campaign_ids: pa.Array,
    rng: np.random.Generator,
    out: Path,
) -> None:
    campaigns = world.campaigns
    channel = campaigns["channel_index"].to_numpy()
    cost = np.array([c.cost_per_lead for c in CHANNEL_PROFILES])[channel]
    # Spend follows leads bought, with noise; campaigns with no lead still cost something.
    spend = np.round(cost * (leads_per_campaign + 2) * np.exp(rng.normal(0, 0.25, len(channel))), 2)
    ended = campaigns["ended_at"]
    ended_ns = ended.fillna(0).to_numpy(dtype=np.int64)
    names = [
        f"{CHANNEL_PROFILES[c].name.replace('_', ' ').title()} "
        f"{pd.Timestamp(s, tz='UTC'):%Y-%m} #{i + 1}"
        for i, (c, s) in enumerate(zip(channel, campaigns["started_at"], strict=True))
    ]
    table = pa.table(
        {
            "campaign_id": campaign_ids,
            "name": pa.array(names),
            "channel": pa.array([CHANNEL_PROFILES[c].name for c in channel]),
            "started_at": _timestamps(campaigns["started_at"].to_numpy(dtype=np.int64)),
            "ended_at": pa.array(
                ended_ns // 1000, mask=ended.isna().to_numpy(), type=pa.int64()
            ).cast(pa.timestamp("us", tz="UTC")),
            "spend": pa.array(spend),
        },
        schema=contract.CAMPAIGNS.arrow_schema(),
    )
    pq.write_table(table, out / "campaigns.parquet", compression="zstd")


def _write_accounts(world: World, account_ids: pa.Array, out: Path) -> None:
    accounts = world.accounts
    table = pa.table(
        {
            "account_id": account_ids,
            "industry": pa.array([INDUSTRIES[i][0] for i in accounts["industry"]]),
            "country": pa.array([COUNTRIES[i][0] for i in accounts["country"]]),
            "employees": pa.array(accounts["employees"].to_numpy(dtype=float)),
            "annual_revenue": pa.array(accounts["annual_revenue"].to_numpy(dtype=float)),
        },
        schema=contract.ACCOUNTS.arrow_schema(),
    )
    pq.write_table(table, out / "accounts.parquet", compression="zstd")
