"""MLflow registry and the promotion gate, on a real sqlite store (one per module)."""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from sklearn.metrics import average_precision_score, roc_auc_score
from threadpoolctl import threadpool_limits

from features.engine.table import build_feature_table
from features.ingest.simulate import simulate
from features.params import GenerateParams, Params, parse_params
from features.storage import read_validated
from models.packaging.bundle import (
    SCORER_SHA256,
    example_input,
    load_scorer,
    save_bundle,
    scorer_file,
    sha256_of,
)
from models.packaging.loading import ModelLoadError, load
from models.packaging.registry import (
    Bootstrap,
    RunInputs,
    compare,
    dvc_hashes,
    git_commit,
    metric_entities,
    metric_value,
    paired_bootstrap,
    param_entities,
    passes_gate,
    register,
    weighted_metric,
)
from models.packaging.tracking import CHALLENGER, CHAMPION, artifact_location, local_model_path
from models.scorer import LeadScorer
from models.training import train_all

REPO = Path(__file__).resolve().parents[3]


def fast(params: Params, **train: Any) -> Params:
    """Quick training (these tests are about the registry, not accuracy)."""
    settings = {"num_threads": 1, "learning_rate": 0.1, "max_rounds": 150}
    settings |= {"early_stopping_rounds": 20, **train}
    return params.model_copy(update={"train": params.train.model_copy(update=settings)})


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pd.DataFrame]:
    out = tmp_path_factory.mktemp("registry-raw")
    simulate(GenerateParams(leads=3000, seed=21), out)
    return read_validated(out)


@pytest.fixture(scope="module")
def params(repo_params: Params) -> Params:
    return fast(repo_params)


@pytest.fixture(scope="module")
def snapshots(tables: dict[str, pd.DataFrame], params: Params) -> pd.DataFrame:
    return build_feature_table(tables, params, None)[1]


def _bundle(
    tmp_path_factory: pytest.TempPathFactory,
    tables: dict[str, pd.DataFrame],
    params: Params,
    name: str,
) -> Path:
    engine, snapshots = build_feature_table(tables, params, None)
    with threadpool_limits(1):
        scorer, _ = train_all(snapshots, engine, params)
    path = tmp_path_factory.mktemp(name) / "model"
    save_bundle(scorer, path, example_input(tables, 2, scorer=scorer))
    return path


@pytest.fixture(scope="module")
def good(
    tmp_path_factory: pytest.TempPathFactory, tables: dict[str, pd.DataFrame], params: Params
) -> Path:
    return _bundle(tmp_path_factory, tables, params, "good")


@pytest.fixture(scope="module")
def good_twin(
    tmp_path_factory: pytest.TempPathFactory, good: Path, tables: dict[str, pd.DataFrame]
) -> Path:
    """Another bundle (its pickle differs: one more metadata entry) that scores exactly like
    ``good``: a model exactly as good, which the same-bundle rule must not take for ``good``."""
    scorer = load_scorer(str(good))
    scorer.metadata = {**scorer.metadata, "twin": True}
    path = tmp_path_factory.mktemp("good-twin") / "model"
    save_bundle(scorer, path, example_input(tables, 2, scorer=scorer))
    assert sha256_of(scorer_file(path)) != sha256_of(scorer_file(good))
    return path


@pytest.fixture(scope="module")
def worse(
    tmp_path_factory: pytest.TempPathFactory, tables: dict[str, pd.DataFrame], params: Params
) -> Path:
    """One boosting round of a two-leaf tree, with no other candidate to choose (model
    selection would take the logistic regression or a blend instead): a deliberately worse
    model (two distinct scores; one round of seven leaves came within 0.005 ROC AUC on this
    small test slice)."""
    alone = params.train.selection.model_copy(update={"lightgbm_settings": 1, "logistic": False})
    worse = fast(params, max_rounds=1, num_leaves=2, selection=alone)
    return _bundle(tmp_path_factory, tables, worse, "worse")


def _inputs(
    model: Path, params: Params, snapshots: pd.DataFrame, tables: dict[str, pd.DataFrame]
) -> RunInputs:
    return RunInputs(model_dir=model, params=params, snapshots=snapshots, tables=lambda: tables)


@pytest.fixture(scope="module")
def sequence(
    store: str,
    good: Path,
    good_twin: Path,
    worse: Path,
    params: Params,
    snapshots: pd.DataFrame,
    tables: dict[str, pd.DataFrame],
) -> list[dict[str, Any]]:
    """First the good model, then the worse one, then one exactly as good as the first."""
    return [
        register(_inputs(model, params, snapshots, tables), uri=store)
        for model in (good, worse, good_twin)
    ]


def _alias(store: str, name: str, alias: str) -> str:
    return str(MlflowClient(store).get_model_version_by_alias(name, alias).version)


def test_first_model_becomes_champion(sequence: list[dict[str, Any]], store: str) -> None:
    first = sequence[0]
    assert first["alias"] == CHAMPION
    assert first["promoted"] is True
    assert first["champion_value"] is None
    assert first["reason"] == "no champion yet"
    assert first["version"] == "1"


def test_worse_model_becomes_challenger(
    sequence: list[dict[str, Any]], store: str, params: Params
) -> None:
    first, second, _ = sequence
    assert second["alias"] == CHALLENGER
    assert second["promoted"] is False
    assert second["champion_version"] == first["version"]
    assert second["new_value"] < second["champion_value"] - params.promotion.tolerance
    # the paired bootstrap's figures are in the record: a clear loss, all resamples agree
    assert second["difference"] == pytest.approx(second["new_value"] - second["champion_value"])
    low, high = second["difference_interval"]
    assert low <= second["difference"] <= high < 0
    assert second["interval_quantiles"] == [0.05, 0.95]
    assert second["bootstrap_resamples"] == params.promotion.bootstrap_resamples
    assert "kept the champion: the new model is worse on the same rows" in second["reason"]
    assert second["action"] == "registered"
    client = MlflowClient(store)
    version = client.get_model_version(params.mlflow.model_name, second["version"])
    assert version.tags["alias_given"] == CHALLENGER
    assert _alias(store, params.mlflow.model_name, CHALLENGER) == second["version"]


def test_champion_is_rescored_on_the_new_slice_like_its_own_features(
    sequence: list[dict[str, Any]],
) -> None:
    """Re-scored from raw tables with its own engine, the champion gets exactly the metric it
    had on its stored features."""
    first, second, third = sequence
    assert second["champion_value"] == pytest.approx(first["new_value"], abs=1e-12)
    assert third["champion_value"] == pytest.approx(first["new_value"], abs=1e-12)


def test_equal_model_takes_champion_and_challenger_stays(
    sequence: list[dict[str, Any]], store: str, params: Params
) -> None:
    first, second, third = sequence
    assert third["alias"] == CHAMPION
    assert third["version"] == "3"
    assert third["champion_version"] == first["version"]
    assert third["new_value"] == pytest.approx(third["champion_value"], abs=1e-12)
    # the same probabilities on every resample: no difference, no spread
    assert third["difference"] == 0.0
    assert third["difference_interval"] == [0.0, 0.0]
    name = params.mlflow.model_name
    assert _alias(store, name, CHAMPION) == third["version"]
    assert _alias(store, name, CHALLENGER) == second["version"]


def test_champion_alias_stayed_on_the_old_version_meanwhile(
    sequence: list[dict[str, Any]], store: str, params: Params
) -> None:
    """Between the second and third registration the champion was still version 1: the
    worse model's record compares against it, and version 1 keeps its tag."""
    client = MlflowClient(store)
    first = client.get_model_version(params.mlflow.model_name, sequence[0]["version"])
    assert first.tags["alias_given"] == CHAMPION
    assert sequence[1]["champion_version"] == sequence[0]["version"]


def test_load_scorer_from_the_registry(
    sequence: list[dict[str, Any]], store: str, params: Params, good: Path
) -> None:
    champion = load_scorer(f"models:/{params.mlflow.model_name}@{CHAMPION}", store)
    assert isinstance(champion, LeadScorer)
    assert champion.definition == load_scorer(str(good)).definition


def test_the_api_loads_a_bundles_scorer_without_mlflows_pyfunc_loader(
    sequence: list[dict[str, Any]],
    store: str,
    params: Params,
    good: Path,
    tables: dict[str, pd.DataFrame],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The registry's champion and a bundle directory load as the very scorer pyfunc would
    give (same scores on the same leads), and without pyfunc's loader (about 0.45 s a load)."""
    uri = f"models:/{params.mlflow.model_name}@{CHAMPION}"
    through_pyfunc = {"registry": load_scorer(uri, store), "bundle": load_scorer(str(good))}

    def refused(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("mlflow.pyfunc.load_model called")

    monkeypatch.setattr("mlflow.pyfunc.load_model", refused)
    direct = {"registry": load(uri, store)[0], "bundle": load(str(good))[0]}
    X = direct["bundle"].engine.transform(
        pd.DataFrame(
            {
                "lead_id": tables["leads"]["lead_id"][:200],
                "as_of": tables["leads"]["created_at"][:200],
            }
        ),
        tables["leads"],
        tables["touches"],
        tables["sales_events"],
    )
    for kind, scorer in direct.items():
        expected = through_pyfunc[kind].summarise(X)
        got = scorer.summarise(X)
        for target in scorer.targets:
            np.testing.assert_array_equal(got.probabilities[target], expected.probabilities[target])
        np.testing.assert_array_equal(got.score, expected.score)


def test_undefined_metric_keeps_the_champion(
    sequence: list[dict[str, Any]],
    store: str,
    good: Path,
    params: Params,
    snapshots: pd.DataFrame,
    tables: dict[str, pd.DataFrame],
) -> None:
    label = f"label_{params.quality_lead.target}"
    one_class = snapshots[(snapshots["split"] != "test") | (snapshots[label] == 0)]
    result = compare(
        MlflowClient(store),
        params.mlflow.model_name,
        load_scorer(str(good)),
        one_class,
        lambda: tables,
        params,
        store,
    )
    assert result.new is None
    assert result.promote is False
    assert "undefined" in result.reason


def test_a_champion_that_cannot_be_rescored_is_kept_unless_forced(
    store: str,
    tmp_path_factory: pytest.TempPathFactory,
    tables: dict[str, pd.DataFrame],
    params: Params,
    good: Path,
    snapshots: pd.DataFrame,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A champion without the primary target cannot be compared: the gate stays closed (the
    new version is challenger, one warning line says why) until the registration is forced."""
    raw = params.model_dump(mode="json", by_alias=True)
    raw["quality_lead"]["target"] = "accepted"
    raw["targets"] = {"accepted": raw["targets"]["accepted"]}
    raw["mlflow"]["model_name"] = "lead-scoring-compat"
    accepted_only = parse_params(raw)
    old = _bundle(tmp_path_factory, tables, accepted_only, "accepted-only")
    first = register(_inputs(old, accepted_only, snapshots, tables), uri=store)
    assert first["alias"] == CHAMPION

    new_params = params.model_copy(
        update={"mlflow": params.mlflow.model_copy(update={"model_name": "lead-scoring-compat"})}
    )
    with caplog.at_level(logging.WARNING, logger="models.packaging.registry"):
        second = register(_inputs(good, new_params, snapshots, tables), uri=store)
    assert second["alias"] == CHALLENGER
    assert second["promoted"] is False
    assert second["champion_value"] is None
    assert "could not be re-scored" in second["reason"]
    assert "--force" in second["reason"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "\n" not in warnings[0]
    assert _alias(store, "lead-scoring-compat", CHAMPION) == first["version"]

    forced = register(_inputs(good, new_params, snapshots, tables), uri=store, force=True)
    assert forced["alias"] == CHAMPION
    assert "promoted anyway (--force)" in forced["reason"]
    assert _alias(store, "lead-scoring-compat", CHAMPION) == forced["version"]


def _bootstrap(difference: float, low: float, high: float) -> Bootstrap:
    return Bootstrap(difference, low, high, resamples=1000, quantile=0.05, leads=500)


@pytest.mark.parametrize(
    ("metric", "difference", "low", "high", "expected"),
    [
        ("roc_auc", 0.0, 0.0, 0.0, True),  # exactly as good
        ("roc_auc", 0.002, -0.004, 0.008, True),  # better, and not plausibly worse by > 0.005
        ("roc_auc", -0.0017, -0.004, 0.001, False),  # worse on the same rows: within tolerance
        ("roc_auc", 0.004, -0.02, 0.03, False),  # better on the point, but mostly noise
        ("pr_auc", 0.01, -0.001, 0.02, True),
        ("brier", -0.001, -0.003, 0.004, True),  # lower is better: the high bound counts
        ("brier", -0.001, -0.003, 0.006, False),
        ("log_loss", 0.0001, -0.002, 0.002, False),
    ],
)
def test_gate_direction_and_bootstrap_rule(
    metric: str, difference: float, low: float, high: float, expected: bool
) -> None:
    promote, why = passes_gate(_bootstrap(difference, low, high), metric, 0.005)
    assert promote is expected, why


def test_weighted_metrics_equal_the_metrics_on_repeated_rows() -> None:
    """A resample is rows repeated by their draw counts: the O(n) weighted metrics equal the
    evaluation's metrics on the repeated rows, ties included."""
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 400).astype(np.float64)
    p = np.round(rng.uniform(0, 1, 400) * 0.5 + y * 0.3, 2)  # rounded: many ties
    w = rng.integers(0, 4, 400).astype(np.float64)
    repeated = np.repeat(np.arange(400), w.astype(int))
    inverse = np.unique(p, return_inverse=True)[1]
    ranks = (inverse, int(inverse.max()) + 1)
    assert weighted_metric("roc_auc", y, p, w, ranks) == pytest.approx(
        roc_auc_score(y[repeated], p[repeated]), abs=1e-12
    )
    assert weighted_metric("pr_auc", y, p, w, ranks) == pytest.approx(
        average_precision_score(y[repeated], p[repeated]), abs=1e-12
    )
    for metric in ("brier", "log_loss"):
        assert weighted_metric(metric, y, p, w, ranks) == pytest.approx(
            metric_value(metric, y[repeated], p[repeated]), abs=1e-12
        )


def test_a_model_worse_within_the_tolerance_does_not_take_champion() -> None:
    """The case of issue 15: the new model's ROC AUC is below the champion's by less than the
    tolerance (0.8566 vs 0.8583). A tolerance alone promoted it; the bootstrap rule does not."""
    rng = np.random.default_rng(0)
    leads = np.repeat(np.arange(1500), 4)  # four snapshots per lead, sharing its outcome
    truth = np.repeat(rng.uniform(0, 0.4, 1500), 4)
    y = (rng.uniform(0, 1, len(truth)) < truth).astype(np.float64)
    champion = truth + rng.normal(0, 0.08, len(truth))
    new = champion + rng.normal(0, 0.02, len(truth))  # the champion, slightly blurred
    result = paired_bootstrap("roc_auc", y, new, champion, leads, 500, 0, 0.05)
    assert result is not None
    assert -0.005 < result.difference < 0  # worse, but within the old tolerance
    assert result.low <= result.difference <= result.high
    assert passes_gate(result, "roc_auc", 0.005)[0] is False
    # seeded: the same figures every time, and the interval is over leads, not snapshots
    assert paired_bootstrap("roc_auc", y, new, champion, leads, 500, 0, 0.05) == result
    assert result.leads == 1500
    # a model better on the same rows (the champion's own scores, less noise) is promoted
    better = paired_bootstrap("roc_auc", y, truth, champion, leads, 500, 0, 0.05)
    assert better is not None
    assert better.difference > 0
    assert passes_gate(better, "roc_auc", 0.005)[0] is True


def test_metric_values() -> None:
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.4, 0.35, 0.8])
    assert metric_value("roc_auc", y, p) == pytest.approx(0.75)
    assert metric_value("brier", y, p) == pytest.approx(np.mean((p - y) ** 2))
    assert (metric_value("log_loss", y, p) or 0.0) > 0
    assert metric_value("pr_auc", y, p) == pytest.approx(0.8333333)
    assert metric_value("roc_auc", np.zeros(4), p) is None
    assert metric_value("roc_auc", np.zeros(0), np.zeros(0)) is None


def test_metrics_are_the_numeric_leaves() -> None:
    results = {
        "converted": {"model": {"roc_auc": 0.8, "ece": 0.01}, "n_test": 120},
        "leakage_suspected": False,
        "primary_target": "converted",
        "bad": {"nan": math.nan, "none": None, "list": [1, 2]},
        "by channel": {"paid search (EU)": 0.7},
    }
    logged = {m.key: m.value for m in metric_entities(results)}
    assert logged == {
        "converted.model.roc_auc": 0.8,
        "converted.model.ece": 0.01,
        "converted.n_test": 120.0,
        "leakage_suspected": 0.0,
        "by channel.paid search _EU_": 0.7,
    }


def test_every_param_is_flattened(repo_params: Params) -> None:
    logged = {p.key: p.value for p in param_entities(repo_params)}
    assert logged["validate.max_quarantine_share"] == str(
        repo_params.validate_.max_quarantine_share
    )
    assert logged["train.monotone.increasing"].startswith('["demo_request')
    assert logged["targets.converted.stages"] == '["won"]'
    assert logged["promotion.metric"] == repo_params.promotion.metric
    assert len(logged) > 60


def test_dvc_hashes(tmp_path: Path) -> None:
    lock = tmp_path / "dvc.lock"
    lock.write_text(
        "schema: '2.0'\nstages:\n  features:\n    cmd: leadscore features\n    deps:\n"
        "    - path: data/validated\n      md5: aaa.dir\n    outs:\n"
        "    - path: data/features\n      hash: md5\n      md5: bbb.dir\n      size: 3\n"
    )
    assert dvc_hashes(lock) == {"data/features": "bbb.dir"}
    assert dvc_hashes(tmp_path / "missing.lock") == {}


def test_git_commit(tmp_path: Path) -> None:
    commit, dirty = git_commit(REPO)
    assert commit is not None
    assert len(commit) == 40
    assert dirty in (True, False)
    assert git_commit(tmp_path) == (None, None)


def test_artifact_location_is_beside_a_sqlite_store(tmp_path: Path) -> None:
    assert artifact_location(f"sqlite:///{tmp_path}/x/mlflow.db") == str(tmp_path / "x/mlartifacts")
    assert artifact_location("sqlite:///mlflow.db") == str(Path.cwd() / "mlartifacts")
    assert artifact_location("http://127.0.0.1:5000") is None


def test_loading_from_the_registry_leaves_the_process_tracking_uri_alone(
    sequence: list[dict[str, Any]], store: str
) -> None:
    """Serving resolves and loads models from its reload thread while other threads score:
    the URI goes to the client, never into the process-wide MLFLOW_TRACKING_URI."""
    record = sequence[0]
    before = os.environ.get("MLFLOW_TRACKING_URI")
    path = local_model_path(f"models:/{record['model_name']}@{CHAMPION}", store)
    assert (Path(path) / "MLmodel").is_file()
    scorer = load_scorer(f"models:/{record['model_name']}/{record['version']}", store)
    assert scorer.primary == "converted"
    assert os.environ.get("MLFLOW_TRACKING_URI") == before


def test_a_registered_scorer_is_checked_against_its_recorded_hash_before_loading(
    tmp_path: Path, good: Path, params: Params, snapshots: pd.DataFrame, tables: dict
) -> None:
    """Registration records the SHA-256 of the bundle's pickle; loading a registered version
    refuses a pickle that is not that file, before unpickling it."""
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    record = register(_inputs(good, params, snapshots, tables), uri=store)
    name, version = record["model_name"], record["version"]
    tags = MlflowClient(store).get_model_version(name, version).tags
    assert tags[SCORER_SHA256] == sha256_of(scorer_file(good))
    scorer, source = load(f"models:/{name}@{CHAMPION}", store)
    assert isinstance(scorer, LeadScorer)
    assert (source.name, source.version, source.kind) == (name, version, "registry")

    pickled = scorer_file(Path(local_model_path(f"models:/{name}/{version}", store)))
    pickled.write_bytes(pickled.read_bytes() + b"tampered")
    with pytest.raises(ModelLoadError, match="SHA-256"):
        load(f"models:/{name}/{version}", store)


def test_the_next_registration_cleans_up_after_a_killed_one(
    tmp_path: Path,
    good: Path,
    worse: Path,
    params: Params,
    snapshots: pd.DataFrame,
    tables: dict,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A registration killed half-way leaves a run RUNNING and a version without an alias; the
    next one marks the run FAILED and tags the version as an orphan, aliases untouched."""
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    first = register(_inputs(good, params, snapshots, tables), uri=store)
    client = MlflowClient(store)
    name = first["model_name"]
    experiment = client.get_experiment_by_name(params.mlflow.experiment).experiment_id
    killed = client.create_run(experiment)  # as a kill -9 between start_run and its end
    source = client.get_model_version(name, first["version"]).source
    orphan = client.create_model_version(name, source, run_id=killed.info.run_id)
    assert client.get_run(killed.info.run_id).info.status == "RUNNING"

    with caplog.at_level(logging.WARNING, logger="models.packaging.registry"):
        second = register(_inputs(worse, params, snapshots, tables), uri=store)
    assert client.get_run(killed.info.run_id).info.status == "FAILED"
    tags = client.get_model_version(name, orphan.version).tags
    assert "registration did not finish" in tags["leadscore.orphan"]
    assert client.get_model_version(name, orphan.version).aliases == []
    assert _alias(store, name, CHAMPION) == first["version"]
    assert second["alias"] == CHALLENGER
    assert "leadscore.orphan" not in client.get_model_version(name, second["version"]).tags
    assert client.get_run(second["run_id"]).info.status == "FINISHED"
    assert sum("left unfinished" in r.getMessage() for r in caplog.records) == 1


def test_the_same_bundle_is_registered_once(
    tmp_path: Path,
    good: Path,
    worse: Path,
    params: Params,
    snapshots: pd.DataFrame,
    tables: dict,
) -> None:
    """A bundle whose scorer's SHA-256 is already a version of the model reuses that version:
    one more run records the registration, the gate decides the alias, no version is added."""
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    name = params.mlflow.model_name
    first = register(_inputs(good, params, snapshots, tables), uri=store)
    again = register(_inputs(good, params, snapshots, tables), uri=store)
    assert (first["version"], first["reused"]) == ("1", False)
    assert (again["version"], again["reused"], again["alias"]) == ("1", True, CHAMPION)
    assert again["reason"] == "the same bundle is champion version 1 already"

    rejected = register(_inputs(worse, params, snapshots, tables), uri=store)
    rejected_again = register(_inputs(worse, params, snapshots, tables), uri=store)
    assert (rejected["version"], rejected["alias"]) == ("2", CHALLENGER)
    assert (rejected_again["version"], rejected_again["alias"]) == ("2", CHALLENGER)
    assert rejected_again["reused"] is True
    assert rejected_again["champion_value"] == pytest.approx(rejected["champion_value"])
    assert _alias(store, name, CHAMPION) == "1"

    # the gate still decides for a reused version: without a champion it passes
    MlflowClient(store).delete_registered_model_alias(name, CHAMPION)
    promoted = register(_inputs(worse, params, snapshots, tables), uri=store)
    assert promoted["reason"] == "no champion yet"
    assert (promoted["version"], promoted["alias"], promoted["reused"]) == ("2", CHAMPION, True)
    assert _alias(store, name, CHAMPION) == "2"

    client = MlflowClient(store)
    versions = client.search_model_versions(f"name = '{name}'")
    assert sorted(int(v.version) for v in versions) == [1, 2]
    assert {str(v.version): v.tags[SCORER_SHA256] for v in versions} == {
        "1": sha256_of(scorer_file(good)),
        "2": sha256_of(scorer_file(worse)),
    }
    assert client.get_model_version(name, "2").tags["alias_given"] == CHAMPION
    experiment = client.get_experiment_by_name(params.mlflow.experiment).experiment_id
    runs = client.search_runs([experiment])
    assert len(runs) == 5
    assert {run.info.status for run in runs} == {"FINISHED"}
    reused = {run.info.run_id for run in runs if run.data.tags.get("registry.reused") == "true"}
    assert reused == {again["run_id"], rejected_again["run_id"], promoted["run_id"]}


def test_log_only_registers_nothing_and_logs_the_run(
    tmp_path: Path,
    good: Path,
    good_twin: Path,
    worse: Path,
    params: Params,
    snapshots: pd.DataFrame,
    tables: dict,
) -> None:
    """What the register stage does inside `dvc exp run`: the run, its metrics and its bundle
    are logged, the gate's verdict recorded, but no version is added and no alias moves."""
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    name = params.mlflow.model_name
    first = register(_inputs(good, params, snapshots, tables), uri=store)
    why = "DVC experiment 'try-it'"
    tried = [
        register(_inputs(model, params, snapshots, tables), uri=store, log_only=why)
        for model in (good_twin, worse)
    ]
    client = MlflowClient(store)
    assert [int(v.version) for v in client.search_model_versions(f"name = '{name}'")] == [1]
    assert _alias(store, name, CHAMPION) == first["version"]
    with pytest.raises(Exception, match="alias"):
        client.get_model_version_by_alias(name, CHALLENGER)
    twin, bad = tried
    for record in tried:
        assert (record["action"], record["registered"], record["alias"]) == (
            "logged only",
            False,
            None,
        )
        assert record["version"] is None
        assert record["promoted"] is False
        assert why in record["action_reason"]
        run = client.get_run(record["run_id"])
        assert run.info.status == "FINISHED"
        assert run.data.tags["registry.action"] == "logged only"
        assert "registry.version" not in run.data.tags
        assert run.data.metrics["promotion.promoted"] == 0.0
        # the bundle is on the run, so it can be registered from there later
        assert record["model_uri"].startswith("models:/m-")  # a logged model, not a version
        logged = client.get_logged_model(record["model_uri"].removeprefix("models:/"))
        assert logged.source_run_id == record["run_id"]
    assert twin["would_promote"] is True
    assert twin["difference"] == 0.0
    assert bad["would_promote"] is False
    assert bad["difference"] < 0
