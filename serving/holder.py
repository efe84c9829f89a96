"""The served model: loading it from the registry (or a directory) and swapping it atomically.

The :class:`ModelHolder` lives on ``app.state``; handlers get the current
:class:`LoadedModel` through a typed dependency, once per request, and keep that reference
until they answer. A reload builds the new model completely (load, warm-up score) in a worker
thread, then replaces the reference in one assignment: requests in flight finish on the old
model, new ones get the new one, none waits and none fails. A model that fails to load or to
score never replaces the one being served.

Where a model comes from (``LEADSCORE_MODEL_URI``):

- ``models:/name@alias`` or ``models:/name/version``: the MLflow registry; the alias is resolved
  to its version first and that version is loaded, so the answer's version is the one scoring;
- ``runs:/<run_id>/model``: a logged model;
- a directory: the model bundle (``artifacts/model``, MLflow pyfunc), or the train stage's
  output directory holding ``scorer.pkl`` (development).
"""

from __future__ import annotations

import datetime as dt
import logging
import pickle
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from models.scorer import LeadScorer
from serving.model_input import ModelInput, answers

logger = logging.getLogger(__name__)

_RUNS_URI = re.compile(r"^runs:/(?P<run>[^/]+)/.+$")


class ModelLoadError(RuntimeError):
    """The model could not be loaded (the message says where and why; no traceback)."""


@dataclass(frozen=True)
class ModelInfo:
    name: str
    version: str
    uri: str
    source: str  # registry | run | bundle | pickle
    loaded_at: dt.datetime
    run_id: str | None = None
    metrics: Mapping[str, Any] | None = None
    """The evaluation metrics logged with the model's MLflow run, when there is one."""

    @property
    def ref(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version}

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "uri": self.uri,
            "source": self.source,
            "run_id": self.run_id,
            "loaded_at": self.loaded_at.isoformat(),
        }


@dataclass(frozen=True)
class LoadedModel:
    scorer: LeadScorer
    inputs: ModelInput
    info: ModelInfo
    ref: dict[str, str] = field(default_factory=dict)
    reasons: int = 3
    """Reasons of each sign per answer."""


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    """``{"a.b.c": 1}`` → ``{"a": {"b": {"c": 1}}}`` (MLflow metrics are flat keys)."""
    out: dict[str, Any] = {}
    for key, value in sorted(flat.items()):
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                break
            node = child
        else:
            node[parts[-1]] = value
    return out


def _run_metrics(run_id: str | None, tracking_uri: str | None) -> dict[str, Any] | None:
    if not run_id:
        return None
    try:
        from models.tracking import client

        metrics = client(tracking_uri).get_run(run_id).data.metrics
    except Exception as error:  # metrics are a nicety: never fail a load for them
        logger.warning("could not read the metrics of run %s: %s", run_id, error)
        return None
    return unflatten(metrics) if metrics else None


def _bundle_uuid(path: Path) -> str:
    try:
        import yaml

        meta = yaml.safe_load((path / "MLmodel").read_text(encoding="utf-8")) or {}
        return str(meta.get("model_uuid") or meta.get("run_id") or "local")
    except (OSError, ValueError):
        return "local"


def read_scorer(uri: str, tracking_uri: str | None = None) -> tuple[LeadScorer, ModelInfo]:
    """Load the scorer named by ``uri`` (see the module docstring) and describe it."""
    from models.bundle import load_scorer

    now = dt.datetime.now(dt.UTC)
    parsed = urlparse(uri)
    try:
        if parsed.scheme == "models":
            from models.tracking import RegistryLookupError, resolve

            try:
                found = resolve(uri, tracking_uri)
            except RegistryLookupError as error:
                raise ModelLoadError(str(error)) from None
            scorer = load_scorer(found.uri, tracking_uri)
            metrics = _run_metrics(found.run_id, tracking_uri)
            return scorer, ModelInfo(
                found.name, found.version, uri, "registry", now, found.run_id, metrics
            )
        if parsed.scheme == "runs":
            match = _RUNS_URI.match(uri)
            run_id = match["run"] if match else None
            scorer = load_scorer(uri, tracking_uri)
            metrics = _run_metrics(run_id, tracking_uri)
            return scorer, ModelInfo("run", run_id or "?", uri, "run", now, run_id, metrics)
        path = Path(uri)
        if (path / "MLmodel").is_file():
            scorer = load_scorer(str(path), tracking_uri)
            return scorer, ModelInfo(path.name, _bundle_uuid(path), uri, "bundle", now)
        if (path / "scorer.pkl").is_file():
            with (path / "scorer.pkl").open("rb") as handle:
                scorer = pickle.load(handle)
            stamp = dt.datetime.fromtimestamp((path / "scorer.pkl").stat().st_mtime, dt.UTC)
            version = stamp.strftime("%Y%m%dT%H%M%SZ")
            return scorer, ModelInfo(path.name, version, uri, "pickle", now)
    except ModelLoadError:
        raise
    except Exception as error:
        raise ModelLoadError(f"{uri}: cannot load ({type(error).__name__}: {error})") from error
    raise ModelLoadError(
        f"{uri}: not a registry URI, a run URI, a model bundle directory (MLmodel) or a train "
        "output directory (scorer.pkl)"
    )


def warm_up(scorer: LeadScorer, inputs: ModelInput) -> None:
    """Score one made-up lead once: fills the engine's lookup caches (first request as fast
    as the rest) and proves the model scores before it is swapped in."""
    now = dt.datetime.now(dt.UTC)
    lead: dict[str, Any] = {"lead_id": "warm-up", "created_at": now - dt.timedelta(days=3)}
    touches = [{"occurred_at": now - dt.timedelta(days=1), "touch_type": "web_visit"}]
    sales = [{"occurred_at": now - dt.timedelta(days=2), "stage": "assigned"}]
    prepared = inputs.prepare(lead, touches, sales, now)
    answers(scorer, [prepared], {"name": "warm-up", "version": "0"})


def load_model(uri: str, tracking_uri: str | None = None, reasons: int = 3) -> LoadedModel:
    scorer, info = read_scorer(uri, tracking_uri)
    inputs = ModelInput(scorer)
    try:
        warm_up(scorer, inputs)
    except Exception as error:
        raise ModelLoadError(
            f"{uri}: loaded but cannot score ({type(error).__name__}: {error})"
        ) from error
    return LoadedModel(scorer, inputs, info, info.ref, reasons)


class ModelHolder:
    """The current model; ``None`` until one loads."""

    def __init__(self) -> None:
        self._current: LoadedModel | None = None
        self._reloading = threading.Lock()
        self.last_error: str | None = None

    @property
    def current(self) -> LoadedModel | None:
        return self._current

    def swap(self, model: LoadedModel | None) -> LoadedModel | None:
        """Put ``model`` in service (one reference assignment); returns the one it replaced."""
        previous, self._current = self._current, model
        return previous

    def reload(self, loader: Callable[[], LoadedModel]) -> LoadedModel:
        """Load with ``loader`` (blocking: call it from a worker thread) and swap it in.
        Reloads are serialised; on failure the current model stays and the error is raised."""
        with self._reloading:
            try:
                model = loader()
            except ModelLoadError as error:
                self.last_error = str(error)
                raise
            self.last_error = None
            previous = self.swap(model)
        logger.info(
            "serving %s version %s (was %s)",
            model.info.name,
            model.info.version,
            f"{previous.info.name} version {previous.info.version}" if previous else "none",
        )
        return model
