"""`mlflow models serve` on the registered champion answers like the in-process bundle."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pytest

from features.params import load_params
from models.packaging.bundle import bundle_input
from models.packaging.registry import RunInputs, register
from models.packaging.tracking import local_model_path
from models.scorer import LeadScorer
from tests.serving.world import World, fast

BIN = Path(sys.executable).parent
READY_SECONDS = 60


def _json(frame: pd.DataFrame) -> Any:
    """Records through JSON at full precision (``DataFrame.to_json`` keeps 10 digits)."""
    return json.loads(json.dumps(frame.to_dict("records"), default=lambda value: value.item()))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0


def _post(url: str, body: dict[str, Any]) -> tuple[int, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


Registered = tuple[LeadScorer, dict[str, pd.DataFrame], pd.DataFrame, str]
"""The trained scorer, its tables and snapshots, and the tracking URI of its registry."""


def register_champion(root: Path, world: World) -> Registered:
    """The session's trained model registered as champion in a fresh sqlite store in ``root``."""
    tables = world.tables
    params = fast(load_params(world.params_path))
    uri = f"sqlite:///{root / 'mlflow.db'}"
    record = register(RunInputs(world.bundle, params, world.snapshots, lambda: tables), uri=uri)
    assert record["alias"] == "champion"
    return world.scorer, tables, world.snapshots, uri


@pytest.fixture(scope="module")
def registered(tmp_path_factory: pytest.TempPathFactory, world: World) -> Registered:
    return register_champion(tmp_path_factory.mktemp("serve"), world)


def serve_command(port: int, env_manager: str, mlflow_cli: Path = BIN / "mlflow") -> list[str]:
    return [
        str(mlflow_cli),
        "models",
        "serve",
        "-m",
        "models:/lead-scoring@champion",
        "--env-manager",
        env_manager,
        "-p",
        str(port),
        "-h",
        "127.0.0.1",
    ]


@contextlib.contextmanager
def running(
    command: list[str],
    env: dict[str, str],
    ready_seconds: float = READY_SECONDS,
    cwd: Path | None = None,
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """``mlflow models serve`` started (its port is the ``-p`` of ``command``), until
    ``/ping`` answers: (base URL, process); stopped with its whole process group."""
    port = command[command.index("-p") + 1]
    process = subprocess.Popen(
        command,
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: uvicorn and workers stop with it
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + ready_seconds
        while _get(f"{base}/ping") != 200:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                output = process.communicate(timeout=10)[0]
                pytest.fail(f"mlflow models serve did not become ready:\n{output[-3000:]}")
            time.sleep(0.25)
        yield base, process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


@pytest.fixture(scope="module")
def server(registered: Registered) -> Iterator[str]:
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",  # it execs uvicorn
        "MLFLOW_TRACKING_URI": registered[3],
    }
    with running(serve_command(_free_port(), "local"), env) as (base, _):
        yield base


@pytest.fixture(scope="module")
def request_frame(
    registered: Registered,
) -> pd.DataFrame:
    scorer, tables, snapshots, _ = registered
    rows = snapshots[snapshots["split"] == "test"].sample(8, random_state=5)
    leads = tables["leads"].set_index("lead_id", drop=False).loc[rows["lead_id"]]
    return bundle_input(
        leads,
        tables["touches"],
        tables["sales_events"],
        as_of=rows["as_of"].tolist(),
        scorer=scorer,
    )


def test_invocations_answer_like_the_bundle_in_process(
    server: str,
    request_frame: pd.DataFrame,
    registered: Registered,
) -> None:
    status, answer = _post(f"{server}/invocations", {"dataframe_records": _json(request_frame)})
    assert status == 200, answer
    champion = local_model_path("models:/lead-scoring@champion", registered[3])
    local = mlflow.pyfunc.load_model(champion)
    expected = _json(local.predict(request_frame))
    assert answer["predictions"] == expected
    assert {"p_converted", "score", "grade", "handoff", "reasons_positive"} <= set(
        answer["predictions"][0]
    )


def test_invocations_without_reasons(server: str, request_frame: pd.DataFrame) -> None:
    status, answer = _post(
        f"{server}/invocations",
        {"dataframe_records": _json(request_frame.head(2)), "params": {"with_reasons": False}},
    )
    assert status == 200, answer
    assert [p["reasons_positive"] for p in answer["predictions"]] == [[], []]


def test_bad_request_is_a_400_with_the_reason(server: str) -> None:
    status, answer = _post(
        f"{server}/invocations",
        {"dataframe_records": [{"lead_id": "X", "created_at": "not a date", "touches": []}]},
    )
    assert status == 400
    assert "row 0" in answer["message"]
