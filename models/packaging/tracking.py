"""Where MLflow lives and how leadscore names what is in it.

Tracking URI: ``MLFLOW_TRACKING_URI`` when set, else ``sqlite:///mlflow.db`` (embedded, relative
to the working directory: the repository root under ``dvc repro``). For a sqlite store the
experiment's artifacts go to ``mlartifacts/`` beside the database file (a local path; nothing
leaves the machine). The registry lives in the same store.

Every function takes the tracking URI explicitly and hands it to the MLflow client it makes:
nothing here changes the process-wide ``MLFLOW_TRACKING_URI`` (the API resolves models from its
reload thread while other threads score).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
ARTIFACT_DIR = "mlartifacts"
CHAMPION = "champion"


def champion_uri(model_name: str) -> str:
    """The registry URI of ``model_name``'s champion: what the API, the queue, rescoring and
    monitoring use."""
    return f"models:/{model_name}@{CHAMPION}"


CHALLENGER = "challenger"
MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>[^/]+))$")


class RegistryLookupError(LookupError):
    """A ``models:/`` URI that names no registered version (the message says which and where)."""


def tracking_uri(explicit: str | None = None) -> str:
    """``explicit`` when given, else ``MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db``."""
    return explicit or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def client(uri: str | None = None) -> MlflowClient:
    """A client of the tracking store and registry at ``uri`` (see :func:`tracking_uri`)."""
    resolved = tracking_uri(uri)
    return MlflowClient(tracking_uri=resolved, registry_uri=resolved)


def artifact_location(uri: str) -> str | None:
    """For a sqlite store, ``mlartifacts/`` beside the database file; else the server's own."""
    parsed = urlparse(uri)
    if parsed.scheme != "sqlite":
        return None
    database = uri.removeprefix("sqlite:///")
    return str((Path(database).parent / ARTIFACT_DIR).resolve())


def experiment_id(mlflow_client: MlflowClient, name: str, uri: str) -> str:
    """The experiment ``name`` (restored if deleted, created if absent)."""
    experiment = mlflow_client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            mlflow_client.restore_experiment(experiment.experiment_id)
        return str(experiment.experiment_id)
    return str(mlflow_client.create_experiment(name, artifact_location=artifact_location(uri)))


@dataclass(frozen=True)
class RegisteredVersion:
    """One registered model version, resolved from a ``models:/`` URI."""

    name: str
    version: str
    run_id: str | None
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def uri(self) -> str:
        """The URI of exactly this version (an alias can move; this cannot)."""
        return f"models:/{self.name}/{self.version}"


def existing_store(uri: str) -> str:
    """``uri`` when it names a store that exists; a sqlite store that does not is a
    :class:`RegistryLookupError` naming the file looked for. Readers never create a store
    (an MLflow client would: an empty ``mlflow.db`` wherever the server was started)."""
    if urlparse(uri).scheme == "sqlite":
        database = Path(uri.removeprefix("sqlite:///"))
        if not database.is_file():
            raise RegistryLookupError(
                f"no MLflow store at {database.resolve()} ({uri}); run `dvc repro` in the "
                "project, or set MLFLOW_TRACKING_URI"
            )
    return uri


def resolve(uri: str, tracking: str | None = None) -> RegisteredVersion:
    """``models:/name@alias`` or ``models:/name/version`` → that version (alias resolved now)."""
    match = MODELS_URI.match(uri)
    if match is None:
        raise RegistryLookupError(
            f"{uri}: expected models:/<name>@<alias> or models:/<name>/<version>"
        )
    store = existing_store(tracking_uri(tracking))
    registry = client(store)
    try:
        if match["alias"]:
            found = registry.get_model_version_by_alias(match["name"], match["alias"])
        else:
            found = registry.get_model_version(match["name"], match["version"])
    except MlflowException as error:
        raise RegistryLookupError(f"{uri}: not found in {store} ({error.message})") from None
    return RegisteredVersion(
        match["name"], str(found.version), found.run_id, dict(found.tags or {})
    )


RUNS_URI = re.compile(r"^runs:/(?P<run>[^/]+)/(?P<path>.+)$")


def local_model_path(uri: str, tracking: str | None = None) -> str:
    """A local directory holding the model at ``uri`` (``models:/…`` or ``runs:/…``): the
    artifact store's own path when it is local, else a download.

    The URI is resolved to a plain artifact location with this module's explicit client first:
    MLflow's ``models:/`` and ``runs:/`` artifact repositories look names up in the
    process-wide default store, whatever URI is passed to ``download_artifacts``."""
    store = existing_store(tracking_uri(tracking))
    if uri.startswith("models:/"):
        return version_path(resolve(uri, store), store)
    match = RUNS_URI.match(uri)
    if match is None:
        raise RegistryLookupError(f"{uri}: expected models:/… or runs:/<run_id>/<path>")
    try:
        root = client(store).get_run(match["run"]).info.artifact_uri
    except MlflowException as error:
        raise RegistryLookupError(f"{uri}: not found in {store} ({error.message})") from None
    return _download(f"{root.rstrip('/')}/{match['path']}", store)


def version_path(version: RegisteredVersion, tracking: str | None = None) -> str:
    """A local directory holding an already resolved registered version (no second lookup of
    its name or alias)."""
    store = tracking_uri(tracking)
    location = client(store).get_model_version_download_uri(version.name, version.version)
    return _download(location, store)


def _download(location: str, store: str) -> str:
    import mlflow.artifacts

    return str(mlflow.artifacts.download_artifacts(artifact_uri=location, tracking_uri=store))
