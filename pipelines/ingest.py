"""Stage `ingest`: the pipeline's input, chosen by params.source.

- ``synthetic``: run the CRM simulator (``generate`` params);
- ``tables``: copy canonical tables (CSV or Parquet) from ``source.path``;
- ``flat``: import a flat export with the YAML mapping ``source.mapping``.

The output directory is replaced atomically, so a failed ingest keeps the previous data.
"""

from __future__ import annotations

import logging
from pathlib import Path

from features.params import load_params
from features.storage import atomic_directory

logger = logging.getLogger(__name__)


def generate(
    out: Path,
    params_path: Path = Path("params.yaml"),
    leads: int | None = None,
    seed: int | None = None,
    dirty: bool | None = None,
    feedback: Path | None = None,
) -> None:
    from features.ingest.feedback import merge_feedback
    from features.ingest.simulate import simulate

    params = load_params(params_path)
    settings = params.generate
    overrides = {
        key: value
        for key, value in {"leads": leads, "seed": seed, "dirty": dirty}.items()
        if value is not None
    }
    settings = settings.model_copy(update=overrides)
    with atomic_directory(out) as staging:
        summary = simulate(settings, staging, window_days=params.quality_lead.window_days)
        merge_feedback(staging, feedback)
    logger.info("generated %s into %s", summary, out)


def import_export(mapping: Path, source: Path, out: Path) -> None:
    from features.ingest.importers import import_export as run_import

    with atomic_directory(out) as staging:
        run_import(mapping_path=mapping, source=source, out=staging)
    logger.info("imported %s into %s", source, out)


def run(out: Path, params_path: Path = Path("params.yaml")) -> None:
    """The source per params, then sales' exported verdicts (``source.feedback``) added to its
    sales events; a flat export has no sales events and takes none."""
    from features.ingest.feedback import merge_feedback

    source = load_params(params_path).source
    feedback = Path(source.feedback) if source.feedback else None
    if source.kind == "synthetic":
        generate(out=out, params_path=params_path, feedback=feedback)
    elif source.kind == "flat":
        assert source.path is not None
        assert source.mapping is not None
        import_export(mapping=Path(source.mapping), source=Path(source.path), out=out)
    else:
        from features.ingest.importers import copy_tables

        assert source.path is not None
        with atomic_directory(out) as staging:
            copy_tables(
                source=Path(source.path),
                out=staging,
                mapping_path=(Path(source.mapping) if source.mapping else None),
            )
            merge_feedback(staging, feedback)
