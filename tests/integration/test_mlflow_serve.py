"""`mlflow models serve` on the registered champion answers like the in-process bundle."""

from __future__ import annotations

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
from threadpoolctl import threadpool_limits

from features.engine.table import build_feature_table
from features.ingest.simulate import simulate
from features.params import GenerateParams, Params
from features.storage import read_validated
from models.packaging.bundle import bundle_input, example_input, save_bundle
from models.packaging.registry import RunInputs, register
from models.packaging.tracking import local_model_path
from models.scorer import LeadScorer
from models.training import train_all

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


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory, repo_params: Params
) -> tuple[LeadScorer, dict[str, pd.DataFrame], pd.DataFrame, str]:
    """A trained model registered as champion in a fresh sqlite store."""
    root = tmp_path_factory.mktemp("serve")
    simulate(GenerateParams(leads=3000, seed=41), root / "raw")
    tables = read_validated(root / "raw")
    train = {"num_threads": 1, "learning_rate": 0.1, "max_rounds": 150, "early_stopping_rounds": 20}
    params = repo_params.model_copy(update={"train": repo_params.train.model_copy(update=train)})
    engine, snapshots = build_feature_table(tables, params, None)
    with threadpool_limits(1):
        scorer, _ = train_all(snapshots, engine, params)
    save_bundle(scorer, root / "model", example_input(tables, 2, scorer=scorer))
    uri = f"sqlite:///{root / 'mlflow.db'}"
    record = register(RunInputs(root / "model", params, snapshots, lambda: tables), uri=uri)
    assert record["alias"] == "champion"
    return scorer, tables, snapshots, uri


@pytest.fixture(scope="module")
def server(world: tuple[LeadScorer, dict[str, pd.DataFrame], pd.DataFrame, str]) -> Iterator[str]:
    uri = world[3]
    port = _free_port()
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",  # it execs uvicorn
        "MLFLOW_TRACKING_URI": uri,
    }
    command = [
        str(BIN / "mlflow"),
        "models",
        "serve",
        "-m",
        "models:/lead-scoring@champion",
        "--env-manager",
        "local",
        "-p",
        str(port),
        "-h",
        "127.0.0.1",
    ]
    process = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: uvicorn and workers stop with it
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + READY_SECONDS
        while _get(f"{base}/ping") != 200:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                output = process.communicate(timeout=10)[0]
                pytest.fail(f"mlflow models serve did not become ready:\n{output[-3000:]}")
            time.sleep(0.25)
        yield base
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
def request_frame(
    world: tuple[LeadScorer, dict[str, pd.DataFrame], pd.DataFrame, str],
) -> pd.DataFrame:
    scorer, tables, snapshots, _ = world
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
    world: tuple[LeadScorer, dict[str, pd.DataFrame], pd.DataFrame, str],
) -> None:
    status, answer = _post(f"{server}/invocations", {"dataframe_records": _json(request_frame)})
    assert status == 200, answer
    local = mlflow.pyfunc.load_model(local_model_path("models:/lead-scoring@champion", world[3]))
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
