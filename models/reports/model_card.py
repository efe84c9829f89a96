"""The model card (Markdown): what the score means, on which data, how good it is beside the
baselines, what drives it, what it cannot do, and the KPIs both teams read."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from features.params import Params
from models.reports.evaluation import METRICS, MODELS, Evaluation
from models.scorer import Definition, LeadScorer

MODEL_WORDS: dict[str, str] = {
    "model": "model (chosen candidate, calibrated)",
    "rules": "rules (points score)",
    "logistic": "logistic regression",
    "truth": "simulator truth",
}
METRIC_WORDS: dict[str, str] = {
    "roc_auc": "ROC AUC ↑",
    "pr_auc": "PR AUC (average precision) ↑",
    "brier": "Brier score ↓",
    "log_loss": "log loss ↓",
    "ece": "expected calibration error ↓",
    "lift_top_decile": "lift in the top 10 % ↑",
    "capture_top_10": "positives captured in the top 10 % ↑",
    "capture_top_20": "positives captured in the top 20 % ↑",
    "capture_top_30": "positives captured in the top 30 % ↑",
}
GROUP_WORDS = {"by_channel": "channel", "by_month": "month (as_of)"}
KPI_COLUMNS: dict[str, str] = {
    "leads": "leads",
    "accepted_share": "accepted by sales",
    "conversion": "converted",
    "cycle_days_median": "cycle days (median)",
    "cycle_days_p75": "cycle days (p75)",
    "cost_per_lead": "cost / lead",
    "cost_per_accepted": "cost / accepted",
    "cost_per_customer": "cost / customer",
    "matured_leads": "matured",
    "predicted_conversion": "predicted",
    "actual_conversion": "actual",
}
SHARES = ("accepted_share", "conversion", "predicted_conversion", "actual_conversion")
MONEY = ("cost_per_lead", "cost_per_accepted", "cost_per_customer")
DAYS = ("cycle_days_median", "cycle_days_p75")


@dataclass
class CardInputs:
    definition: Definition
    metrics: Mapping[str, Any]
    by_group: Mapping[str, Any]
    """Per target: by_channel / by_month → group → n, positives and each model's metrics."""
    splits: pd.DataFrame
    """Per split: snapshots, labelled, positives (primary target)."""
    window: Mapping[str, str]
    """first_as_of, last_as_of, horizon, first_created, last_created."""
    top_fields: Sequence[Mapping[str, Any]]
    kpis: Mapping[str, Any]
    leakage_auc: float
    min_group_size: int
    random_split: bool = False
    simulated: bool = False
    censored: int = 0
    snapshots: int = 0
    shap_rows: int = 0
    extra_limitations: list[str] = field(default_factory=list)


def _cell(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value).replace("|", "\\|")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|",
    ]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def segments_section(metrics: Mapping[str, Any], primary: str) -> str:
    """Per segment: its size, the model its leads get, and the primary target's test ROC AUC
    and ECE of that model beside the pooled model's on the segment's rows."""
    segments = metrics.get("segments")
    if not isinstance(segments, Mapping):
        return "One pooled model for every lead (`segments.by` is null)."
    rows = []
    for name, entry in segments["segments"].items():
        target = entry.get("targets", {}).get(primary, {})
        test = target.get("test", {})
        chosen_on = target.get("calibration_roc_auc", {})
        rows.append(
            [
                name,
                entry["rows"],
                entry["train_positives"],
                entry["model"],
                chosen_on.get("segment"),
                chosen_on.get("pooled"),
                test.get("rows"),
                test.get("model", {}).get("roc_auc"),
                test.get("pooled", {}).get("roc_auc"),
                test.get("model", {}).get("ece"),
                test.get("pooled", {}).get("ece"),
                entry.get("reason", ""),
            ]
        )
    header = [
        "segment", "snapshots", "train positives", "model", "calib. AUC own", "calib. AUC pooled",
        "test rows", "test AUC used", "test AUC pooled", "test ECE used", "test ECE pooled", "why",
    ]  # fmt: skip
    intro = (
        f"By `{segments['by']}`. A segment keeps its own model only if it beat the pooled "
        f"model on the segment's calibration rows (by more than {segments['min_gain']} ROC "
        f"AUC); the test columns compare the model used with the pooled one on the segment's "
        f"test rows (`{primary}`). Used: {', '.join(segments['used']) or 'none'}.\n\n"
    )
    return intro + markdown_table(header, rows)


def selection_section(metrics: Mapping[str, Any], primary: str) -> str:
    """Per target: every candidate's validation ROC AUC and which was chosen."""
    parts = []
    for target, entry in metrics.items():
        if not isinstance(entry, Mapping) or "selection" not in entry:
            continue
        selection = entry["selection"]
        judged = (
            "on the valid slice"
            if selection["method"] == "valid"
            else "by time-ordered cross-validation over train + valid in "
            f"{selection['folds']} folds"
        )
        rows = [
            [c["name"], c["valid_roc_auc"], c.get("trees"), "chosen" if c["chosen"] else ""]
            for c in selection["candidates"]
        ]
        title = f"### `{target}`" + (" (primary target)" if target == primary else "")
        table = markdown_table(["candidate", "validation ROC AUC", "trees", ""], rows)
        parts.append(f"{title}\n\nJudged {judged}; chosen: {selection['chosen']}.\n\n{table}")
    return "\n\n".join(parts) or "No candidates recorded (a model trained before selection)."


def metrics_section(metrics: Mapping[str, Any], primary: str) -> str:
    others = (t for t, v in metrics.items() if isinstance(v, Mapping) and "model" in v)
    targets = [primary, *sorted(t for t in others if t != primary)]
    parts = []
    for target in targets:
        entry = metrics[target]
        models = [m for m in MODELS if m in entry]
        header = ["metric", *(MODEL_WORDS[m] for m in models)]
        if "truth" in entry:
            header.append(MODEL_WORDS["truth"])
        rows = []
        for name in METRICS:
            row: list[Any] = [METRIC_WORDS[name], *(entry[m][name] for m in models)]
            if "truth" in entry:
                row.append(entry["truth"]["roc_auc"] if name == "roc_auc" else None)
            rows.append(row)
        title = f"### `{target}`" + (" (primary target)" if target == primary else "")
        note = f"{entry['n_test']:,} labelled test snapshots, {entry['positives_test']:,} positive."
        if entry.get("model_truth_auc_ratio") is not None:
            note += (
                f" The model reaches {entry['model_truth_auc_ratio']:.1%} of the ROC AUC of the "
                "simulator's true probabilities on the same snapshots."
            )
        parts.append(f"{title}\n\n{note}\n\n{markdown_table(header, rows)}")
    return "\n\n".join(parts)


def group_section(by_group: Mapping[str, Any], primary: str) -> str:
    groups = by_group.get(primary, {})
    parts = []
    for key, word in GROUP_WORDS.items():
        if not groups.get(key):
            continue
        rows = [
            [
                name,
                entry["n"],
                entry["positives"],
                *(entry[m]["roc_auc"] for m in MODELS),
                entry["model"]["ece"],
            ]
            for name, entry in groups[key].items()
        ]
        header = [word, "snapshots", "positives", *(f"ROC AUC {m}" for m in MODELS), "ECE model"]
        parts.append(markdown_table(header, rows))
    return "\n\n".join(parts)


def kpi_table(rows: Sequence[Mapping[str, Any]], key: str, currency: str) -> str:
    header = [key, *(KPI_COLUMNS.values())]
    body = []
    for row in rows:
        if not row.get("leads"):
            continue  # months with spend but no leads (campaigns started earlier): in kpis.json
        values: list[Any] = [row[key]]
        for name in KPI_COLUMNS:
            value = row.get(name)
            if value is not None and name in SHARES:
                values.append(f"{value:.1%}")
            elif value is not None and name in MONEY:
                values.append(f"{value:,.0f} {currency}")
            elif value is not None and name in DAYS:
                values.append(f"{value:.1f}")
            else:
                values.append(value)
        body.append(values)
    return markdown_table(header, body)


def kpi_section(kpis: Mapping[str, Any]) -> str:
    currency = kpis.get("currency", "")
    parts = [
        "Computed once from the validated tables (`artifacts/kpis.json` holds every table, "
        "including by campaign). 'predicted' / 'actual': the primary target's mean predicted "
        f"probability at lead creation vs the share reached within {kpis.get('window_days')} "
        "days, over leads whose window had ended by the horizon (in-sample for months the model "
        "trained on). Spend per month is each campaign's spend prorated by its active time in "
        "the month. Recent months look worse partly because their leads had less time."
    ]
    if kpis.get("by_channel"):
        parts.append("### By channel\n\n" + kpi_table(kpis["by_channel"], "channel", currency))
    if kpis.get("by_month"):
        parts.append(
            "### By month of creation\n\n" + kpi_table(kpis["by_month"], "month", currency)
        )
    if not kpis.get("by_channel") and not kpis.get("by_month") and kpis.get("by_campaign"):
        parts.append(
            "### By campaign\n\n" + kpi_table(kpis["by_campaign"], "campaign_id", currency)
        )
    if kpis.get("unavailable"):
        items = "\n".join(f"- `{k}`: {v}" for k, v in kpis["unavailable"].items())
        parts.append(f"Unavailable on this data:\n\n{items}")
    return "\n\n".join(parts)


def _targets_with_guard(metrics: Mapping[str, Any], primary: str) -> list[str]:
    guarded = [
        t
        for t, v in metrics.items()
        if isinstance(v, Mapping) and isinstance(v.get("leakage"), Mapping)
    ]
    return sorted(guarded, key=lambda t: (t != primary, t))


def leakage_section(metrics: Mapping[str, Any], primary: str, leakage_auc: float) -> str:
    """The verdict, the flagged columns with why, the per-column figures of the flagged and
    top columns per target, and the feature names that sound post-outcome."""
    suspected = bool(metrics.get("leakage_suspected"))
    targets = _targets_with_guard(metrics, primary)
    too_good = [
        t
        for t, v in metrics.items()
        if isinstance(v, Mapping)
        and isinstance(v.get("model"), Mapping)
        and v["model"].get("roc_auc") is not None
        and v["model"]["roc_auc"] > leakage_auc
    ]
    parts = []
    if suspected:
        parts.append(
            "**Leakage suspected.** Check the columns below for values known only after the "
            "outcome (written by sales after talking to the lead) before using this model; "
            "declare them `post_outcome` in the mapping."
        )
    else:
        parts.append("No leakage flag: no column crosses a threshold below.")
    if too_good:
        parts.append(
            "Test ROC AUC above "
            f"{leakage_auc} (params `train.leakage_auc`) for: "
            + ", ".join(f"`{t}` ({metrics[t]['model']['roc_auc']:.3f})" for t in too_good)
            + "."
        )
    else:
        parts.append(f"Every test ROC AUC is at most {leakage_auc} (params `train.leakage_auc`).")
    if not targets:
        parts.append("The per-column guard did not run for this model (trained before it existed).")
        return "\n\n".join(parts)
    thresholds = metrics[targets[0]]["leakage"].get("thresholds", {})
    parts.append(
        "Per column and target (params `train.leakage`), a column is flagged when alone it "
        f"reaches ROC AUC ≥ {thresholds.get('univariate_auc')} on the train slice (either "
        "direction; categories scored by their out-of-fold positive rate), when it carries more "
        f"than {thresholds.get('shap_share', 0):.0%} of the model's total |SHAP| on the "
        f"validation slice (in models of {thresholds.get('shap_min_columns')} columns or more), "
        "or when retraining without it lowers validation ROC AUC by "
        f"{thresholds.get('drop_auc_delta')} or more (measured for the top columns by |SHAP|, "
        "with cheap retrains)."
    )
    flagged = [
        f"- `{c['column']}` (`{t}`): " + "; ".join(c["reasons"])
        for t in targets
        for c in metrics[t]["leakage"]["columns"]
        if c.get("flagged")
    ]
    parts.append("Flagged columns:\n\n" + ("\n".join(flagged) if flagged else "- none"))
    for t in targets:
        rows = [
            [
                f"`{c['column']}`",
                c["univariate_roc_auc"],
                c["univariate_pr_auc"],
                None if c["shap_share"] is None else f"{c['shap_share']:.1%}",
                c["drop_auc_delta"],
                "**flagged**" if c.get("flagged") else "",
            ]
            for c in metrics[t]["leakage"]["columns"]
        ]
        table = markdown_table(
            [
                "column",
                "univariate ROC AUC",
                "univariate PR AUC",
                "share of |SHAP|",
                "validation AUC lost without it",
                "",
            ],
            rows,
        )
        parts.append(f"### `{t}`: flagged and top columns by |SHAP|\n\n{table}")
    names = metrics[targets[0]]["leakage"].get("name_warnings") or []
    if names:
        parts.append(
            "Feature names that sound like post-outcome columns (a warning, not a flag):\n\n"
            + "\n".join(f"- `{w['column']}`: {w['text']}" for w in names)
        )
    return "\n\n".join(parts)


def limitations(card: CardInputs) -> list[str]:
    items = []
    if card.snapshots:
        items.append(
            f"**Censoring**: {card.censored:,} of {card.snapshots:,} snapshots "
            f"({card.censored / card.snapshots:.0%}) have a {card.definition.window_days}-day "
            "window that ends after the data horizon; they are scored but neither trained on "
            "nor evaluated, so the newest leads are the least represented."
        )
    if card.random_split:
        items.append(
            "**Random split**: the data has no usable timestamps, so train/validation/"
            "calibration/test are stratified random slices; the test metrics are optimistic "
            "compared with scoring future leads."
        )
    else:
        items.append(
            "**Time split**: trained on the oldest snapshots, early-stopped and calibrated on "
            "the next, tested on the newest; the metrics describe one future period, and "
            "drift in channels, campaigns or sales behaviour after it is not covered. Retrain "
            "and recalibrate regularly."
        )
    if card.simulated:
        items.append(
            "**Simulated data**: these figures come from leadscore's CRM simulator, not a real "
            "CRM; they show the pipeline works, not how well it will do on your data."
        )
    if card.definition.source == "flat":
        items.append(
            "**Flat export**: one row per lead without touches or sales history: the model "
            "uses the declared attributes only, and scores a lead once, at creation."
        )
    items += [
        f"**Groups**: per-channel and per-month metrics are reported only for groups of at "
        f"least {card.min_group_size} labelled test snapshots and stay noisy for small ones.",
        "**Explanations** are SHAP attributions of the model's log-odds, not causal effects: "
        "a reason says what moved this score, not what would change the outcome.",
        "**Feedback loop**: sales works the leads the score ranks first, which changes the "
        "outcomes future models learn from.",
        *card.extra_limitations,
    ]
    return items


def render(card: CardInputs) -> str:
    definition = card.definition
    primary = definition.target
    window = card.window
    split_rows = [
        [str(name), int(row["snapshots"]), int(row["labelled"]), int(row["positives"])]
        for name, row in card.splits.iterrows()
    ]
    leakage_text = leakage_section(card.metrics, primary, card.leakage_auc)
    post_outcome = (
        "\n".join(f"- `{name}`" for name in definition.post_outcome)
        if definition.post_outcome
        else "- none declared"
    )
    fields = markdown_table(
        ["business field", "mean abs SHAP (log-odds)", "share", "strongest feature"],
        [
            [
                f["field"],
                f["mean_abs_shap"],
                f"{f['share']:.1%}",
                f"`{f['top_feature']}`: {f['top_feature_description']}",
            ]
            for f in card.top_fields
        ],
    )
    targets = "\n".join(
        f"- `{name}`: reaches {' or '.join(stages)}" for name, stages in definition.targets.items()
    )
    sections = [
        "# Model card: lead scoring",
        "## Quality-lead definition\n\n"
        f"{definition.text}\n\nTargets (each within {definition.window_days} days of "
        f"scoring):\n\n{targets}\n\nData source: {definition.source}.",
        "## Data\n\n"
        + markdown_table(
            ["", "value"],
            [
                ["leads created", f"{window['first_created']} → {window['last_created']}"],
                ["snapshots (as_of)", f"{window['first_as_of']} → {window['last_as_of']}"],
                ["data horizon", window["horizon"]],
                ["outcome window", f"{definition.window_days} days"],
            ],
        )
        + "\n\nRows per split (primary target's labels):\n\n"
        + markdown_table(["split", "snapshots", "labelled", "positives"], split_rows),
        "## Test metrics beside the baselines\n\n"
        "On the labelled `test` snapshots. PR AUC is average precision; calibration error "
        "uses equal-width probability bins.\n\n" + metrics_section(card.metrics, primary),
        "## Model selection\n\nEach target's model was chosen among these candidates on "
        "validation data only (the test slice is never read to choose): LightGBM settings, the "
        "logistic regression and blends of their log-odds (the logistic's weight named).\n\n"
        + selection_section(card.metrics, primary),
        "## Models per segment\n\n" + segments_section(card.metrics, primary),
        f"## By channel and month (`{primary}`)\n\nTest metrics per group "
        f"(`artifacts/metrics_by_group.json` has every metric), groups of at least "
        f"{card.min_group_size} labelled snapshots.\n\n" + group_section(card.by_group, primary),
        f"## What drives the score\n\nMean absolute SHAP contribution of each business field "
        f"(its features summed per lead) for `{primary}`, on {card.shap_rows:,} test "
        f"snapshots.\n\n{fields}",
        f"## Columns excluded as known only after the outcome\n\n{post_outcome}",
        f"## Leakage check\n\n{leakage_text}",
        "## Limitations\n\n" + "\n".join(f"- {item}" for item in limitations(card)),
        "## Shared KPIs\n\n" + kpi_section(card.kpis),
    ]
    return "\n\n".join(sections) + "\n"


def split_counts(snapshots: pd.DataFrame, primary: str) -> pd.DataFrame:
    label = snapshots[f"label_{primary}"]
    frame = pd.DataFrame(
        {"split": snapshots["split"], "labelled": label.notna(), "positives": label == 1}
    )
    counts = frame.groupby("split").agg(
        snapshots=("split", "size"), labelled=("labelled", "sum"), positives=("positives", "sum")
    )
    order = [s for s in ("train", "valid", "calibration", "test") if s in counts.index]
    return counts.loc[order]


def _day(value: Any) -> str:
    return pd.Timestamp(value).strftime("%Y-%m-%d")


def card_inputs(
    snapshots: pd.DataFrame,
    tables: dict[str, pd.DataFrame],
    horizon: pd.Timestamp,
    scorer: LeadScorer,
    evaluation: Evaluation,
    kpis: dict[str, Any],
    params: Params,
    random_split: bool,
    simulated: bool,
) -> CardInputs:
    primary = scorer.definition.target
    created = pd.to_datetime(tables["leads"]["created_at"], utc=True)
    return CardInputs(
        definition=scorer.definition,
        metrics=evaluation.metrics,
        by_group=evaluation.by_group,
        splits=split_counts(snapshots, primary),
        window={
            "first_created": _day(created.min()),
            "last_created": _day(created.max()),
            "first_as_of": _day(snapshots["as_of"].min()),
            "last_as_of": _day(snapshots["as_of"].max()),
            "horizon": horizon.isoformat(),
        },
        top_fields=evaluation.top_fields,
        kpis=kpis,
        leakage_auc=params.train.leakage_auc,
        min_group_size=params.evaluate.min_group_size,
        random_split=random_split,
        simulated=simulated,
        censored=int(snapshots[f"label_{primary}"].isna().sum()),
        snapshots=len(snapshots),
        shap_rows=min(params.evaluate.shap_rows, evaluation.metrics[primary]["n_test"]),
        extra_limitations=reason_notes(scorer),
    )


def reason_notes(scorer: LeadScorer) -> list[str]:
    """What the reasons shown to sales leave out (issue 15): features that are never reasons,
    and reasons withheld where their words would contradict their side."""
    table = scorer.reason_table
    never = [n for n, f in zip(table.names, table.field_of.tolist(), strict=True) if f < 0]
    listed = ", ".join(f"`{name}`" for name in never)
    items = [
        "**Reasons a person can check**: a feature stands for a reason only on the side its "
        "words agree with (no demo requests is never a plus, a better-than-average track "
        "record never a minus, about average neither); where no feature of a business field "
        "agrees, that field is not shown for that lead, though it still counts in the score."
    ]
    if never:
        items.append(
            f"**Features that are never reasons**: {listed} restate the lead's own sales stage "
            "(what sales already sees in the CRM); the model uses them, but they are never "
            "given as a reason."
        )
    return items
