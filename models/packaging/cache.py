"""The local cache of registered model bundles, and the bundle file it is keyed by.

A registered version's bundle is copied once into ``<root>/<name>/v<version>-<sha256>/`` (the
whole bundle directory, with ``leadscore-cache.json`` saying where it came from), where
``<sha256>`` is the SHA-256 of its pickled scorer recorded at registration
(:data:`SCORER_SHA256`). A later load of that version reads the copy: no MLflow client, no
download. What makes it safe:

- the cache is keyed by version, never by alias: which version an alias names is looked up in
  the registry on every load (:func:`models.packaging.tracking.locate`), so a moved alias is a
  different entry and a reload always re-resolves;
- an entry is used only if its scorer's SHA-256 is the one the registry records now; a
  corrupted or truncated file is removed (a warning in the log) and the bundle fetched again;
- an entry is written beside its final name, checked, then renamed into place: a reader never
  sees half an entry, and two processes filling the same entry both end up with one whole copy;
- the cache is an optimisation: when it cannot be written (full disk, read-only), the model is
  loaded from the registry's artifacts as without it.

Each model name keeps its :data:`KEEP` most recently used entries.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from urllib.parse import quote

logger = logging.getLogger(__name__)

SCORER_SHA256 = "leadscore.scorer_sha256"
"""The model-version tag holding the SHA-256 of the bundle's pickled scorer, recorded at
registration and checked before the pickle is ever loaded from the registry."""
ENTRY_FILE = "leadscore-cache.json"
KEEP = 3
"""Entries kept per model name (the current one and the two before it, for a quick rollback)."""


def scorer_file(model_dir: Path) -> Path:
    """The pickled scorer inside a bundle directory."""
    return Path(model_dir) / "artifacts" / "scorer.pkl"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _safe(name: str) -> str:
    """``name`` as one directory name (no separators, never ``.`` or ``..``)."""
    return quote(name, safe="-_").replace(".", "%2E") or "%00"


class ModelCache:
    """Registered bundles under ``root`` (created on first write)."""

    def __init__(self, root: Path, keep: int = KEEP) -> None:
        self.root = Path(root)
        self.keep = keep

    def entry(self, name: str, version: str, digest: str) -> Path:
        """The directory of version ``version`` of ``name`` whose scorer has SHA-256 ``digest``."""
        return self.root / _safe(name) / f"v{_safe(version)}-{digest}"

    def read(self, name: str, version: str, digest: str) -> bytes | None:
        """The cached scorer's bytes (read once, so what is checked is what gets unpickled)
        when their SHA-256 is ``digest``; a damaged entry is removed and None returned, so the
        caller fetches it again."""
        entry = self.entry(name, version, digest)
        pickled = scorer_file(entry)
        if not entry.exists():
            return None
        try:
            data = pickled.read_bytes()
        except OSError as error:  # missing from its entry, or unreadable: damaged
            logger.warning("model cache: %s unreadable (%s); fetched again", pickled, error)
            self._remove(entry)
            return None
        actual = hashlib.sha256(data).hexdigest()
        if actual != digest:
            logger.warning(
                "model cache: %s version %s: its scorer's SHA-256 %s… is not the registered "
                "%s…; removed, fetched again",
                name,
                version,
                actual[:12],
                digest[:12],
            )
            self._remove(entry)
            return None
        with contextlib.suppress(OSError):
            os.utime(entry)  # most recently used
        return data

    def put(self, name: str, version: str, digest: str, bundle: Path, source: str) -> Path:
        """Copy the bundle directory ``bundle`` (whose scorer must have SHA-256 ``digest``) into
        the cache; returns the entry. ``OSError`` when the cache cannot be written."""
        entry = self.entry(name, version, digest)
        entry.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=entry.parent))
        try:
            copy = staging / "bundle"
            shutil.copytree(bundle, copy, ignore=shutil.ignore_patterns("__pycache__"))
            actual = sha256_of(scorer_file(copy))
            if actual != digest:  # the source changed while it was copied
                raise OSError(f"copied scorer's SHA-256 {actual[:12]}… is not {digest[:12]}…")
            record = {"name": name, "version": version, "sha256": digest, "source": source}
            (copy / ENTRY_FILE).write_text(json.dumps(record, indent=1), encoding="utf-8")
            try:
                os.rename(copy, entry)
            except OSError:
                # another process's whole copy is as good; a damaged one is removed by read
                if self.read(name, version, digest) is None:
                    os.rename(copy, entry)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        self.prune(name, entry)
        return entry

    def prune(self, name: str, current: Path) -> None:
        """Keep ``current`` and the most recently used entries of ``name``, :attr:`keep` in all."""
        try:
            entries = [
                path
                for path in (self.root / _safe(name)).iterdir()
                if path.is_dir() and not path.name.startswith(".") and path != current
            ]
            entries.sort(key=lambda path: path.stat().st_mtime, reverse=True)
        except OSError:
            return
        for stale in entries[max(self.keep - 1, 0) :]:
            self._remove(stale)

    @staticmethod
    def _remove(entry: Path) -> None:
        """Out of sight first (one rename), then deleted: a reader sees it whole or not at all."""
        trash = entry.with_name(f".trash-{entry.name}-{os.getpid()}")
        try:
            os.rename(entry, trash)
        except OSError:
            return
        shutil.rmtree(trash, ignore_errors=True)
