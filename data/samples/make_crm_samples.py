"""Write the small Salesforce and HubSpot sample exports in ``data/samples/{salesforce,hubspot}``.

The files are written by the project (no customer data), in the layouts of the vendors' standard
exports (Salesforce object API names as a Data Loader / SOQL export gives them; HubSpot property
labels as the contacts and deals exports give them), with realistic values: lead sources, titles,
industries and company sizes drive how often sales accepts a lead and how often it is won, and
the lifecycle/stage dates follow each other as they do in a CRM (created → qualified or converted
→ deal created → closed). Post-outcome columns (``Status``, ``Rating``, ``Lead Status``,
``Lifecycle Stage``, ``Became a Customer Date``…) are written from the outcome, as sales writes
them, which is why the shipped mappings keep them out of the features.

Same seed, same bytes: ``python data/samples/make_crm_samples.py`` rewrites the committed files.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SEED = 20250630
START = dt.datetime(2024, 1, 2, tzinfo=dt.UTC)
LEAD_DAYS = 420  # leads are created over ~14 months
END = dt.datetime(2025, 6, 30, 18, tzinfo=dt.UTC)  # the export date: nothing happens after it

COUNTRIES = ("United States", "Germany", "United Kingdom", "France", "Canada", "Netherlands")
COUNTRY_WEIGHTS = (0.42, 0.18, 0.14, 0.1, 0.09, 0.07)
TITLES = (
    ("Chief Technology Officer", 0.9),
    ("VP Marketing", 0.7),
    ("Head of Sales", 0.6),
    ("IT Director", 0.6),
    ("Marketing Manager", 0.2),
    ("Operations Manager", 0.1),
    ("Software Engineer", -0.2),
    ("Marketing Assistant", -0.4),
    ("Student", -1.5),
)
INDUSTRIES = (
    ("Technology", 0.5),
    ("Finance", 0.3),
    ("Manufacturing", 0.1),
    ("Healthcare", 0.0),
    ("Retail", -0.2),
    ("Education", -0.6),
)


def _iso_z(moment: dt.datetime) -> str:
    """Salesforce datetime fields: ISO 8601 in UTC with milliseconds."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _date(moment: dt.datetime) -> str:
    """Salesforce date fields (ConvertedDate, CloseDate, FirstRespondedDate): a day, no time."""
    return moment.strftime("%Y-%m-%d")


def _hubspot(moment: dt.datetime) -> str:
    """HubSpot exports write times as ``YYYY-MM-DD HH:MM`` (here in UTC)."""
    return moment.strftime("%Y-%m-%d %H:%M")


def _next_day(moment: dt.datetime, days: float) -> dt.datetime:
    """``days`` after ``moment``, at least on the next calendar day, so a date-only field (read
    as midnight) is never before the datetime it follows."""
    later = moment + dt.timedelta(days=max(days, 1.0))
    floor = dt.datetime.combine(moment.date() + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
    return max(later, floor + dt.timedelta(hours=9))


def _created(rng: np.random.Generator) -> dt.datetime:
    day = rng.uniform(0, LEAD_DAYS) ** 0.92 * LEAD_DAYS**0.08  # a little growth over time
    moment = START + dt.timedelta(days=float(day))
    if moment.weekday() >= 5 and rng.random() < 0.7:  # fewer leads at weekends
        moment += dt.timedelta(days=7 - moment.weekday())
    return moment.replace(hour=int(rng.integers(7, 20)), minute=int(rng.integers(0, 60)))


def _write(path: Path, header: Sequence[str], rows: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def _sigmoid(value: float) -> float:
    return float(1.0 / (1.0 + np.exp(-value)))


def _sf_id(prefix: str, number: int) -> str:
    """An 18-character Salesforce id (key prefix, org pod, number)."""
    return f"{prefix}5g{number:010d}AAA"


# ----------------------------------------------------------------------------- Salesforce
SF_SOURCES = (  # LeadSource picklist value, share, quality
    ("Web", 0.3, 0.2),
    ("Webinar", 0.14, 0.5),
    ("Trade Show", 0.1, 0.3),
    ("Partner Referral", 0.1, 0.9),
    ("Employee Referral", 0.05, 1.0),
    ("Advertisement", 0.14, -0.3),
    ("Purchased List", 0.12, -1.2),
    ("Phone Inquiry", 0.05, 0.6),
)
SF_CAMPAIGNS = (  # Name, Type, LeadSource it brings, start day offset, days, cost
    ("Q1 Product Webinar Series", "Webinar", "Webinar", -20, 120, 8500.0),
    ("Cloud Summit Booth", "Trade Show", "Trade Show", 30, 4, 24000.0),
    ("Search Ads EMEA", "Advertisement", "Advertisement", -10, 400, 31000.0),
    ("Nurture Newsletter", "Email", "Web", -30, 460, 2400.0),
    ("Partner Co-Marketing", "Partners", "Partner Referral", 0, 380, 12000.0),
    ("Autumn Webinar Series", "Webinar", "Webinar", 250, 110, 7200.0),
    ("Industry Expo 2024", "Conference", "Trade Show", 280, 3, 18500.0),
)
SF_RESPONSES = {  # campaign type → CampaignMember Status values (sent, responded)
    "Webinar": ("Registered", "Attended"),
    "Trade Show": ("Sent", "Visited Booth"),
    "Conference": ("Sent", "Visited Booth"),
    "Advertisement": ("Sent", "Clicked"),
    "Email": ("Sent", "Clicked"),
    "Partners": ("Sent", "Responded"),
}


def salesforce(out: Path, leads: int = 480, seed: int = SEED) -> None:
    """``Lead.csv`` (a SOQL export of Lead with its converted opportunity's fields),
    ``Campaign.csv`` and ``CampaignMember.csv``."""
    rng = np.random.default_rng(seed)
    owners = [_sf_id("005", 100 + i) for i in range(8)]
    owner_ease = rng.normal(0, 0.4, len(owners))
    campaigns = []
    for i, (name, kind, source, offset, days, cost) in enumerate(SF_CAMPAIGNS):
        start = START + dt.timedelta(days=offset)
        end = start + dt.timedelta(days=days)
        campaigns.append(
            {
                "Id": _sf_id("701", 500 + i),
                "Name": name,
                "Type": kind,
                "Source": source,
                "StartDate": start,
                "EndDate": min(end, END),
                "ActualCost": cost,
            }
        )
    lead_rows, member_rows = [], []
    member_number = 0
    sources = [s for s, _, _ in SF_SOURCES]
    source_p = np.array([p for _, p, _ in SF_SOURCES])
    for number in range(leads):
        lead_id = _sf_id("00Q", 1000 + number)
        created = _created(rng)
        source_index = int(rng.choice(len(sources), p=source_p / source_p.sum()))
        source = sources[source_index]
        title, title_q = TITLES[int(rng.integers(len(TITLES)))]
        industry, industry_q = INDUSTRIES[int(rng.integers(len(INDUSTRIES)))]
        employees = int(np.clip(rng.lognormal(5.0, 1.4), 3, 60000))
        revenue = round(employees * rng.lognormal(11.8, 0.5), -3)
        country = str(rng.choice(COUNTRIES, p=COUNTRY_WEIGHTS))
        owner = int(rng.integers(len(owners)))
        size_q = 0.35 * (np.log10(employees) - 2.3)
        quality = SF_SOURCES[source_index][2] + title_q + industry_q + size_q
        # Campaign responses before acceptance carry signal too: engaged leads convert more.
        active = [c for c in campaigns if c["StartDate"] <= created <= c["EndDate"]]
        own = [c for c in active if c["Source"] == source]
        engaged = rng.random() < _sigmoid(quality - 0.3)
        responses: list[tuple[dict[str, object], dt.datetime, bool]] = []
        for campaign in (own[:1] + [c for c in active if c not in own][:2])[:2]:
            added = created + dt.timedelta(minutes=int(rng.integers(1, 90)))
            responded = engaged and rng.random() < 0.75
            responses.append((campaign, added, responded))
        p_accept = _sigmoid(-1.0 + 0.9 * quality + owner_ease[owner] + 0.6 * engaged)
        accepted = rng.random() < p_accept
        converted_at = _next_day(created, float(rng.gamma(2.0, 8.0))) if accepted else None
        if converted_at is not None and converted_at > END - dt.timedelta(days=1):
            accepted, converted_at = False, None  # not yet: still open at the export date
        status = "Open - Not Contacted"
        rating = ""
        opp_id = stage = close = amount = is_won = is_closed = ""
        if converted_at is not None:
            status = "Closed - Converted"
            won = rng.random() < _sigmoid(-0.6 + 0.8 * quality)
            closed_at = _next_day(converted_at, float(rng.gamma(2.0, 18.0 + employees**0.25)))
            opp_id = _sf_id("006", 3000 + number)
            amount = f"{round(rng.lognormal(9.6, 0.6) * (1 + np.log10(employees)), -2):.0f}"
            if closed_at < END:
                stage, is_won, is_closed = (
                    ("Closed Won", "true", "true") if won else ("Closed Lost", "false", "true")
                )
                close = _date(closed_at)
            else:
                stage = str(
                    rng.choice(["Qualification", "Proposal/Price Quote", "Negotiation/Review"])
                )
                is_won, is_closed = "false", "false"
                close = _date(closed_at)  # the expected close date of an open opportunity
            rating = "Hot" if won else str(rng.choice(["Hot", "Warm"], p=[0.3, 0.7]))
        else:
            age = (END - created).days
            if age > 45:
                status = str(
                    rng.choice(["Closed - Not Converted", "Working - Contacted"], p=[0.7, 0.3])
                )
                rating = str(rng.choice(["Cold", "Warm", ""], p=[0.6, 0.2, 0.2]))
            elif age > 5:
                status = "Working - Contacted"
                rating = str(rng.choice(["Warm", "Cold", ""], p=[0.3, 0.3, 0.4]))
        for campaign, added, responded in responses:
            sent, answer = SF_RESPONSES[str(campaign["Type"])]
            first = _next_day(added, float(rng.gamma(1.5, 3.0))) if responded else None
            if first is not None and (first > END or (converted_at and first >= converted_at)):
                first = None
            member_number += 1
            member_rows.append(
                [
                    _sf_id("00v", 7000 + member_number),
                    str(campaign["Id"]),
                    lead_id,
                    answer if first else sent,
                    "true" if first else "false",
                    _iso_z(added),
                    _date(first) if first else "",
                ]
            )
        lead_rows.append(
            [
                lead_id,
                _iso_z(created),
                source,
                status,
                "true" if converted_at else "false",
                _date(converted_at) if converted_at else "",
                opp_id,
                stage,
                close,
                amount,
                is_won,
                is_closed,
                industry,
                title,
                rating,
                str(employees),
                f"{revenue:.0f}",
                country,
                owners[owner],
            ]
        )
    _write(
        out / "Lead.csv",
        [
            "Id",
            "CreatedDate",
            "LeadSource",
            "Status",
            "IsConverted",
            "ConvertedDate",
            "ConvertedOpportunityId",
            "ConvertedOpportunity.StageName",
            "ConvertedOpportunity.CloseDate",
            "ConvertedOpportunity.Amount",
            "ConvertedOpportunity.IsWon",
            "ConvertedOpportunity.IsClosed",
            "Industry",
            "Title",
            "Rating",
            "NumberOfEmployees",
            "AnnualRevenue",
            "Country",
            "OwnerId",
        ],
        lead_rows,
    )
    _write(
        out / "Campaign.csv",
        ["Id", "Name", "Type", "Status", "StartDate", "EndDate", "ActualCost"],
        [
            [
                str(c["Id"]),
                str(c["Name"]),
                str(c["Type"]),
                "Completed" if c["EndDate"] < END else "In Progress",
                _date(c["StartDate"]),
                _date(c["EndDate"]),
                f"{c['ActualCost']:.2f}",
            ]  # type: ignore[str-format]
            for c in campaigns
        ],
    )
    _write(
        out / "CampaignMember.csv",
        [
            "Id",
            "CampaignId",
            "LeadId",
            "Status",
            "HasResponded",
            "CreatedDate",
            "FirstRespondedDate",
        ],
        member_rows,
    )


# ----------------------------------------------------------------------------- HubSpot
HS_SOURCES = (  # Original Source, share, quality
    ("Organic Search", 0.3, 0.3),
    ("Paid Search", 0.18, -0.1),
    ("Email Marketing", 0.12, 0.2),
    ("Social Media", 0.1, -0.4),
    ("Paid Social", 0.1, -0.6),
    ("Referrals", 0.08, 0.9),
    ("Direct Traffic", 0.08, 0.4),
    ("Offline Sources", 0.04, 0.1),
)
HS_OPEN_DEAL_STAGES = (
    "Appointment Scheduled",
    "Qualified To Buy",
    "Presentation Scheduled",
    "Decision Maker Bought-In",
    "Contract Sent",
)


def hubspot(out: Path, contacts: int = 560, seed: int = SEED + 1) -> None:
    """``contacts.csv`` (HubSpot contacts export) and ``deals.csv`` (deals export with the
    associated contact's record ID)."""
    rng = np.random.default_rng(seed)
    sources = [s for s, _, _ in HS_SOURCES]
    source_p = np.array([p for _, p, _ in HS_SOURCES])
    contact_rows, deal_rows = [], []
    for number in range(contacts):
        record = str(51000 + number * 7 + int(rng.integers(0, 7)))
        created = _created(rng)
        source_index = int(rng.choice(len(sources), p=source_p / source_p.sum()))
        title, title_q = TITLES[int(rng.integers(len(TITLES)))]
        country = str(rng.choice(COUNTRIES, p=COUNTRY_WEIGHTS))
        quality = HS_SOURCES[source_index][2] + title_q + rng.normal(0, 0.5)
        sessions_before = int(rng.poisson(np.exp(0.6 + 0.4 * quality)))  # visits when captured
        mql = rng.random() < _sigmoid(0.2 + quality)
        sql_at = deal_at = close_at = customer_at = None
        won = False
        if mql and rng.random() < _sigmoid(-0.3 + 0.9 * quality):
            sql_at = _next_day(created, float(rng.gamma(2.0, 6.0)))
            if rng.random() < 0.8:
                deal_at = _next_day(sql_at, float(rng.gamma(1.5, 4.0)))
                close_at = _next_day(deal_at, float(rng.gamma(2.0, 15.0)))
                won = rng.random() < _sigmoid(-0.4 + 0.9 * quality)
        if sql_at is not None and sql_at > END:
            sql_at = deal_at = close_at = None
        if deal_at is not None and deal_at > END:
            deal_at = close_at = None
        if close_at is not None and close_at > END:
            close_at = None
            won = False
        if close_at is not None and won:
            customer_at = close_at + dt.timedelta(minutes=int(rng.integers(1, 30)))
            customer_at = min(customer_at, END)
        if customer_at is not None:
            stage = "Customer" if rng.random() < 0.9 else "Evangelist"
            lead_status = ""
        elif deal_at is not None:
            stage, lead_status = "Opportunity", "Open Deal"
        elif sql_at is not None:
            stage, lead_status = (
                "Sales Qualified Lead",
                str(rng.choice(["Connected", "In Progress", "Bad Timing"])),
            )
        elif mql:
            stage, lead_status = (
                "Marketing Qualified Lead",
                str(rng.choice(["Attempted to Contact", "Unqualified", "Open"], p=[0.4, 0.4, 0.2])),
            )
        else:
            stage = "Subscriber" if rng.random() < 0.35 else "Lead"
            lead_status = str(rng.choice(["New", "Unqualified", ""], p=[0.4, 0.3, 0.3]))
        # Counted up to the export date, so they include the visits of customers after the deal.
        sessions = sessions_before + int(rng.poisson(6 if customer_at else 1.5))
        pageviews = sessions * int(rng.integers(1, 5)) + int(rng.integers(0, 4))
        contact_rows.append(
            [
                record,
                _hubspot(created),
                stage,
                sources[source_index],
                lead_status,
                str(sessions),
                str(pageviews),
                _hubspot(customer_at) if customer_at else "",
                _hubspot(sql_at) if sql_at else "",
                title,
                country,
            ]
        )
        if deal_at is not None:
            amount = f"{round(rng.lognormal(8.8, 0.7), -1):.2f}"
            if close_at is not None:
                deal_stage = "Closed Won" if won else "Closed Lost"
                close_text = _hubspot(close_at)
            else:
                deal_stage = str(rng.choice(HS_OPEN_DEAL_STAGES))
                close_text = _hubspot(_next_day(END, float(rng.gamma(2.0, 10.0))))  # expected
            deal_rows.append(
                [
                    str(900000 + number),
                    f"{title.split()[-1]} deal {record}",
                    deal_stage,
                    close_text,
                    amount,
                    _hubspot(deal_at),
                    "Sales Pipeline",
                    record,
                ]
            )
    _write(
        out / "contacts.csv",
        [
            "Record ID",
            "Create Date",
            "Lifecycle Stage",
            "Original Source",
            "Lead Status",
            "Number of Sessions",
            "Number of Pageviews",
            "Became a Customer Date",
            "Became a Sales Qualified Lead Date",
            "Job Title",
            "Country/Region",
        ],
        contact_rows,
    )
    _write(
        out / "deals.csv",
        [
            "Record ID",
            "Deal Name",
            "Deal Stage",
            "Close Date",
            "Amount",
            "Create Date",
            "Pipeline",
            "Associated Contact IDs",
        ],
        deal_rows,
    )


def main() -> None:
    salesforce(HERE / "salesforce")
    hubspot(HERE / "hubspot")


if __name__ == "__main__":
    main()
