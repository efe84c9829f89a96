"""The API's local cache of registered bundles (issue 13), through a real sqlite MLflow store:
a second start reads the cache without importing MLflow (nor scikit-learn), a moved alias is
served on reload and on start, a damaged cache entry is detected by its SHA-256 and fetched
again, and the registry read without MLflow answers what MLflow's client answers."""

from __future__ import annotations

import json
import logging
import pickle
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from features.params import load_params
from models.packaging.cache import SCORER_SHA256, ModelCache, scorer_file, sha256_of
from models.packaging.loading import ModelLoadError, load
from models.packaging.registry import RunInputs, register
from models.packaging.tracking import client, locate, read_sqlite_version, resolve
from serving.app import create_app
from tests.serving.conftest import auth, settings_for
from tests.serving.world import World

REPO = Path(__file__).resolve().parents[2]
NAME = "lead-scoring"
CHAMPION = f"models:/{NAME}@champion"


@pytest.fixture(scope="module")
def registry(world: World, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A sqlite store with the world's bundle as version 1 (champion) and a second, different
    bundle (the same scorer pickled with another note) as version 2, no alias."""
    root = tmp_path_factory.mktemp("cache-registry")
    store = f"sqlite:///{root / 'mlflow.db'}"
    params = load_params(world.params_path)
    metrics = json.loads((world.artifacts / "metrics.json").read_text())
    record = register(
        RunInputs(world.bundle, params, world.snapshots, lambda: world.tables, results=metrics),
        uri=store,
    )
    assert (record["alias"], str(record["version"])) == ("champion", "1")
    second = root / "second-bundle"
    shutil.copytree(world.bundle, second)
    scorer = pickle.loads(scorer_file(world.bundle).read_bytes())
    scorer.metadata = {**scorer.metadata, "note": "version 2"}
    scorer_file(second).write_bytes(pickle.dumps(scorer, protocol=pickle.HIGHEST_PROTOCOL))
    digest = sha256_of(scorer_file(second))
    mlflow_client = client(store)
    created = mlflow_client.create_model_version(
        NAME, str(second), run_id=None, tags={SCORER_SHA256: digest}
    )
    assert str(created.version) == "2"
    return {"store": store, "second": second, "digests": {"2": digest}}


def _move_champion(store: str, version: str) -> None:
    client(store).set_registered_model_alias(NAME, "champion", version)


def test_registry_read_without_mlflow_is_mlflows_answer(registry: dict[str, Any]) -> None:
    store = registry["store"]
    _move_champion(store, "1")
    for uri, alias, version in [(CHAMPION, "champion", None), (f"models:/{NAME}/2", None, "2")]:
        fast = read_sqlite_version(store, NAME, alias, version)
        reference = resolve(uri, store)
        assert fast is not None
        assert (fast.name, fast.version, fast.run_id, dict(fast.tags)) == (
            reference.name,
            reference.version,
            reference.run_id,
            dict(reference.tags),
        )
        assert fast.location == client(store).get_model_version_download_uri(NAME, fast.version)
    # what the tables cannot answer plainly is MLflow's: its error, word for word
    assert read_sqlite_version(store, NAME, "nobody") is None
    assert read_sqlite_version(store, NAME, "latest") is None
    with pytest.raises(LookupError, match="not found"):
        locate(f"models:/{NAME}@nobody", store)
    # a deleted version (MLflow keeps its row, marked) and its alias are gone for both
    mlflow_client = client(store)
    deleted = mlflow_client.create_model_version(
        NAME, str(registry["second"]), tags={SCORER_SHA256: registry["digests"]["2"]}
    )
    mlflow_client.set_registered_model_alias(NAME, "doomed", deleted.version)
    assert read_sqlite_version(store, NAME, "doomed") is not None
    mlflow_client.delete_model_version(NAME, deleted.version)
    assert read_sqlite_version(store, NAME, "doomed") is None
    assert read_sqlite_version(store, NAME, None, str(deleted.version)) is None
    with pytest.raises(LookupError, match="not found"):
        locate(f"models:/{NAME}/{deleted.version}", store)


def test_second_start_reads_the_cache_without_mlflow_or_sklearn(
    world: World, registry: dict[str, Any], tmp_path: Path
) -> None:
    store = registry["store"]
    _move_champion(store, "1")
    cache = tmp_path / "cache"
    scorer, source = load(CHAMPION, store, cache)
    assert (source.name, source.version, source.kind) == (NAME, "1", "registry")
    digest = sha256_of(scorer_file(world.bundle))
    entry = ModelCache(cache).entry(NAME, "1", digest)
    assert sha256_of(scorer_file(entry)) == digest
    recorded = json.loads((entry / "leadscore-cache.json").read_text())
    assert (recorded["name"], recorded["version"], recorded["sha256"]) == (NAME, "1", digest)

    rows = world.snapshots.head(200)
    X = scorer.engine.matrix_from_frame(rows)
    np.save(tmp_path / "X.npy", X)
    expected = {t: p.tolist() for t, p in scorer.probabilities(X).items()}
    # a fresh process, as `leadscore serve` starts: the registry's own artifacts are out of
    # reach, so the bundle can only come from the cache
    program = textwrap.dedent(
        f"""
        import json, sys
        import numpy as np
        from models.boosters import lightgbm_without_sklearn
        lightgbm_without_sklearn()
        from serving.holder import load_model
        model = load_model({CHAMPION!r}, {store!r}, 3, __import__("pathlib").Path({str(cache)!r}))
        X = np.load({str(tmp_path / "X.npy")!r})
        print(json.dumps({{
            "version": model.info.version,
            "metrics": model.info.metrics is not None,
            "probabilities": {{t: p.tolist() for t, p in model.scorer.probabilities(X).items()}},
            "imported": sorted(m for m in ("mlflow", "sklearn", "scipy.stats") if m in sys.modules),
        }}))
        """
    )
    artifacts = Path(store.removeprefix("sqlite:///")).parent / "mlartifacts"
    hidden = artifacts.with_name("mlartifacts-hidden")
    artifacts.rename(hidden)
    try:
        result = subprocess.run(
            [sys.executable, "-c", program], cwd=REPO, capture_output=True, text=True, timeout=300
        )
    finally:
        hidden.rename(artifacts)
    assert result.returncode == 0, result.stderr[-3000:]
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["version"] == "1"
    assert answer["metrics"]  # the run's metrics, read from the store's tables
    assert answer["imported"] == []
    assert answer["probabilities"] == expected  # LightGBM without scikit-learn: the same scores


def test_moved_alias_is_served_on_reload_and_on_start(
    world: World, registry: dict[str, Any], tmp_path: Path
) -> None:
    store = registry["store"]
    _move_champion(store, "1")
    cache = tmp_path / "cache"
    settings = settings_for(
        world, tmp_path, model_uri=CHAMPION, tracking_uri=store, model_cache=str(cache)
    )
    with TestClient(create_app(settings)) as api:
        assert api.get("/readyz").json()["model"]["version"] == "1"
        _move_champion(store, "2")
        assert api.get("/readyz").json()["model"]["version"] == "1"  # until a reload
        answer = api.post("/v1/admin/reload", headers=auth("admin"))
        assert answer.status_code == 200, answer.text
        assert answer.json()["model"]["version"] == "2"
        assert api.get("/readyz").json()["model"]["version"] == "2"
    entries = {p.name.split("-")[0] for p in (cache / NAME).iterdir()}
    assert entries == {"v1", "v2"}

    _move_champion(store, "1")  # moved back while no server runs: the next start sees it
    with TestClient(create_app(settings)) as api:
        assert api.get("/readyz").json()["model"]["version"] == "1"
    _move_champion(store, "2")
    with TestClient(create_app(settings)) as api:
        assert api.get("/readyz").json()["model"]["version"] == "2"
    _move_champion(store, "1")


@pytest.mark.parametrize("damage", ["flipped", "truncated", "missing"])
def test_damaged_cache_entry_is_detected_and_fetched_again(
    world: World,
    registry: dict[str, Any],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    damage: str,
) -> None:
    store = registry["store"]
    _move_champion(store, "1")
    cache = tmp_path / "cache"
    load(CHAMPION, store, cache)
    digest = sha256_of(scorer_file(world.bundle))
    pickled = scorer_file(ModelCache(cache).entry(NAME, "1", digest))
    data = bytearray(pickled.read_bytes())
    if damage == "flipped":
        data[len(data) // 2] ^= 0xFF
        pickled.write_bytes(bytes(data))
    elif damage == "truncated":
        pickled.write_bytes(bytes(data[: len(data) // 3]))
    else:
        pickled.unlink()
    with caplog.at_level(logging.WARNING, logger="models.packaging.cache"):
        _scorer, source = load(CHAMPION, store, cache)
    assert source.version == "1"
    assert sha256_of(pickled) == digest  # fetched again, whole
    warned = [r.getMessage() for r in caplog.records if r.name == "models.packaging.cache"]
    assert len(warned) == 1, warned
    assert "fetched again" in warned[0]


def test_a_changed_registered_file_is_never_cached_nor_loaded(
    registry: dict[str, Any], tmp_path: Path
) -> None:
    """The registry's own file differing from its recorded SHA-256 is refused as before, and
    nothing enters the cache."""
    store = registry["store"]
    _move_champion(store, "2")
    pickled = scorer_file(registry["second"])
    original = pickled.read_bytes()
    pickled.write_bytes(original + b"tampered")
    cache = tmp_path / "cache"
    try:
        with pytest.raises(ModelLoadError, match="not the one recorded"):
            load(CHAMPION, store, cache)
    finally:
        pickled.write_bytes(original)
        _move_champion(store, "1")
    assert not (cache / NAME).exists() or not any((cache / NAME).iterdir())


def test_an_unwritable_cache_only_costs_the_cache(
    registry: dict[str, Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = registry["store"]
    _move_champion(store, "1")
    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory")
    with caplog.at_level(logging.WARNING, logger="models.packaging.loading"):
        _scorer, source = load(CHAMPION, store, blocked / "cache")
    assert source.version == "1"
    assert any("not written" in r.getMessage() for r in caplog.records)


def test_cache_keeps_the_most_recent_entries(registry: dict[str, Any], tmp_path: Path) -> None:
    store = registry["store"]
    cache = ModelCache(tmp_path / "cache", keep=1)
    found = locate(f"models:/{NAME}/2", store)
    assert found.location is not None
    first = cache.put(NAME, "2", found.tags[SCORER_SHA256], Path(found.location), "here")
    other = cache.put(NAME, "9", found.tags[SCORER_SHA256], Path(found.location), "here")
    assert not first.exists()
    assert other.exists()
    assert cache.read(NAME, "9", found.tags[SCORER_SHA256]) is not None
