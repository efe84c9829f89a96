"""``leadscore serve``: the FastAPI app under uvicorn.

Settings come from the environment (``LEADSCORE_*``, ``MLFLOW_TRACKING_URI``; see
:mod:`serving.settings`); ``--model`` overrides ``LEADSCORE_MODEL_URI``. The model is loaded
before the server listens: one that cannot be loaded stops here with one line, unless
``--allow-no-model`` (then the server starts and answers 503 until a reload succeeds).

With one worker (the default) the app is built and run in this process. With ``--workers N``
this process supervises N worker processes that each build the app from the environment, with
a fresh ``PROMETHEUS_MULTIPROC_DIR`` (``/metrics`` sums all workers) and a fresh
``LEADSCORE_RUN_DIR`` through which every reload reaches every worker
(:mod:`serving.coordination`); the configured model is pinned to one version here, first.
Connections are guarded the same way in both (:mod:`serving.server`). LightGBM predicts on one
thread per worker: scale with workers, not threads.

A server process imports neither MLflow (a sqlite registry is read directly, the bundle kept in
``LEADSCORE_MODEL_CACHE``; see :mod:`models.packaging.cache`) nor scikit-learn: LightGBM is
imported with scikit-learn hidden (:func:`lightgbm_without_sklearn`), which it would otherwise
import (with SciPy's statistics) only to offer its scikit-learn estimators, which serving never
uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from features.errors import UserError
from models.boosters import lightgbm_without_sklearn

logger = logging.getLogger(__name__)


def create_worker_app() -> Any:
    """uvicorn's app factory in each worker process (``--workers N``)."""
    lightgbm_without_sklearn()
    from serving.app import create_app_from_env

    return create_app_from_env()


@contextlib.contextmanager
def run_directory() -> Iterator[Path]:
    """A fresh ``LEADSCORE_RUN_DIR`` for the workers (inherited; removed afterwards)."""
    from serving.coordination import RUN_DIR_ENV

    directory = tempfile.mkdtemp(prefix="leadscore-run-")
    previous = os.environ.get(RUN_DIR_ENV)
    os.environ[RUN_DIR_ENV] = directory
    try:
        yield Path(directory)
    finally:
        if previous is None:
            os.environ.pop(RUN_DIR_ENV, None)
        else:
            os.environ[RUN_DIR_ENV] = previous
        shutil.rmtree(directory, ignore_errors=True)


def preflight(settings: Any) -> tuple[str | None, str | None]:
    """Load the configured model as a worker would; its pinned URI, or why it failed."""
    from models.packaging.loading import ModelLoadError
    from serving.coordination import pinned_uri
    from serving.holder import load_model

    try:
        model = load_model(
            settings.model_uri, settings.tracking_uri, settings.reasons, settings.model_cache_dir()
        )
    except ModelLoadError as error:
        return None, str(error)
    source = model.info.model
    return pinned_uri(source.kind, source.name, source.version, source.uri), None


def _in_a_child(function: Any, argument: Any) -> Any:
    """``function(argument)`` in a forked child process (its memory goes with it)."""
    import multiprocessing
    import signal

    # the child must not inherit the CLI's SIGTERM handler (the pool ends it with SIGTERM)
    pool = multiprocessing.get_context("fork").Pool(
        1, initializer=signal.signal, initargs=(signal.SIGTERM, signal.SIG_DFL)
    )
    try:
        return pool.apply(function, (argument,))
    finally:
        pool.close()
        pool.join()


def run(
    host: str = "127.0.0.1",
    port: int = 8000,
    model: str | None = None,
    workers: int = 1,
    access_log: bool = False,
    log_level: str = "info",
    allow_no_model: bool = False,
) -> None:
    lightgbm_without_sklearn()
    import uvicorn
    from pydantic import ValidationError

    from models.packaging.loading import ModelLoadError
    from serving.server import GUARD_ATTRIBUTE, ConnectionGuard, GuardedH11Protocol, log_config
    from serving.settings import Limits, Settings

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        settings = Settings() if model is None else Settings(model_uri=model)
    except ValidationError as error:
        first = error.errors()[0]
        name = ".".join(str(part) for part in first["loc"])
        raise UserError(f"setting LEADSCORE_{name.upper()}: {first['msg']}") from None
    settings.key_roles()  # a malformed LEADSCORE_API_KEYS fails here, with one line
    limits = Limits.from_settings(settings)
    common: dict[str, Any] = {
        "host": host,
        "port": port,
        "access_log": access_log,
        "log_level": log_level,
        "log_config": log_config(log_level),
        "timeout_graceful_shutdown": 10,
        "server_header": False,  # no "server: uvicorn" banner
        # h11, not httptools: httptools ignores the header size limit
        "http": GuardedH11Protocol,
        "h11_max_incomplete_event_size": limits.max_header_bytes,
        "limit_concurrency": limits.max_connections,
        "timeout_keep_alive": limits.keep_alive_seconds,
        "timeout_worker_healthcheck": 30,
    }
    guard = ConnectionGuard(limits.header_timeout_seconds, limits.max_connections)

    def refuse_or_warn(error: ModelLoadError) -> None:
        if not allow_no_model:
            raise UserError(f"{error} (to start without a model: --allow-no-model)")
        logger.warning("starting without a model (--allow-no-model): %s", error)

    if workers > 1:
        from serving.coordination import ReloadBoard
        from serving.metrics import multiprocess_directory
        from serving.server import Supervisor

        if model is not None:
            os.environ["LEADSCORE_MODEL_URI"] = model
        with run_directory() as directory:
            board = ReloadBoard(directory)
            # pinned before any worker starts, so that every worker loads the same version;
            # checked in a forked child, so that this process never holds a model
            pinned, problem = _in_a_child(preflight, settings)
            if pinned is not None:
                board.publish(pinned)
            else:
                refuse_or_warn(ModelLoadError(problem or "the model could not be loaded"))
            with multiprocess_directory():
                config = uvicorn.Config(
                    "pipelines.serve:create_worker_app", factory=True, workers=workers, **common
                )
                setattr(config, GUARD_ATTRIBUTE, guard)
                sock = config.bind_socket()
                Supervisor(config, [sock], board, settings.model_uri, settings.tracking_uri).run()
        return

    from serving.app import create_app
    from serving.lifecycle import reload_model

    app = create_app(settings)
    try:
        asyncio.run(reload_model(app.state.holder, app.state.metrics, settings))
    except ModelLoadError as error:
        refuse_or_warn(error)
    config = uvicorn.Config(app, **common)
    setattr(config, GUARD_ATTRIBUTE, guard)
    uvicorn.Server(config).run()
