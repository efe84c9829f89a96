"""Loading and reloading the served model (start-up, admin route, SIGHUP), in this worker and,
with several workers, in all of them (:mod:`serving.coordination`)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import anyio.to_thread

from models.packaging.loading import ModelLoadError
from models.store import NullStore, Recorder, StoreError, open_store
from serving.coordination import Follower, Progress, pinned_uri
from serving.holder import LoadedModel, ModelHolder, load_model
from serving.metrics import ApiMetrics
from serving.recording import ScoreKeeper
from serving.settings import Settings

logger = logging.getLogger(__name__)

WORKERS_WAIT_SECONDS = 120.0
"""How long a reload waits for the other workers to serve the new model before it answers."""


async def reload_model(
    holder: ModelHolder, metrics: ApiMetrics, settings: Settings, uri: str | None = None
) -> LoadedModel:
    """Load ``uri`` (default: the configured model) in a worker thread and swap it in; the
    event loop keeps answering meanwhile. :class:`ModelLoadError` leaves the current model."""
    target = uri or settings.model_uri

    def loader() -> LoadedModel:
        return load_model(
            target, settings.tracking_uri, settings.reasons, settings.model_cache_dir()
        )

    try:
        model = await anyio.to_thread.run_sync(holder.reload, loader)
    except ModelLoadError as error:
        metrics.reloads.inc("failed")
        logger.error("model load failed: %s", error)
        raise
    metrics.reloads.inc("ok")
    metrics.serving(model.info.name, model.info.version)
    return model


async def reload_everywhere(
    holder: ModelHolder,
    metrics: ApiMetrics,
    settings: Settings,
    follower: Follower | None,
    uri: str | None = None,
) -> tuple[LoadedModel, Progress | None]:
    """Reload here; with several workers, then publish exactly the model loaded (an alias
    pinned to its version) and wait until every live worker serves it too."""
    if follower is None:
        return await reload_model(holder, metrics, settings, uri), None
    async with follower.lock:
        model = await reload_model(holder, metrics, settings, uri)
        source = model.info.model
        generation = follower.board.publish(
            pinned_uri(source.kind, source.name, source.version, source.uri)
        )
        follower.adopt(generation.number, model.ref, None)
    # outside the lock: meanwhile this worker may follow a newer generation (another
    # worker's reload), which that worker's own wait needs
    progress = await follower.board.wait_for(generation.number, WORKERS_WAIT_SECONDS)
    if not progress.complete or progress.failed:
        logger.error(
            "generation %d: %d of %d workers serve it, %d failed",
            generation.number,
            progress.serving,
            progress.workers,
            len(progress.failed),
        )
    return model, progress


async def start_serving(
    holder: ModelHolder, metrics: ApiMetrics, settings: Settings, follower: Follower | None
) -> None:
    """At start-up: the model every other worker serves (the board's current generation), or
    the configured one. A failure leaves no model (503 until a reload succeeds)."""
    published = follower.board.current() if follower else None
    try:
        model = await reload_model(holder, metrics, settings, published.uri if published else None)
    except ModelLoadError:
        if follower is not None and published is not None:
            follower.adopt(published.number, None, "the model could not be loaded")
        raise
    if follower is not None:
        follower.adopt(published.number if published else 0, model.ref, None)


def follow_loader(holder: ModelHolder, metrics: ApiMetrics, settings: Settings) -> Any:
    """What a :class:`Follower` calls for each new generation."""

    async def load(uri: str) -> LoadedModel:
        return await reload_model(holder, metrics, settings, uri)

    return load


def open_score_keeper(settings: Settings, metrics: ApiMetrics) -> ScoreKeeper:
    """The score store of ``LEADSCORE_STORE_URL`` and its recorder, opened in this worker
    (after any fork). A store that cannot be opened is one log line and a keeper that records
    nothing: scoring goes on."""
    params = settings.params_or_defaults().store
    try:
        store = open_store(Path.cwd(), params, settings.store_environ())
    except StoreError as error:
        logger.error("score store unavailable, scores are not recorded: %s", error)
        return ScoreKeeper(NullStore(params), None, params.trend, metrics)
    logger.info("score store: %s", store.description)
    recorder = Recorder(store, params) if store.enabled else None
    return ScoreKeeper(store, recorder, params.trend, metrics)
