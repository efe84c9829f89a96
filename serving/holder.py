"""The served model: loading it from the registry (or a directory) and swapping it atomically.

The :class:`ModelHolder` lives on ``app.state``; handlers get the current
:class:`LoadedModel` through a typed dependency, once per request, and keep that reference
until they answer. A reload builds the new model completely (load, warm-up score) in a worker
thread, then replaces the reference in one assignment: requests in flight finish on the old
model, new ones get the new one, none waits and none fails. A model that fails to load or to
score never replaces the one being served.

Where a model comes from (``LEADSCORE_MODEL_URI``) is :mod:`models.packaging.loading`'s: a registry
URI (an alias resolved to its version first, on every load), a run URI, a bundle or train output
directory. Registered bundles are kept in ``LEADSCORE_MODEL_CACHE``
(:mod:`models.packaging.cache`) once fetched.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models.packaging.loading import ModelLoadError, ModelSource, load
from models.scorer import LeadScorer
from serving.model_input import ModelInput, answers

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelInfo:
    """Which model is serving (:class:`~models.packaging.loading.ModelSource`), since when, and
    its run's metrics."""

    model: ModelSource
    loaded_at: dt.datetime
    metrics: Mapping[str, Any] | None = None
    """The evaluation metrics logged with the model's MLflow run, when there is one."""
    fingerprint: str | None = None
    """:meth:`~models.scorer.LeadScorer.fingerprint`: which reports on disk describe it."""

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def version(self) -> str:
        return self.model.version

    @property
    def uri(self) -> str:
        return self.model.uri

    @property
    def source(self) -> str:
        """registry | run | bundle | pickle"""
        return self.model.kind

    @property
    def run_id(self) -> str | None:
        return self.model.run_id

    @property
    def ref(self) -> dict[str, str]:
        return self.model.ref

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "uri": self.uri,
            "source": self.source,
            "run_id": self.run_id,
            "loaded_at": self.loaded_at.isoformat(),
            "fingerprint": self.fingerprint,
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
        from models.packaging.tracking import run_metrics

        metrics = run_metrics(run_id, tracking_uri)
    except Exception as error:  # metrics are a nicety: never fail a load for them
        logger.warning("could not read the metrics of run %s: %s", run_id, error)
        return None
    return unflatten(metrics) if metrics else None


def read_scorer(
    uri: str, tracking_uri: str | None = None, cache: Path | None = None
) -> tuple[LeadScorer, ModelInfo]:
    """Load the scorer named by ``uri`` (:func:`models.packaging.loading.load`, registered
    bundles kept in ``cache``) and describe it, with its run's metrics when it has a run."""
    scorer, source = load(uri, tracking_uri, cache)
    info = ModelInfo(
        source,
        dt.datetime.now(dt.UTC),
        _run_metrics(source.run_id, tracking_uri),
        scorer.fingerprint(),
    )
    return scorer, info


def warm_up(scorer: LeadScorer, inputs: ModelInput) -> None:
    """Score one made-up lead once: fills the engine's lookup caches (first request as fast
    as the rest) and proves the model scores before it is swapped in."""
    now = dt.datetime.now(dt.UTC)
    lead: dict[str, Any] = {"lead_id": "warm-up", "created_at": now - dt.timedelta(days=3)}
    touches = [{"occurred_at": now - dt.timedelta(days=1), "touch_type": "web_visit"}]
    sales = [{"occurred_at": now - dt.timedelta(days=2), "stage": "assigned"}]
    prepared = inputs.prepare(lead, touches, sales, now)
    answers(scorer, [prepared], {"name": "warm-up", "version": "0"})


def load_model(
    uri: str, tracking_uri: str | None = None, reasons: int = 3, cache: Path | None = None
) -> LoadedModel:
    scorer, info = read_scorer(uri, tracking_uri, cache)
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

    @property
    def public_error(self) -> str | None:
        """What an HTTP answer may say about the last failed load: not its message, which
        names files and the tracking store (those are in the server's log)."""
        if self.last_error is None:
            return None
        return "the model could not be loaded; the server's log says why"

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
