"""A registered model travels: ``mlflow models serve --env-manager virtualenv`` builds a fresh
virtual environment from the model's own ``python_env.yaml`` and ``requirements.txt`` (leadscore
not installed, the project's sources out of sight) and answers ``/invocations`` exactly as the
bundle does in process. The code that unpickles and runs the scorer comes from the model.

MLflow's ``virtualenv`` manager takes the model's Python from pyenv (``pyenv install
--skip-existing``: the version installed here, nothing downloaded) and installs the requirements
with pip from the package index pip is configured with. The environment and pip's cache live in
this test's temporary directory (``MLFLOW_ENV_ROOT``, ``PIP_CACHE_DIR``): nothing is reused
across runs, so each run proves the requirements install as written (about a minute of pip).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil
import pytest
import yaml
from mlflow.models import Model
from mlflow.models.utils import load_serving_example

from models.packaging.bundle import CODE_DIR, bundle_input, load_bundle
from models.packaging.tracking import local_model_path
from tests.integration.test_mlflow_serve import (
    BIN,
    Registered,
    _free_port,
    _json,
    _post,
    register_champion,
    running,
    serve_command,
)
from tests.serving.world import REPO, World

pytestmark = pytest.mark.slow

CHAMPION = "models:/lead-scoring@champion"
PREPARE_SECONDS = 900  # pip installs MLflow and the model's pins (about 60 s measured)
READY_SECONDS = 180


def _pyenv_python(version: str) -> Path | None:
    """pyenv's interpreter of exactly ``version``, or None (MLflow would download and build
    CPython, which this machine's network does not allow)."""
    pyenv = shutil.which("pyenv")
    if pyenv is None:
        return None
    root = subprocess.run([pyenv, "root"], capture_output=True, text=True, check=False)
    python = Path(root.stdout.strip()) / "versions" / version / "bin" / "python"
    return python if root.returncode == 0 and python.exists() else None


def _clean_environ(root: Path) -> dict[str, str]:
    """This process's environment without anything that points at the project: no
    PYTHONPATH or VIRTUAL_ENV, the project venv's ``bin/`` off ``PATH`` (the MLflow CLI is run
    by its full path; the server runs the fresh environment's ``uvicorn``)."""
    project_bin = str(BIN.resolve())
    path = [
        entry
        for entry in os.environ.get("PATH", "").split(os.pathsep)
        if entry and str(Path(entry).resolve()) != project_bin
    ]
    drop = {"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "VIRTUAL_ENV"}
    env = {key: value for key, value in os.environ.items() if key not in drop}
    env |= {
        "PATH": os.pathsep.join(path),
        "MLFLOW_ENV_ROOT": str(root / "envs"),
        "PIP_CACHE_DIR": str(root / "pip-cache"),
        "PYTHONNOUSERSITE": "1",  # no ~/.local site-packages either
    }
    return env


@dataclass(frozen=True)
class Travel:
    registered: Registered
    model_dir: Path  # the registered version's directory in the artifact store
    env: dict[str, str]
    workdir: Path  # the servers' working directory: empty, outside the checkout
    python: Path  # the fresh environment's interpreter


@pytest.fixture(scope="module")
def travel(tmp_path_factory: pytest.TempPathFactory, world: World) -> Iterator[Travel]:
    root = tmp_path_factory.mktemp("travel")
    registered = register_champion(root, world)
    model_dir = Path(local_model_path(CHAMPION, registered[3]))
    version = yaml.safe_load((model_dir / "python_env.yaml").read_text())["python"]
    if _pyenv_python(str(version)) is None:
        pytest.skip(
            f"MLflow's virtualenv manager needs pyenv with Python {version} installed "
            "(it would otherwise download and build CPython)"
        )
    workdir = root / "work"
    workdir.mkdir()
    env = _clean_environ(root) | {"MLFLOW_TRACKING_URI": registered[3]}
    # The environment MLflow serves from, built from the model's own python_env.yaml (the same
    # step `mlflow models serve` starts with; done first so it can be inspected before serving)
    prepared = subprocess.run(
        [
            str(BIN / "mlflow"),
            "models",
            "prepare-env",
            "-m",
            CHAMPION,
            "--env-manager",
            "virtualenv",
        ],
        env=env,
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=PREPARE_SECONDS,
        check=False,
    )
    assert prepared.returncode == 0, prepared.stderr[-5000:]
    pythons = sorted((root / "envs").glob("mlflow-*/bin/python"))
    assert len(pythons) == 1, pythons
    yield Travel(registered, model_dir, env, workdir, pythons[0])
    # pip's downloads go now; the environment (about 860 MB in 22,000 files, up to a minute to
    # delete on this disk) stays for inspection until pytest drops this session's directory
    # (it keeps the last three)
    shutil.rmtree(root / "pip-cache", ignore_errors=True)


def _run(travel: Travel, code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(travel.python), "-c", code],
        env=travel.env,
        cwd=travel.workdir,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_model_carries_its_code_and_only_that(travel: Travel) -> None:
    code = travel.model_dir / CODE_DIR
    files = sorted(str(p.relative_to(code)) for p in code.rglob("*") if p.is_file())
    assert "models/packaging/bundle.py" in files
    assert "models/scorer.py" in files
    assert "features/engine/engine.py" in files
    assert all(name.endswith(".py") for name in files), files
    assert not any(name.startswith(("serving/", "pipelines/", "tests/")) for name in files)
    assert "features/params.py" not in files  # pydantic settings: not the model's
    requirements = (travel.model_dir / "requirements.txt").read_text().split()
    assert not any(line.startswith("leadscore") for line in requirements)


def test_the_fresh_environment_cannot_see_the_project(travel: Travel) -> None:
    """Before any model is loaded: leadscore is not installed, its packages do not import, and
    nothing on sys.path is the checkout or the project's virtual environment."""
    config = (travel.python.parent.parent / "pyvenv.cfg").read_text()
    assert "include-system-site-packages = false" in config
    for module in ("features", "models", "pipelines", "serving"):
        result = _run(travel, f"import {module}")
        assert result.returncode != 0, module
        assert f"No module named '{module}'" in result.stderr, result.stderr
    probe = _run(
        travel,
        "import json, sys\n"
        "from importlib import metadata\n"
        "try:\n"
        "    metadata.version('leadscore'); installed = True\n"
        "except metadata.PackageNotFoundError:\n"
        "    installed = False\n"
        "print(json.dumps({'path': sys.path, 'prefix': sys.prefix, 'leadscore': installed}))\n",
    )
    assert probe.returncode == 0, probe.stderr
    seen = json.loads(probe.stdout)
    assert seen["leadscore"] is False
    assert Path(seen["prefix"]) == travel.python.parent.parent
    project_venv = str(BIN.parent.resolve())
    for entry in seen["path"]:
        resolved = str((travel.workdir / entry).resolve())  # "" is the working directory
        assert not resolved.startswith((str(REPO), project_venv)), entry


@pytest.fixture(scope="module")
def served(travel: Travel) -> Iterator[tuple[str, psutil.Process]]:
    command = serve_command(_free_port(), "virtualenv")
    with running(command, travel.env, READY_SECONDS, cwd=travel.workdir) as (base, process):
        # `mlflow models serve` (the project's CLI) runs `exec uvicorn` in the environment
        children = psutil.Process(process.pid).children(recursive=True)
        uvicorn = [c for c in children if any("uvicorn" in part for part in c.cmdline())]
        assert uvicorn, [c.cmdline() for c in children]
        yield base, uvicorn[0]


def test_the_server_runs_in_the_fresh_environment(
    travel: Travel, served: tuple[str, psutil.Process]
) -> None:
    server = served[1]
    assert server.cmdline()[0] == str(travel.python)
    assert Path(server.cwd()) == travel.workdir
    assert "PYTHONPATH" not in server.environ()
    # the environment prepared above is the one served from (no second one was built)
    assert sorted(travel.python.parents[2].glob("mlflow-*/bin/python")) == [travel.python]


def _answers_equal(answer: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    assert [a["lead_id"] for a in answer] == [e["lead_id"] for e in expected]
    for got, want in zip(answer, expected, strict=True):
        assert set(got) == set(want)
        probabilities = [k for k in want if k.startswith("p_")]
        assert probabilities
        np.testing.assert_allclose(
            [got[k] for k in probabilities], [want[k] for k in probabilities], rtol=0, atol=1e-9
        )
        for key in ("as_of", "score", "grade", "handoff"):
            assert got[key] == want[key], key
        for side in ("reasons_positive", "reasons_negative"):
            assert [(r["field"], r["text"]) for r in got[side]] == [
                (r["field"], r["text"]) for r in want[side]
            ]
            np.testing.assert_allclose(
                [r["contribution"] for r in got[side]],
                [r["contribution"] for r in want[side]],
                rtol=0,
                atol=1e-9,
            )


def test_invocations_with_the_input_example_answer_like_the_bundle_in_process(
    travel: Travel, served: tuple[str, psutil.Process]
) -> None:
    body = json.loads(load_serving_example(str(travel.model_dir)))
    status, answer = _post(f"{served[0]}/invocations", body)
    assert status == 200, answer
    example = pd.DataFrame(
        Model.load(str(travel.model_dir)).load_input_example(str(travel.model_dir))
    )
    expected = _json(load_bundle(str(travel.model_dir)).predict(example))
    assert len(answer["predictions"]) == len(example) > 0
    _answers_equal(answer["predictions"], expected)


def test_test_leads_answer_like_the_bundle_in_process(
    travel: Travel, served: tuple[str, psutil.Process]
) -> None:
    scorer, tables, snapshots, _ = travel.registered
    rows = snapshots[snapshots["split"] == "test"].sample(8, random_state=11)
    leads = tables["leads"].set_index("lead_id", drop=False).loc[rows["lead_id"]]
    frame = bundle_input(
        leads,
        tables["touches"],
        tables["sales_events"],
        as_of=rows["as_of"].tolist(),
        scorer=scorer,
    )
    status, answer = _post(f"{served[0]}/invocations", {"dataframe_records": _json(frame)})
    assert status == 200, answer
    _answers_equal(answer["predictions"], _json(load_bundle(str(travel.model_dir)).predict(frame)))
