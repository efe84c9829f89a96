"""Loading a fitted :class:`~models.scorer.LeadScorer` from wherever a model lives, for every
caller that scores (the API, ``leadscore score``, the ``queue`` stage), with the name and version
that say which model answered.

Where a model comes from:

- ``models:/name@alias`` or ``models:/name/version``: the MLflow registry; an alias is resolved
  to its version first and exactly that version is loaded, so the version reported is the one
  scoring. With a ``cache`` directory (the API's), the version's bundle is read from
  :class:`~models.packaging.cache.ModelCache` once copied there; the alias is still looked up
  on every load (a sqlite store by one SQL read, without importing MLflow:
  :func:`~models.packaging.tracking.locate`);
- ``runs:/<run_id>/model``: a logged model;
- a directory: the model bundle (``artifacts/model``, MLflow pyfunc), or the train stage's
  output directory holding ``scorer.pkl`` (development).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import pickle
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from features.errors import UserError
from models.packaging.cache import SCORER_SHA256, ModelCache, scorer_file, sha256_of
from models.packaging.tracking import (
    RUNS_URI,
    RegisteredVersion,
    RegistryLookupError,
    champion_uri,
    local_location,
    locate,
    version_path,
)
from models.scorer import LeadScorer

logger = logging.getLogger(__name__)


class ModelLoadError(RuntimeError):
    """The model could not be loaded (the message says where and why; no traceback)."""


@dataclass(frozen=True)
class ModelSource:
    """Which model a scorer is: its name and version, the URI asked for, and its kind."""

    name: str
    version: str
    uri: str
    kind: str  # registry | run | bundle | pickle
    run_id: str | None = None

    @property
    def ref(self) -> dict[str, str]:
        """``{"name", "version"}``: what every answer and every queue row records."""
        return {"name": self.name, "version": self.version}


def recorded_hash(version: RegisteredVersion) -> str:
    """The SHA-256 of its scorer that registration recorded
    (:data:`~models.packaging.cache.SCORER_SHA256`); :class:`ModelLoadError` if there is none."""
    recorded = version.tags.get(SCORER_SHA256)
    if not recorded:
        raise ModelLoadError(
            f"{version.uri}: no recorded SHA-256 of its scorer (registered by an older "
            "leadscore); register the model again"
        )
    return recorded


def check_recorded_hash(local: Path, version: RegisteredVersion) -> None:
    """Refuse, before unpickling anything, a registered bundle whose scorer is not the file
    registration recorded (:data:`~models.packaging.cache.SCORER_SHA256`)."""
    _checked(sha256_of(scorer_file(local)), version)


def _checked(actual: str, version: RegisteredVersion) -> None:
    recorded = recorded_hash(version)
    if actual != recorded:
        raise ModelLoadError(
            f"{version.uri}: its scorer's SHA-256 {actual[:12]}… is not the one recorded at "
            f"registration ({recorded[:12]}…); not loaded"
        )


def registered_scorer_bytes(
    found: RegisteredVersion, tracking_uri: str | None, cache: Path | None
) -> bytes:
    """The pickled scorer of the registered version ``found``, its SHA-256 checked against the
    recorded one: from ``cache`` when it holds it intact, else from the registry's artifacts
    (local ones read in place, others downloaded by MLflow), then copied into ``cache``."""
    digest = recorded_hash(found)
    store = ModelCache(cache) if cache is not None else None
    if store is not None:
        cached = store.read(found.name, found.version, digest)
        if cached is not None:
            return cached
    local = local_location(found.location) or Path(version_path(found, tracking_uri))
    data = scorer_file(local).read_bytes()
    _checked(hashlib.sha256(data).hexdigest(), found)
    if store is not None:
        try:
            entry = store.put(found.name, found.version, digest, local, found.location or "")
            logger.info("model cache: %s version %s → %s", found.name, found.version, entry)
        except OSError as error:  # an optimisation only: the model still loads
            logger.warning("model cache: %s not written (%s)", cache, error)
    return data


def _bundle_uuid(path: Path) -> str:
    try:
        import yaml

        meta = yaml.safe_load((path / "MLmodel").read_text(encoding="utf-8")) or {}
        return str(meta.get("model_uuid") or meta.get("run_id") or "local")
    except (OSError, ValueError):
        return "local"


def _unpickled(path: Path, uri: str) -> LeadScorer:
    """The scorer pickled at ``path``: what MLflow's pyfunc loader would unpickle from a
    bundle, without it. A bundle's environment is this one, so its dependency check and model
    wrapper cost a load about 0.45 s for nothing (registered bundles are checked against their
    recorded SHA-256 first)."""
    return _scorer_of(path.read_bytes(), path.name, uri)


def _scorer_of(data: bytes, what: str, uri: str) -> LeadScorer:
    scorer = pickle.loads(data)
    if not isinstance(scorer, LeadScorer):
        raise ModelLoadError(f"{uri}: {what} holds a {type(scorer).__name__}, not a LeadScorer")
    return scorer


def _pyfunc_scorer(uri: str, tracking_uri: str | None) -> LeadScorer:
    """Through MLflow's pyfunc loader (imported only here): run URIs and other pyfunc models."""
    from models.packaging.bundle import load_scorer

    return load_scorer(uri, tracking_uri)


def load(
    uri: str, tracking_uri: str | None = None, cache: Path | None = None
) -> tuple[LeadScorer, ModelSource]:
    """The scorer named by ``uri`` (see the module docstring) and which model it is;
    :class:`ModelLoadError` with one clear line when it cannot be loaded. ``cache``: where
    registered bundles are kept once fetched (:class:`~models.packaging.cache.ModelCache`)."""
    parsed = urlparse(uri)
    try:
        if parsed.scheme == "models":
            try:
                found = locate(uri, tracking_uri)
            except RegistryLookupError as error:
                raise ModelLoadError(str(error)) from None
            data = registered_scorer_bytes(found, tracking_uri, cache)
            scorer = _scorer_of(data, "its scorer", uri)
            return scorer, ModelSource(found.name, found.version, uri, "registry", found.run_id)
        if parsed.scheme == "runs":
            match = RUNS_URI.match(uri)
            run_id = match["run"] if match else None
            scorer = _pyfunc_scorer(uri, tracking_uri)
            return scorer, ModelSource("run", run_id or "?", uri, "run", run_id)
        path = Path(uri)
        if (path / "MLmodel").is_file():
            if scorer_file(path).is_file():  # a leadscore bundle: its scorer, read directly
                scorer = _unpickled(scorer_file(path), uri)
            else:  # any other pyfunc model is refused by load_scorer with its own message
                scorer = _pyfunc_scorer(str(path), tracking_uri)
            return scorer, ModelSource(path.name, _bundle_uuid(path), uri, "bundle")
        if (path / "scorer.pkl").is_file():
            scorer = _unpickled(path / "scorer.pkl", uri)
            stamp = dt.datetime.fromtimestamp((path / "scorer.pkl").stat().st_mtime, dt.UTC)
            return scorer, ModelSource(path.name, stamp.strftime("%Y%m%dT%H%M%SZ"), uri, "pickle")
    except ModelLoadError:
        raise
    except Exception as error:
        raise ModelLoadError(f"{uri}: cannot load ({type(error).__name__}: {error})") from error
    raise ModelLoadError(
        f"{uri}: not a registry URI, a run URI, a model bundle directory (MLmodel) or a train "
        "output directory (scorer.pkl)"
    )


def load_champion(
    model_name: str, model: str | None = None, tracking_uri: str | None = None
) -> tuple[LeadScorer, ModelSource]:
    """``model`` (a URI or directory), else ``model_name``'s champion: what the stages after
    ``register`` score with. A model that cannot be loaded is one :class:`UserError` line."""
    try:
        return load(model or champion_uri(model_name), tracking_uri)
    except ModelLoadError as error:
        raise UserError(f"{error}; run the register stage first") from None
