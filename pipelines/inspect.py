"""``leadscore inspect``: profile an unknown export and draft its mapping (the logic is
:mod:`features.ingest.inspect`; this module logs the profile and writes the draft)."""

from __future__ import annotations

import logging
from pathlib import Path

from features.ingest.inspect import inspect_export, summary
from features.storage import atomic_file

logger = logging.getLogger(__name__)


def run(source: Path, out: Path | None = None) -> str:
    """Profile ``source`` (a file or a directory of files), log one line per column, and write
    the draft mapping to ``out`` (atomically) when given; returns the draft."""
    inspection = inspect_export(source)
    for profile in inspection.profiles:
        for line in summary(profile):
            logger.info("%s", line)
    if out is not None:
        with atomic_file(out) as staging:
            staging.write_text(inspection.draft, encoding="utf-8")
        logger.info(
            "wrote a %s mapping draft to %s: review it, then leadscore import",
            inspection.format,
            out,
        )
    return inspection.draft
