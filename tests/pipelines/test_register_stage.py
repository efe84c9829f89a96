"""Stages `train --model` and `register` through the CLI: one MLflow run with everything."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pytest
import yaml
from mlflow.models import Model
from mlflow.tracking import MlflowClient

from features.ingest.simulate import simulate
from features.params import GenerateParams, Params, load_params
from models.packaging.bundle import SCORER_SHA256, load_scorer, save_bundle, scorer_file, sha256_of
from models.packaging.registry import ORPHAN, flatten
from models.packaging.tracking import local_model_path
from pipelines import features as features_stage
from pipelines import register as register_stage

REPO = Path(__file__).resolve().parents[2]
LEADSCORE = str(Path(sys.executable).with_name("leadscore"))
FEATURES_MD5 = "0f343b0931126a20f133d67c2b018a3b.dir"
METRICS = {
    "converted": {
        "model": {"roc_auc": 0.81, "pr_auc": 0.3, "brier": 0.07, "log_loss": 0.25, "ece": 0.01},
        "rules": {"roc_auc": 0.66},
        "logistic": {"roc_auc": 0.74},
        "n_test": 900,
    },
    "leakage_suspected": False,
    "primary_target": "converted",
}


def _cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LEADSCORE, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=240,
        # One BLAS thread: the logistic baseline is 30× slower with oversubscribed threads.
        env={**os.environ, "COLUMNS": "120", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"},
        check=False,
    )


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory, repo_params: Params) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("register-stage")
    paths = {
        "validated": root / "data" / "validated",
        "features": root / "data" / "features",
        "train": root / "artifacts" / "train",
        "model": root / "artifacts" / "model",
        "metrics": root / "artifacts" / "metrics.json",
        "plots": root / "artifacts" / "plots",
        "card": root / "artifacts" / "model_card.md",
        "kpis": root / "artifacts" / "kpis.json",
        "registry": root / "artifacts" / "registry.json",
        "lock": root / "dvc.lock",
        "params": root / "params.yaml",
        "store": root / "mlflow.db",
    }
    raw = repo_params.model_dump(mode="json", by_alias=True)
    raw["train"].update(num_threads=1, learning_rate=0.1, max_rounds=150, early_stopping_rounds=20)
    paths["params"].write_text(yaml.safe_dump(raw, sort_keys=False))
    simulate(GenerateParams(leads=3000, seed=31), paths["validated"])
    features_stage.run(paths["validated"], paths["features"], paths["params"])

    paths["plots"].mkdir(parents=True)
    (paths["plots"] / "roc.csv").write_text("fpr,tpr\n0,0\n1,1\n")
    paths["metrics"].write_text(json.dumps(METRICS))
    paths["card"].write_text("# Model card\n")
    paths["kpis"].write_text(json.dumps({"acceptance_rate": 0.3}))
    paths["lock"].write_text(
        yaml.safe_dump(
            {
                "schema": "2.0",
                "stages": {
                    "features": {
                        "cmd": "leadscore features",
                        "outs": [{"path": "data/features", "md5": FEATURES_MD5, "size": 1}],
                    }
                },
            }
        )
    )
    return paths


@pytest.fixture(scope="module")
def trained(layout: dict[str, Path]) -> subprocess.CompletedProcess[str]:
    p = layout
    return _cli(
        "train",
        "--features",
        str(p["features"]),
        "--validated",
        str(p["validated"]),
        "--out",
        str(p["train"]),
        "--model",
        str(p["model"]),
        "--params",
        str(p["params"]),
    )


@pytest.fixture(scope="module")
def uri(layout: dict[str, Path]) -> str:
    return f"sqlite:///{layout['store']}"


@pytest.fixture(scope="module")
def registered(
    layout: dict[str, Path], trained: subprocess.CompletedProcess[str], uri: str
) -> dict[str, Any]:
    assert trained.returncode == 0, trained.stderr
    p = layout
    result = _cli(
        "register",
        "--model",
        str(p["model"]),
        "--features",
        str(p["features"]),
        "--validated",
        str(p["validated"]),
        "--metrics",
        str(p["metrics"]),
        "--plots",
        str(p["plots"]),
        "--model-card",
        str(p["card"]),
        "--kpis",
        str(p["kpis"]),
        "--artifact",
        str(p["train"] / "report.json"),
        "--dvc-lock",
        str(p["lock"]),
        "--out",
        str(p["registry"]),
        "--tracking-uri",
        uri,
        "--params",
        str(p["params"]),
    )
    assert result.returncode == 0, result.stderr
    record: dict[str, Any] = json.loads(p["registry"].read_text())
    return record


def test_train_writes_the_bundle_beside_the_train_output(
    layout: dict[str, Path], trained: subprocess.CompletedProcess[str]
) -> None:
    assert trained.returncode == 0, trained.stderr
    assert (layout["train"] / "scorer.pkl").exists()
    model = Model.load(str(layout["model"]))
    assert model.signature is not None
    assert "python_function" in model.flavors
    example = pd.DataFrame(model.load_input_example(str(layout["model"])))
    assert set(example["lead_id"]) <= set(
        pd.read_parquet(layout["validated"] / "leads.parquet")["lead_id"]
    )
    leftovers = [p.name for p in layout["model"].parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_registry_record(registered: dict[str, Any], layout: dict[str, Path]) -> None:
    params = load_params(layout["params"])
    assert registered["model_name"] == params.mlflow.model_name
    assert registered["version"] == "1"
    assert registered["alias"] == "champion"
    assert registered["metric"] == params.promotion.metric
    assert 0.5 < registered["new_value"] <= 1.0
    assert registered["champion_value"] is None
    assert registered["run_id"]


def test_run_holds_params_metrics_tags_and_artifacts(
    registered: dict[str, Any], layout: dict[str, Path], uri: str
) -> None:
    client = MlflowClient(uri)
    run = client.get_run(registered["run_id"])
    experiment = client.get_experiment(run.info.experiment_id)
    params = load_params(layout["params"])
    assert experiment.name == params.mlflow.experiment
    assert experiment.artifact_location == str(layout["store"].parent / "mlartifacts")

    expected = dict(flatten(params.model_dump(mode="json", by_alias=True)))
    assert set(run.data.params) == set(expected)
    assert run.data.params["train.learning_rate"] == "0.1"
    assert run.data.params["quality_lead.target"] == "converted"

    metrics = run.data.metrics
    assert metrics["converted.model.roc_auc"] == 0.81
    assert metrics["converted.n_test"] == 900
    assert metrics["leakage_suspected"] == 0.0
    assert metrics[f"promotion.{params.promotion.metric}.new"] == pytest.approx(
        registered["new_value"]
    )

    tags = run.data.tags
    assert tags["data_md5"] == FEATURES_MD5
    assert tags["dvc.md5.data/features"] == FEATURES_MD5
    assert len(tags["git.commit"]) == 40
    assert tags["registry.alias"] == "champion"

    logged = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"metrics.json", "model_card.md", "kpis.json", "report.json", "plots"} <= logged
    assert [a.path for a in client.list_artifacts(run.info.run_id, "plots")] == ["plots/roc.csv"]


def test_registered_champion_loads_and_scores(
    registered: dict[str, Any], layout: dict[str, Path], uri: str
) -> None:
    model = Model.load(str(layout["model"]))
    example = model.load_input_example(str(layout["model"]))
    champion = mlflow.pyfunc.load_model(local_model_path("models:/lead-scoring@champion", uri))
    local = mlflow.pyfunc.load_model(str(layout["model"]))
    pd.testing.assert_frame_equal(champion.predict(example), local.predict(example))


def test_the_same_bundle_again_is_logged_but_not_registered_twice(
    registered: dict[str, Any], layout: dict[str, Path], uri: str
) -> None:
    """The same bundle again (as `dvc repro` does when only the reports changed), evaluate
    outputs missing: one more run, and the version that holds the bundle stays the champion."""
    p = layout
    record = register_stage.run(
        model=p["model"],
        features_dir=p["features"],
        validated=p["validated"],
        out=p["registry"],
        params_path=p["params"],
        metrics=p["metrics"].with_name("absent.json"),
        artifacts=[("plots", p["plots"].with_name("absent"))],
        dvc_lock=p["lock"].with_name("absent.lock"),
        tracking_uri=uri,
    )
    assert (record["version"], record["reused"], record["alias"]) == ("1", True, "champion")
    assert record["champion_value"] == pytest.approx(registered["new_value"], abs=1e-12)
    assert json.loads(p["registry"].read_text()) == record
    client = MlflowClient(uri)
    run = client.get_run(record["run_id"])
    assert "converted.model.roc_auc" not in run.data.metrics
    assert "data_md5" not in run.data.tags
    assert run.data.tags["registry.version"] == "1"
    runs = client.search_runs([run.info.experiment_id])
    assert len(runs) == 2
    assert len(client.search_model_versions("name = 'lead-scoring'")) == 1


def test_register_refuses_a_missing_bundle(layout: dict[str, Path], tmp_path: Path) -> None:
    result = _cli(
        "register",
        "--model",
        str(tmp_path / "nothing"),
        "--params",
        str(layout["params"]),
        "--out",
        str(tmp_path / "registry.json"),
        "--tracking-uri",
        f"sqlite:///{tmp_path / 'unused.db'}",
    )
    assert result.returncode == 2
    assert "MLmodel: missing; run the train stage first" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", ["register", "train"])
def test_help(command: str) -> None:
    result = _cli(command, "--help")
    assert result.returncode == 0
    assert "--model" in result.stdout


def _other_bundle(model: Path, target: Path) -> Path:
    """Another bundle than ``model`` (its pickle differs: one more metadata entry), scoring
    exactly like it."""
    scorer = load_scorer(str(model))
    scorer.metadata = {**scorer.metadata, "variant": "b"}
    example = pd.DataFrame(Model.load(str(model)).load_input_example(str(model)))
    save_bundle(scorer, target, example)
    return target


def test_an_unreadable_champion_keeps_the_gate_closed_until_forced(
    registered: dict[str, Any], layout: dict[str, Path], uri: str
) -> None:
    """The champion's pickle is damaged: `leadscore register` of a new bundle keeps it as
    champion (one line, exit 0, the new version is challenger); with `--force` the new version
    takes over (the same version: the bundle is registered once)."""
    p = layout
    champion = Path(local_model_path("models:/lead-scoring@champion", uri))
    before = str(MlflowClient(uri).get_model_version_by_alias("lead-scoring", "champion").version)
    (champion / "artifacts" / "scorer.pkl").write_bytes(b"not a pickle")
    other = _other_bundle(p["model"], p["model"].with_name("model-b"))
    arguments = [
        "register",
        *("--model", str(other), "--features", str(p["features"])),
        *("--validated", str(p["validated"]), "--out", str(p["registry"])),
        *("--dvc-lock", str(p["lock"]), "--tracking-uri", uri, "--params", str(p["params"])),
    ]
    kept = _cli(*arguments)
    assert kept.returncode == 0, kept.stderr
    assert "Traceback" not in kept.stderr
    record = json.loads(p["registry"].read_text())
    assert record["alias"] == "challenger"
    assert record["version"] != before
    assert "could not be re-scored" in record["reason"]
    challenger = record["version"]
    warned = [
        line for line in kept.stderr.splitlines() if " WARNING models.packaging.registry" in line
    ]
    assert len(warned) == 1
    client = MlflowClient(uri)
    assert str(client.get_model_version_by_alias("lead-scoring", "champion").version) == before

    forced = _cli(*arguments, "--force")
    assert forced.returncode == 0, forced.stderr
    record = json.loads(p["registry"].read_text())
    assert (record["alias"], record["version"], record["reused"]) == ("champion", challenger, True)
    assert (
        str(client.get_model_version_by_alias("lead-scoring", "champion").version)
        == (record["version"])
    )


KILL_AT = {
    # after the bundle is logged to the run, before any version exists
    "logged": ("models.packaging.registry", "log_bundle"),
    # right after the version is created (with its hash), before it has an alias
    "versioned": ("mlflow", "register_model"),
    # after the alias is set, before the version's tags and the run's end
    "aliased": ("mlflow.tracking.MlflowClient", "set_registered_model_alias"),
}

KILLED_REGISTRATION = """
import importlib, os, signal, sys
module_name, attribute = sys.argv[1], sys.argv[2]
if module_name == "mlflow.tracking.MlflowClient":
    from mlflow.tracking import MlflowClient as owner
else:
    owner = importlib.import_module(module_name)
original = getattr(owner, attribute)

def then_killed(*args, **kwargs):
    result = original(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)  # kill -9: no cleanup, no exit handlers
    return result

setattr(owner, attribute, then_killed)
sys.argv = ["leadscore", *sys.argv[3:]]
from pipelines.cli import main
main()
"""


@pytest.mark.slow
@pytest.mark.parametrize("point", sorted(KILL_AT))
def test_a_registration_killed_half_way_is_completed_by_the_next(
    point: str, layout: dict[str, Path], trained: subprocess.CompletedProcess[str], tmp_path: Path
) -> None:
    """`kill -9` of `leadscore register` at each point where the registry is half-written,
    then `leadscore register` again (what `dvc repro` runs next): it completes, with exactly
    one version holding the bundle (the killed one's, if it got that far), an alias on it, no
    orphan tag, the killed run FAILED, no run RUNNING, and registry.json written."""
    assert trained.returncode == 0, trained.stderr
    p = layout
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "registry.json"
    arguments = [
        "register",
        *("--model", str(p["model"]), "--features", str(p["features"])),
        *("--validated", str(p["validated"]), "--out", str(out)),
        *("--tracking-uri", uri, "--params", str(p["params"])),
    ]
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_REGISTRATION, *KILL_AT[point], *arguments],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"},
        check=False,
    )
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert not out.exists()
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(load_params(p["params"]).mlflow.experiment)
    assert [r.info.status for r in client.search_runs([experiment.experiment_id])] == ["RUNNING"]
    left = client.search_model_versions("name = 'lead-scoring'")
    assert len(left) == (0 if point == "logged" else 1)

    completed = _cli(*arguments, cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr
    assert "left unfinished: marked FAILED" in completed.stderr
    # only a version that never got its alias is an orphan (until this run completes it)
    assert ("never given an alias" in completed.stderr) is (point == "versioned")
    record = json.loads(out.read_text())
    versions = client.search_model_versions("name = 'lead-scoring'")
    assert len(versions) == 1
    (version,) = versions
    assert version.tags[SCORER_SHA256] == sha256_of(scorer_file(p["model"]))
    assert record["version"] == str(version.version) == "1"
    assert record["reused"] is (point != "logged")
    assert record["alias"] == "champion"
    assert str(client.get_model_version_by_alias("lead-scoring", "champion").version) == "1"
    assert version.tags["alias_given"] == "champion"
    assert ORPHAN not in version.tags
    runs = {r.info.run_id: r.info.status for r in client.search_runs([experiment.experiment_id])}
    assert sorted(runs.values()) == ["FAILED", "FINISHED"]
    assert runs[record["run_id"]] == "FINISHED"


def test_log_only_inside_a_dvc_experiment_unless_switched_on() -> None:
    assert register_stage.log_only_reason(False, {}) is None
    assert register_stage.log_only_reason(True, {"DVC_EXP_NAME": "plush-baby"}) is None
    reason = register_stage.log_only_reason(False, {"DVC_EXP_NAME": "plush-baby"})
    assert reason is not None
    assert "DVC experiment 'plush-baby'" in reason
    assert "dvc exp apply plush-baby" in reason


def test_inside_a_dvc_experiment_the_stage_logs_the_run_only(
    registered: dict[str, Any],
    layout: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With the variable DVC sets for an experiment's stages, the stage logs a run (named after
    the experiment) and registers nothing, not even into an empty registry; with
    `mlflow.register_experiments: true` it registers as the main pipeline does."""
    p = layout
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("DVC_EXP_NAME", "exp-one")
    out = tmp_path / "registry.json"

    def stage(params_path: Path) -> dict[str, Any]:
        return register_stage.run(
            model=p["model"],
            features_dir=p["features"],
            validated=p["validated"],
            out=out,
            params_path=params_path,
            metrics=p["metrics"],
            dvc_lock=p["lock"],
            tracking_uri=uri,
        )

    record = stage(p["params"])
    assert json.loads(out.read_text()) == record
    # its numbers alone beside it (a DVC metric experiments compare by): no run id
    promotion = json.loads((tmp_path / "promotion.json").read_text())
    assert promotion == register_stage.promotion_summary(record)
    assert (promotion["registered"], promotion["promoted"]) == (False, False)
    assert "run_id" not in promotion
    assert (record["action"], record["registered"], record["alias"]) == ("logged only", False, None)
    assert "DVC experiment 'exp-one'" in record["action_reason"]
    assert record["would_promote"] is True  # no champion: it would have been champion
    client = MlflowClient(uri)
    assert client.search_registered_models() == []
    run = client.get_run(record["run_id"])
    assert run.info.run_name == "exp-one"
    assert run.data.metrics["converted.model.roc_auc"] == 0.81
    assert run.data.tags["registry.action"] == "logged only"

    raw = yaml.safe_load(p["params"].read_text())
    raw["mlflow"]["register_experiments"] = True
    switched = tmp_path / "params.yaml"
    switched.write_text(yaml.safe_dump(raw, sort_keys=False))
    record = stage(switched)
    assert (record["action"], record["version"], record["alias"]) == ("registered", "1", "champion")
    assert [str(v.version) for v in client.search_model_versions("name = 'lead-scoring'")] == ["1"]
