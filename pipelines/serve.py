"""``leadscore serve``: the FastAPI app under uvicorn.

Settings come from the environment (``LEADSCORE_*``, ``MLFLOW_TRACKING_URI``; see
:mod:`serving.settings`); ``--model`` overrides ``LEADSCORE_MODEL_URI``. With one worker (the
default) the app is built here and run in this process; with ``--workers N`` uvicorn starts N
processes that each build the app from the environment (``--model`` is passed on through it),
with a fresh ``PROMETHEUS_MULTIPROC_DIR`` so that ``/metrics`` sums all workers.
LightGBM predicts on one thread per worker: scale with workers, not threads.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from features.errors import UserError

logger = logging.getLogger(__name__)


def run(
    host: str = "127.0.0.1",
    port: int = 8000,
    model: str | None = None,
    workers: int = 1,
    access_log: bool = False,
    log_level: str = "info",
) -> None:
    import uvicorn
    from pydantic import ValidationError

    from serving.settings import Settings

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        settings = Settings() if model is None else Settings(model_uri=model)
    except ValidationError as error:
        first = error.errors()[0]
        name = ".".join(str(part) for part in first["loc"])
        raise UserError(f"setting LEADSCORE_{name.upper()}: {first['msg']}") from None
    settings.key_roles()  # a malformed LEADSCORE_API_KEYS fails here, with one line
    common: dict[str, Any] = {
        "host": host,
        "port": port,
        "access_log": access_log,
        "log_level": log_level,
        "timeout_graceful_shutdown": 10,
        "server_header": False,  # no "server: uvicorn" banner
    }
    if workers > 1:
        if model is not None:
            os.environ["LEADSCORE_MODEL_URI"] = model
        from serving.metrics import multiprocess_directory

        # every worker writes its metrics there and /metrics sums them (serving.metrics)
        with multiprocess_directory():
            uvicorn.run("serving.app:create_app_from_env", factory=True, workers=workers, **common)
        return
    from serving.app import create_app

    app = create_app(settings)
    # log_config=None keeps the CLI's logging configuration
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, **common))
    server.run()
