"""Stage `features`: validated tables → point-in-time snapshots, labels, split and features.

Writes ``snapshots.parquet`` (lead_id, as_of, split, label_<target>, features),
``feature_spec.json`` and the fitted engine (``engine.pkl``, carried by the model bundle),
all at once into the output directory (atomically). The batch path runs partition by
partition: all of a lead's history in one partition, the fitted engine shared by all.
"""

from __future__ import annotations

import json
import logging
import pickle
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from features import contract
from features.engine import FeatureEngine
from features.errors import UserError
from features.params import Params, load_params
from features.snapshots import assign_split, build_flat_snapshots, build_snapshots
from features.storage import atomic_directory

logger = logging.getLogger(__name__)


def read_tables(directory: Path) -> dict[str, pd.DataFrame]:
    """The validated canonical tables present in ``directory``."""
    if not (directory / "leads.parquet").exists():
        raise UserError(f"{directory}/leads.parquet: missing; run the validate stage first")
    return {
        name: pd.read_parquet(directory / f"{name}.parquet")
        for name in contract.TABLES
        if (directory / f"{name}.parquet").exists()
    }


def read_manifest(directory: Path) -> dict[str, Any] | None:
    path = directory / "import.json"
    return json.loads(path.read_text()) if path.exists() else None


def make_engine(params: Params, manifest: dict[str, Any] | None) -> FeatureEngine:
    settings = params.features
    return FeatureEngine(
        windows_days=settings.windows_days,
        trend_days=settings.trend_days,
        rate_smoothing=settings.rate_smoothing,
        min_category_count=settings.min_category_count,
        window_days=params.quality_lead.window_days,
        targets={name: target.stages for name, target in params.targets.items()},
        extra_categorical=tuple(manifest["categorical"]) if manifest else (),
        extra_numeric=tuple(manifest["numeric"]) if manifest else (),
    )


def build(
    tables: dict[str, pd.DataFrame], params: Params, manifest: dict[str, Any] | None
) -> tuple[FeatureEngine, pd.DataFrame]:
    """Snapshots with split, labels and features, and the fitted engine."""
    leads = tables["leads"]
    horizon = contract.data_horizon(tables, params.data.horizon)
    primary = f"label_{params.quality_lead.target}"
    if manifest is not None:
        snapshots = build_flat_snapshots(leads, list(params.targets))
        random = manifest.get("order") == "random"
    else:
        snapshots = build_snapshots(
            leads,
            tables.get("sales_events", pd.DataFrame(columns=["lead_id", "occurred_at", "stage"])),
            params.snapshots.offsets_days,
            horizon,
            params.quality_lead.window_days,
            {name: target.stages for name, target in params.targets.items()},
        )
        random = False
    if primary not in snapshots:
        raise UserError(f"no outcome for the primary target {params.quality_lead.target!r}")
    snapshots.insert(2, "split", assign_split(snapshots, params.split, primary, random=random))
    engine = make_engine(params, manifest).fit(tables, horizon)

    parts = []
    size = params.features.partition_leads
    ids = leads["lead_id"]
    for start in tqdm(range(0, len(leads), size), desc="features", unit="partition", disable=None):
        part_ids = ids.iloc[start : start + size]
        part_snapshots = snapshots[snapshots["lead_id"].isin(part_ids)]
        history = {
            name: tables[name][tables[name]["lead_id"].isin(part_ids)]
            for name in contract.EVENT_TABLES
            if name in tables
        }
        matrix = engine.transform(
            part_snapshots,
            leads.iloc[start : start + size],
            history.get("touches"),
            history.get("sales_events"),
        )
        features = engine.feature_frame(matrix)
        features.index = part_snapshots.index
        parts.append(pd.concat([part_snapshots, features], axis=1))
    result = pd.concat(parts).sort_values(["as_of", "lead_id"], kind="stable")
    return engine, result.reset_index(drop=True)


def run(validated: Path, out: Path, params_path: Path) -> None:
    params = load_params(params_path)
    tables = read_tables(validated)
    manifest = read_manifest(validated)
    engine, snapshots = build(tables, params, manifest)
    with atomic_directory(out) as staging:
        pq.write_table(
            pa.Table.from_pandas(snapshots, preserve_index=False),
            staging / "snapshots.parquet",
            compression="zstd",
        )
        (staging / "feature_spec.json").write_text(
            json.dumps({"features": engine.feature_spec()}, indent=2) + "\n"
        )
        with (staging / "engine.pkl").open("wb") as handle:
            pickle.dump(engine, handle, protocol=pickle.HIGHEST_PROTOCOL)
    counts = snapshots.groupby("split").size().to_dict()
    logger.info(
        "features: %d snapshots %s, %d features → %s",
        len(snapshots),
        counts,
        len(engine.feature_names_),
        out,
    )
