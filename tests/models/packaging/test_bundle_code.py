"""The bundle carries the code its pickle needs, and requirements for exactly what that code
imports (the travelling itself, in a fresh environment, is tests/integration/test_model_travels)."""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import mlflow
import pytest
from mlflow.models import Model

from models.packaging.bundle import (
    CODE_DIR,
    REQUIREMENTS,
    BundleError,
    check_requirements,
    code_files,
    load_bundle,
    log_bundle,
    pickled_modules,
    scorer_file,
    source_root,
)
from tests.serving.world import World

ROOT = source_root()


class _Recorder(pickle.Unpickler):
    """Unpickles, recording the module of every class the pickle asks for."""

    def __init__(self, handle: Any) -> None:
        super().__init__(handle)
        self.modules: set[str] = set()

    def find_class(self, module: str, name: str) -> Any:
        self.modules.add(module)
        return super().find_class(module, name)


def test_the_pickles_modules_are_read_without_unpickling(world: World) -> None:
    pickled = scorer_file(world.bundle)
    with pickled.open("rb") as handle:
        recorder = _Recorder(handle)
        recorder.load()
    assert pickled_modules(pickled) == recorder.modules
    assert {"models.scorer", "features.engine.engine", "lightgbm.basic"} <= recorder.modules


def test_the_bundle_carries_the_import_closure_and_nothing_else(world: World) -> None:
    """The carried files are exactly what a fresh interpreter imports of the project when it
    imports the bundle module and unpickles the scorer (plus lazy imports, which it may run)."""
    code = world.bundle / CODE_DIR
    carried = {str(p.relative_to(code)) for p in code.rglob("*.py")}
    assert carried == {str(p) for p in code_files(scorer_file(world.bundle)).files}
    probe = (
        "import json, pickle, sys\n"
        "import models.packaging.bundle\n"
        f"pickle.load(open({str(scorer_file(world.bundle))!r}, 'rb'))\n"
        "print(json.dumps(sorted(m.__file__ for n, m in sys.modules.items()\n"
        "    if n.split('.')[0] in ('features', 'models') and getattr(m, '__file__', None))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    imported = {str(Path(f).resolve().relative_to(ROOT)) for f in json.loads(result.stdout)}
    assert imported <= carried
    assert not any(name.startswith(("serving/", "pipelines/", "tests/")) for name in carried)


def test_requirements_are_what_the_carried_code_imports(world: World) -> None:
    third_party = code_files(scorer_file(world.bundle)).third_party
    assert third_party == {"mlflow", "lightgbm", "numpy", "pandas", "pyarrow", "sklearn"}
    pins = (world.bundle / "requirements.txt").read_text().split()
    names = [pin.split("==")[0] for pin in pins]
    assert names == list(REQUIREMENTS)
    assert all("==" in pin for pin in pins), pins  # the training environment's versions
    # pydantic and PyYAML were listed before: only features.params (not carried) imports them
    assert "pydantic" not in names
    assert "pyyaml" not in names


def test_a_module_the_requirements_do_not_install_fails_the_save() -> None:
    check_requirements({"numpy", "sklearn", "mlflow"})
    with pytest.raises(BundleError, match=r"yaml \(from pyyaml\)"):
        check_requirements({"numpy", "yaml"})
    with pytest.raises(BundleError, match="no distribution"):
        check_requirements({"not_a_module_anywhere"})


def test_relative_and_lazy_imports_are_followed(tmp_path: Path) -> None:
    package = tmp_path / "models"
    (package / "packaging").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "packaging" / "__init__.py").write_text("")
    (package / "packaging" / "bundle.py").write_text(
        "from . import helper\n\ndef f():\n    import requests\n    from ..other import x\n"
    )
    (package / "packaging" / "helper.py").write_text("import numpy\n")
    (package / "other.py").write_text("x = 1\n")
    pickled = tmp_path / "empty.pkl"
    pickled.write_bytes(pickle.dumps({"a": 1}, protocol=pickle.HIGHEST_PROTOCOL))
    carried = code_files(pickled, tmp_path)
    assert {str(p) for p in carried.files} == {
        "models/__init__.py",
        "models/other.py",
        "models/packaging/__init__.py",
        "models/packaging/bundle.py",
        "models/packaging/helper.py",
    }
    assert carried.third_party == {"numpy", "requests"}


def test_loading_in_process_leaves_sys_path_alone(world: World) -> None:
    before = list(sys.path)
    load_bundle(str(world.bundle))
    assert sys.path == before


def test_a_logged_bundle_keeps_its_code(world: World, tmp_path: Path) -> None:
    """log_bundle (the registration's) copies the saved bundle's code, not the checkout's."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        experiment = mlflow.create_experiment("code", artifact_location=str(tmp_path / "art"))
        with mlflow.start_run(experiment_id=experiment):
            info = log_bundle(world.bundle)
        local = Path(
            mlflow.artifacts.download_artifacts(artifact_uri=info.model_uri, tracking_uri=uri)
        )
    finally:
        mlflow.set_tracking_uri(previous)
    saved = sorted(p.relative_to(world.bundle) for p in (world.bundle / CODE_DIR).rglob("*.py"))
    logged = sorted(p.relative_to(local) for p in (local / CODE_DIR).rglob("*") if p.is_file())
    assert logged == saved
    for relative in saved:
        assert (local / relative).read_bytes() == (world.bundle / relative).read_bytes()
    assert Model.load(str(local)).flavors["python_function"]["code"] == CODE_DIR


def test_a_process_without_leadscore_imported_runs_the_carried_code(
    world: World, tmp_path: Path
) -> None:
    """Loaded before anything of leadscore is imported, the model's own copy is the code (as in
    a serving environment), and loading writes no bytecode into the model directory."""
    model = tmp_path / "model"
    shutil.copytree(world.bundle, model)
    probe = (
        "import sys, mlflow\n"
        "from mlflow.models import Model\n"
        "path = sys.argv[1]\n"
        "model = mlflow.pyfunc.load_model(path)\n"
        "model.predict(Model.load(path).load_input_example(path))\n"
        "print(sys.modules['models.scorer'].__file__)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, str(model)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    scorer_module = Path(result.stdout.strip().splitlines()[-1]).resolve()
    assert scorer_module == (model / CODE_DIR / "models" / "scorer.py").resolve()
    assert not list(model.rglob("__pycache__"))
