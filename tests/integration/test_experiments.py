"""DVC experiments that compare and register nothing: real `dvc repro`, `dvc exp run`,
`dvc exp show` and `dvc exp apply` on a copy of the project, with a real MLflow sqlite store.

The main pipeline (`dvc repro`) registers version 1 as champion; two experiments with other
params then log their runs but register no version and move no alias; `dvc exp show` prints
each experiment's headline metrics (the git-tracked summaries) and `dvc exp apply` restores
every report of the run it names, with its model.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.project import BIN, GIT, commit_all, copy_project, pipeline_env

EXPERIMENTS = {"leaves-3": "train.num_leaves=3", "leaves-15": "train.num_leaves=15"}
SEGMENTED = ("by-country", "segments.by=country")
"""Run after the others: a model per country where the data allows (models.segment_training)."""
REPORTS = (
    "artifacts/summary.json",
    "artifacts/promotion.json",
    "artifacts/metrics.json",
    "artifacts/metrics_by_group.json",
    "artifacts/kpis.json",
    "artifacts/model_card.md",
    "artifacts/registry.json",
    "artifacts/plots/roc.csv",
    "artifacts/model/artifacts/scorer.pkl",
)

pytestmark = pytest.mark.slow


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{args}: {result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def experiments(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    repo = tmp_path_factory.mktemp("experiments") / "repo"
    env = pipeline_env(repo)
    copy_project(repo)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["generate"]["leads"] = 4000
    params["train"]["num_threads"] = 1
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    commit_all(repo, env, "baseline")
    _run([str(BIN / "dvc"), "repro"], repo, env)
    # what a user commits after the main pipeline: the lock and the git-tracked summaries
    _run([*GIT, "add", "-A"], repo, env)
    committed = _run(["git", "diff", "--cached", "--name-only"], repo, env).stdout.split()
    _run([*GIT, "commit", "-qm", "main pipeline run"], repo, env)
    main = json.loads((repo / "artifacts/registry.json").read_text())
    outputs: dict[str, dict[str, bytes]] = {}
    for name, setting in EXPERIMENTS.items():
        _run([str(BIN / "dvc"), "exp", "run", "-n", name, "-S", setting], repo, env)
        outputs[name] = {path: (repo / path).read_bytes() for path in REPORTS}
    shown = _run([str(BIN / "dvc"), "exp", "show", "--json"], repo, env).stdout
    name, setting = SEGMENTED
    _run([str(BIN / "dvc"), "exp", "run", "-n", name, "-S", setting], repo, env)
    outputs[name] = {path: (repo / path).read_bytes() for path in REPORTS}
    return {
        "repo": repo,
        "env": env,
        "main": main,
        "committed": committed,
        "outputs": outputs,
        "shown": json.loads(shown),
    }


def _store(repo: Path) -> Any:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{repo / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _rows(shown: Any) -> dict[str, dict[str, Any]]:
    """``dvc exp show --json``'s rows by experiment name (or rev): their metrics by file."""
    rows: dict[str, dict[str, Any]] = {}

    def visit(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                visit(item)
        elif isinstance(node, dict):
            if "rev" in node and "data" in node:
                data = node.get("data") or {}
                rows[str(node.get("name") or node["rev"])] = data.get("metrics") or {}
            for value in node.values():
                if isinstance(value, list | dict):
                    visit(value)

    visit(shown)
    return rows


def test_the_main_pipeline_registers_and_commits_its_summaries(
    experiments: dict[str, Any],
) -> None:
    main = experiments["main"]
    assert (main["action"], main["version"], main["alias"]) == ("registered", "1", "champion")
    # git tracks the headline metrics; the cached reports stay out of git
    assert {"artifacts/summary.json", "artifacts/promotion.json"} <= set(experiments["committed"])
    assert "artifacts/metrics.json" not in experiments["committed"]
    summary = json.loads((experiments["repo"] / "artifacts/summary.json").read_text())
    numbers = [
        value
        for block in summary.values()
        for value in (block.values() if isinstance(block, dict) else [block])
        if isinstance(value, int | float)
    ]
    assert len(numbers) <= 20
    assert summary["converted"]["roc_auc"] > 0.6


def test_experiments_log_runs_but_register_nothing(experiments: dict[str, Any]) -> None:
    client = _store(experiments["repo"])
    versions = client.search_model_versions("name = 'lead-scoring'")
    assert [str(v.version) for v in versions] == ["1"]
    assert str(client.get_model_version_by_alias("lead-scoring", "champion").version) == "1"
    experiment = client.get_experiment_by_name("leadscore").experiment_id
    runs = client.search_runs([experiment])
    settings = {**EXPERIMENTS, SEGMENTED[0]: SEGMENTED[1]}
    assert len(runs) == 1 + len(settings)
    assert {run.info.status for run in runs} == {"FINISHED"}
    logged = {
        run.info.run_name: run
        for run in runs
        if run.data.tags.get("registry.action") == "logged only"
    }
    assert set(logged) == set(settings)
    for name, run in logged.items():
        setting, value = settings[name].split("=")
        assert run.data.params[setting] == value
        assert "registry.version" not in run.data.tags
        record = json.loads(experiments["outputs"][name]["artifacts/registry.json"])
        assert record["action"] == "logged only"
        assert record["run_id"] == run.info.run_id
        assert record["champion_version"] == "1"
        low, high = record["difference_interval"]
        assert low <= record["difference"] <= high


def test_exp_show_prints_each_experiments_metrics(experiments: dict[str, Any]) -> None:
    rows = _rows(experiments["shown"])
    assert set(EXPERIMENTS) <= set(rows), sorted(rows)
    aucs = {}
    for name in EXPERIMENTS:
        metrics = rows[name]
        # the headline files only: the detailed metrics.json is no column of `dvc exp show`
        assert set(metrics) == {"artifacts/summary.json", "artifacts/promotion.json"}
        summary = metrics["artifacts/summary.json"]["data"]
        promotion = metrics["artifacts/promotion.json"]["data"]
        expected = json.loads(experiments["outputs"][name]["artifacts/summary.json"])
        assert summary == expected
        assert promotion["registered"] is False
        aucs[name] = summary["converted"]["roc_auc"]
    assert aucs["leaves-3"] != aucs["leaves-15"]
    # no volatile value anywhere in what the experiments compare
    text = json.dumps([rows[name] for name in EXPERIMENTS])
    for volatile in ("run_id", '"now"', "seconds"):
        assert volatile not in text


def test_a_segmented_experiment_reports_every_segment_beside_the_pooled_model(
    experiments: dict[str, Any],
) -> None:
    """`dvc exp run -S segments.by=country`: every country is reported, each with the model
    its leads get (its own, or pooled with the reason) and both models' test figures on its
    rows; the model card shows the table; the bundle's scorer routes by country."""
    import pickle

    outputs = experiments["outputs"][SEGMENTED[0]]
    metrics = json.loads(outputs["artifacts/metrics.json"])
    segments = metrics["segments"]
    assert segments["by"] == "country"
    assert len(segments["segments"]) >= 5
    for name, entry in segments["segments"].items():
        assert entry["model"] in ("segment", "pooled"), name
        assert entry["model"] == "segment" or entry["reason"]
        test = entry["targets"]["converted"]["test"]
        if entry["model"] == "pooled" and test["rows"]:
            assert test["model"] == test["pooled"]
    ready = [
        name
        for name, entry in segments["segments"].items()
        if "calibration_roc_auc" in entry["targets"]["converted"]
    ]
    assert ready, "no country had enough data for a model of its own at 4,000 leads"
    card = outputs["artifacts/model_card.md"].decode()
    assert "## Models per segment" in card
    assert "By `country`" in card
    scorer = pickle.loads(outputs["artifacts/model/artifacts/scorer.pkl"])
    assert scorer.segmentation is not None
    assert sorted(scorer.segmentation.scorers) == segments["used"]


def test_exp_apply_restores_every_report_of_the_run(experiments: dict[str, Any]) -> None:
    repo, env = experiments["repo"], experiments["env"]
    first, last = EXPERIMENTS
    assert experiments["outputs"][first] != experiments["outputs"][last]
    _run([str(BIN / "dvc"), "exp", "apply", first], repo, env)
    restored = {path: (repo / path).read_bytes() for path in REPORTS}
    for path in REPORTS:
        assert restored[path] == experiments["outputs"][first][path], path
