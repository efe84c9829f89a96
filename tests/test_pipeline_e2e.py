"""End to end: a fresh clone, `dvc repro` with real DVC, MLflow (sqlite) and every stage.

The clone gets a smaller simulated CRM (params edited in the clone only) so the whole pipeline
runs in well under a minute; everything else is exactly what the README's first command runs.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.project import BIN, commit_all, copy_project, pipeline_env, run_ok

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    target = tmp_path_factory.mktemp("e2e") / "repo"
    env = pipeline_env(target)
    # Copy the working tree (committed or not) as a fresh repository: a clone of what is here.
    copy_project(target)
    params = yaml.safe_load((target / "params.yaml").read_text())
    params["generate"]["leads"] = 4000
    (target / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    commit_all(target, env, "e2e")
    return target, env


@pytest.fixture(scope="module")
def reproduced(clone: tuple[Path, dict[str, str]]) -> tuple[Path, dict[str, str]]:
    repo, env = clone
    run_ok([str(BIN / "dvc"), "repro"], repo, env)
    return repo, env


def test_every_stage_output_exists(reproduced: tuple[Path, dict[str, str]]) -> None:
    repo, _ = reproduced
    pipeline = yaml.safe_load((repo / "dvc.yaml").read_text())
    for name, stage in pipeline["stages"].items():
        for out in stage.get("outs", []) + stage.get("metrics", []):
            path = next(iter(out)) if isinstance(out, dict) else out
            assert (repo / path).exists(), f"stage {name}: {path} missing"


def test_no_change_repro_does_nothing(reproduced: tuple[Path, dict[str, str]]) -> None:
    repo, env = reproduced
    result = run_ok([str(BIN / "dvc"), "repro"], repo, env)
    assert "Running stage" not in result.stdout
    status = run_ok([str(BIN / "dvc"), "status"], repo, env)
    assert "changed" not in status.stdout


def test_metrics_and_registry(reproduced: tuple[Path, dict[str, str]]) -> None:
    repo, env = reproduced
    shown = run_ok([str(BIN / "dvc"), "metrics", "show", "--json"], repo, env)
    assert "roc_auc" in shown.stdout
    metrics = json.loads((repo / "artifacts" / "metrics.json").read_text())
    primary = metrics["primary_target"]
    assert metrics[primary]["model"]["roc_auc"] > 0.6
    registry = json.loads((repo / "artifacts" / "registry.json").read_text())
    assert registry["alias"] == "champion"
    assert (repo / "mlflow.db").exists()


def test_param_change_reruns_from_the_right_stage(
    reproduced: tuple[Path, dict[str, str]],
) -> None:
    repo, env = reproduced
    result = run_ok([str(BIN / "dvc"), "exp", "run", "-S", "train.num_leaves=15"], repo, env)
    assert "Running stage 'train'" in result.stdout
    assert "Running stage 'ingest'" not in result.stdout
    assert "Running stage 'features'" not in result.stdout


def _champion_version(repo: Path, name: str = "lead-scoring") -> str:
    from mlflow.tracking import MlflowClient

    store = f"sqlite:///{repo / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=store, registry_uri=store)
    return str(client.get_model_version_by_alias(name, "champion").version)


def _versions(repo: Path, name: str = "lead-scoring") -> list[str]:
    from mlflow.tracking import MlflowClient

    store = f"sqlite:///{repo / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=store, registry_uri=store)
    return sorted(str(v.version) for v in client.search_model_versions(f"name = '{name}'"))


def test_queue_is_ranked_by_the_champion(reproduced: tuple[Path, dict[str, str]]) -> None:
    """The queue stage scores with the registry's champion. An experiment registers nothing
    (`mlflow.register_experiments` is false): its register stage logs the run and records what
    the gate would have decided, and the queue keeps the champion's ranking."""
    import pandas as pd

    repo, env = reproduced
    queue = pd.read_parquet(repo / "artifacts" / "queue.parquet")
    assert set(queue["model_name"]) == {"lead-scoring"}
    champion = _champion_version(repo)
    assert set(queue["model_version"]) == {champion}
    versions = _versions(repo)

    # a model that cannot be as good: one boosting round on two leaves
    result = run_ok(
        [str(BIN / "dvc"), "exp", "run", "-S", "train.max_rounds=1", "-S", "train.num_leaves=2"],
        repo,
        env,
    )
    assert "Running stage 'queue'" in result.stdout
    registry = json.loads((repo / "artifacts" / "registry.json").read_text())
    assert registry["action"] == "logged only", registry["action_reason"]
    assert (registry["alias"], registry["promoted"]) == (None, False)
    assert registry["would_promote"] is False, registry["reason"]
    assert registry["difference"] < 0
    assert registry["champion_version"] == champion
    assert _versions(repo) == versions
    assert _champion_version(repo) == champion
    after = pd.read_parquet(repo / "artifacts" / "queue.parquet")
    assert set(after["model_version"]) == {champion}
    assert after["lead_id"].tolist() == queue["lead_id"].tolist()  # the champion's order


def _set_params(repo: Path, **sections: dict[str, object]) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    for section, values in sections.items():
        params[section].update(values)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def _fingerprint(directory: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(directory)): path.read_bytes()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def test_plots_render(reproduced: tuple[Path, dict[str, str]]) -> None:
    repo, env = reproduced
    run_ok([str(BIN / "dvc"), "plots", "show", "--out", "plots-html"], repo, env)
    page = (repo / "plots-html" / "index.html").read_text()
    for title in ("ROC", "Precision-recall", "Cumulative gains", "Calibration"):
        assert title in page


def test_bad_data_fails_the_stage_and_keeps_the_last_good_outputs(
    reproduced: tuple[Path, dict[str, str]],
) -> None:
    """A table-level failure through `dvc repro`: exit ≠ 0, one line naming the table and the
    rule, no traceback, and the last good validated tables and model stay as they were."""
    import pandas as pd

    repo, env = reproduced
    export = repo.parent / "export"
    shutil.copytree(repo / "data" / "raw", export)
    leads = pd.read_parquet(export / "leads.parquet")
    duplicated = pd.concat([leads, leads.sample(frac=0.05, random_state=1)], ignore_index=True)
    duplicated.to_parquet(export / "leads.parquet")
    validated_before = _fingerprint(repo / "data" / "validated")
    model_before = _fingerprint(repo / "artifacts" / "model")

    _set_params(repo, source={"kind": "tables", "path": str(export), "mapping": None})
    try:
        result = subprocess.run(
            [str(BIN / "dvc"), "repro"], cwd=repo, env=env, capture_output=True, text=True
        )
    finally:
        run_ok(["git", "checkout", "--", "params.yaml"], repo, env)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Traceback" not in output
    failure = [line for line in output.splitlines() if "allowed (top rule:" in line]
    assert len(failure) == 1, output[-3000:]
    assert "leads.parquet: 400 of 4,200 rows" in failure[0]
    assert "duplicate" in failure[0]
    assert _fingerprint(repo / "data" / "validated") == validated_before
    assert _fingerprint(repo / "artifacts" / "model") == model_before


def test_bank_marketing_end_to_end(reproduced: tuple[Path, dict[str, str]]) -> None:
    """The real UCI export through `source`: imported, validated, featurised, trained and
    evaluated beside its baselines, with `duration` (known only after the call) in no model;
    then validated and featurised by `dvc exp run -S engine.kind=dask`: the same features."""
    repo, env = reproduced
    _set_params(
        repo,
        source={
            "kind": "flat",
            "path": "data/samples/bank-additional-full.csv.gz",
            "mapping": "mappings/bank_marketing.yaml",
        },
        mlflow={"model_name": "lead-scoring-bank"},
    )
    snapshots = repo / "data" / "features" / "snapshots.parquet"
    try:
        run_ok([str(BIN / "dvc"), "repro"], repo, env)
        metrics = json.loads((repo / "artifacts" / "metrics.json").read_text())
        spec = json.loads((repo / "data" / "features" / "feature_spec.json").read_text())
        card = (repo / "artifacts" / "model_card.md").read_text()
        registry = json.loads((repo / "artifacts" / "registry.json").read_text())
        features_local = pd.read_parquet(snapshots)
        # the same export validated and featurised on a Dask cluster (training on the cluster
        # and its quality are tests/integration/test_dask_pipeline.py's, on the default data)
        run_ok([str(BIN / "dvc"), "exp", "run", "-S", "engine.kind=dask", "features"], repo, env)
        spec_dask = json.loads((repo / "data" / "features" / "feature_spec.json").read_text())
        features_dask = pd.read_parquet(snapshots)
    finally:
        run_ok(["git", "checkout", "--", "params.yaml"], repo, env)

    assert metrics["engine"] == spec["engine"] == "local"
    assert spec_dask["engine"] == "dask"
    pd.testing.assert_frame_equal(features_dask, features_local, check_exact=True)

    converted = metrics["converted"]
    assert converted["n_test"] > 8000
    assert "truth" not in converted  # real data has no true probabilities
    assert converted["model"]["roc_auc"] > 0.75
    assert converted["model"]["roc_auc"] > converted["rules"]["roc_auc"]
    assert converted["model"]["pr_auc"] > converted["rules"]["pr_auc"]
    assert converted["logistic"]["roc_auc"] > 0.7
    names = [feature["name"] for feature in spec["features"]]
    assert {"euribor3m", "poutcome"} <= set(names)
    assert "duration" not in names
    assert "`duration`" in card.split("known only after the outcome")[1]
    assert registry["model_name"] == "lead-scoring-bank"
    assert registry["alias"] == "champion"
