"""Atomic writes: a failed stage never leaves half an output, and the last good one survives."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


def _umask() -> int:
    """The process's umask (reading it means setting it: set back at once; the stages that
    write outputs are single-threaded)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _publish_permissions(path: Path, directory: bool) -> None:
    """What ``open``/``mkdir`` would have given (the umask applied), not the owner-only mode
    of ``mkstemp``/``mkdtemp``: outputs are read by other service accounts (the API, a
    scheduler)."""
    mask = _umask()
    if directory:
        for root, _dirs, files in os.walk(path):
            os.chmod(root, 0o777 & ~mask)
            for name in files:
                os.chmod(os.path.join(root, name), 0o666 & ~mask)
    else:
        os.chmod(path, 0o666 & ~mask)


@contextmanager
def atomic_directory(target: Path | str) -> Iterator[Path]:
    """Yield a fresh temporary directory beside ``target``; on success it replaces ``target``.

    If the body raises, the temporary directory is removed and ``target`` is left untouched.
    The swap is two renames on the same filesystem, so readers see the old or the new
    directory, never a mix.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _publish_permissions(staging, directory=True)
    retired = target.parent / f".{target.name}.old-{os.getpid()}"
    if target.exists():
        os.replace(target, retired)
    os.replace(staging, target)
    shutil.rmtree(retired, ignore_errors=True)


@contextmanager
def atomic_file(target: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it is renamed onto ``target``."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{target.name}.tmp-", dir=target.parent)
    os.close(handle)
    staging = Path(name)
    try:
        yield staging
    except BaseException:
        staging.unlink(missing_ok=True)
        raise
    _publish_permissions(staging, directory=False)
    os.replace(staging, target)


def write_json(target: Path | str, payload: Any) -> None:
    with atomic_file(target) as staging:
        staging.write_text(json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n")


def write_parquet(target: Path | str, frame: pd.DataFrame | pa.Table) -> None:
    table = (
        frame if isinstance(frame, pa.Table) else pa.Table.from_pandas(frame, preserve_index=False)
    )
    with atomic_file(target) as staging:
        pq.write_table(table, staging, compression="zstd")


# ----------------------------------------------------------- validated tables
MANIFEST = "import.json"
"""A flat import's manifest, kept beside the validated tables."""


def read_validated(
    directory: Path | str,
    names: Iterable[str] | None = None,
    lead_ids: Sequence[str] | None = None,
) -> dict[str, pd.DataFrame]:
    """The validated canonical tables present in ``directory`` (``names``: only those), each
    cut to ``lead_ids`` when given (a filtered Parquet read: only those rows are loaded;
    campaigns and accounts have no lead id and are read whole). The one reader of the
    validate stage's output."""
    from features import contract
    from features.errors import UserError

    directory = Path(directory)
    if not (directory / "leads.parquet").exists():
        raise UserError(f"{directory}/leads.parquet: missing; run the validate stage first")
    wanted = list(contract.TABLES) if names is None else [n for n in contract.TABLES if n in names]
    tables = {}
    for name in wanted:
        path = directory / f"{name}.parquet"
        if not path.exists():
            continue
        by_lead = lead_ids is not None and "lead_id" in contract.TABLES[name].column_names
        filters = [("lead_id", "in", list(lead_ids or ()))] if by_lead else None
        tables[name] = pd.read_parquet(path, filters=filters)
    return tables


def read_manifest(directory: Path | str) -> dict[str, Any] | None:
    """The flat import's manifest beside the validated tables (None: canonical CRM tables)."""
    path = Path(directory) / MANIFEST
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
