"""Loading and reloading the served model (start-up, admin route, SIGHUP)."""

from __future__ import annotations

import logging

import anyio.to_thread

from models.packaging.loading import ModelLoadError
from serving.holder import LoadedModel, ModelHolder, load_model
from serving.metrics import ApiMetrics
from serving.settings import Settings

logger = logging.getLogger(__name__)


async def reload_model(
    holder: ModelHolder, metrics: ApiMetrics, settings: Settings, uri: str | None = None
) -> LoadedModel:
    """Load ``uri`` (default: the configured model) in a worker thread and swap it in; the
    event loop keeps answering meanwhile. :class:`ModelLoadError` leaves the current model."""
    target = uri or settings.model_uri

    def loader() -> LoadedModel:
        return load_model(target, settings.tracking_uri, settings.reasons)

    try:
        model = await anyio.to_thread.run_sync(holder.reload, loader)
    except ModelLoadError as error:
        metrics.reloads.inc("failed")
        logger.error("model load failed: %s", error)
        raise
    metrics.reloads.inc("ok")
    metrics.serving(model.info.name, model.info.version)
    return model
