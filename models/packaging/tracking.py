"""Where MLflow lives and how leadscore names what is in it.

Tracking URI: ``MLFLOW_TRACKING_URI`` when set, else ``sqlite:///mlflow.db`` (embedded, relative
to the working directory: the repository root under ``dvc repro``). For a sqlite store the
experiment's artifacts go to ``mlartifacts/`` beside the database file (a local path; nothing
leaves the machine). The registry lives in the same store.

Every function takes the tracking URI explicitly and hands it to the MLflow client it makes:
nothing here changes the process-wide ``MLFLOW_TRACKING_URI`` (the API resolves models from its
reload thread while other threads score).

MLflow is imported only by the functions that need its client (importing it costs about 1 s), so
the API can start without it: :func:`locate` and :func:`run_metrics` read a sqlite store's
registry tables directly (:func:`read_sqlite_version`: one read-only SQL transaction, a few
milliseconds, the same rows MLflow's own SQL store reads) and ask MLflow's client only for other
stores or anything the tables cannot answer plainly.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import sqlite3
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

if TYPE_CHECKING:
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
    from mlflow.tracking import MlflowClient

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
    location: str | None = None
    """Where its artifacts are (the registry's download URI), when the lookup read it."""

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
    from mlflow.exceptions import MlflowException

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
    from mlflow.exceptions import MlflowException

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


# ------------------------------------------------- a sqlite store read without MLflow
DELETED_STAGE = "Deleted_Internal"
"""``current_stage`` of a version MLflow has deleted (it keeps the row; its lookups skip it)."""
LATEST = "latest"
"""The alias MLflow reserves for the highest version: left to MLflow's client."""


def sqlite_database(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` store URI (relative to the working directory
    unless absolute); None for other stores, in-memory or parameterised sqlite URIs."""
    if urlparse(uri).scheme != "sqlite" or not uri.startswith("sqlite:///") or "?" in uri:
        return None
    database = uri.removeprefix("sqlite:///")
    return Path(database) if database and database != ":memory:" else None


@contextlib.contextmanager
def _read_only(database: Path) -> Iterator[sqlite3.Connection]:
    """One read transaction on ``database``, opened read-only: it can never create or change
    the store (a missing file is an error, not an empty store)."""
    connection = sqlite3.connect(
        f"{database.resolve().as_uri()}?mode=ro", uri=True, timeout=10, isolation_level=None
    )
    try:
        connection.execute("BEGIN")
        yield connection
    finally:
        connection.close()


def _columns(connection: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in connection.execute(f"PRAGMA table_info({table})")}


def read_sqlite_version(
    store: str, name: str, alias: str | None = None, version: str | None = None
) -> RegisteredVersion | None:
    """``name``'s version ``version``, or the one ``alias`` names now, read straight from the
    registry tables of a sqlite store, without MLflow; None when this cannot answer plainly (not
    a sqlite store, no such alias or version, the reserved ``latest`` alias, a schema or a
    workspace layout it does not know, the database busy or unreadable): the caller then asks
    MLflow's client, whose answer (or error) is the reference. Deleted versions are skipped, as
    MLflow skips them."""
    database = sqlite_database(store)
    if database is None or not database.is_file() or (alias or "").lower() == LATEST:
        return None
    try:
        with _read_only(database) as connection:
            workspaces = "workspace" in _columns(connection, "model_versions")
            if alias is not None:
                joined = "AND a.workspace = v.workspace" if workspaces else ""
                rows = connection.execute(
                    "SELECT v.version, v.run_id, v.storage_location, v.source"
                    + (", v.workspace" if workspaces else ", NULL")
                    + " FROM registered_model_aliases AS a JOIN model_versions AS v"
                    f" ON v.name = a.name AND v.version = a.version {joined}"
                    " WHERE a.name = ? AND a.alias = ? AND COALESCE(v.current_stage, '') != ?",
                    (name, alias, DELETED_STAGE),
                ).fetchall()
            elif version is not None and version.isdigit():
                rows = connection.execute(
                    "SELECT v.version, v.run_id, v.storage_location, v.source"
                    + (", v.workspace" if workspaces else ", NULL")
                    + " FROM model_versions AS v"
                    " WHERE v.name = ? AND v.version = ? AND COALESCE(v.current_stage, '') != ?",
                    (name, int(version), DELETED_STAGE),
                ).fetchall()
            else:
                return None
            if len(rows) != 1:  # none, or the same name in several workspaces: MLflow decides
                return None
            number, run_id, storage, source, workspace = rows[0]
            tags = connection.execute(
                "SELECT key, value FROM model_version_tags WHERE name = ? AND version = ?"
                + (" AND workspace = ?" if workspaces else ""),
                (name, number, workspace) if workspaces else (name, number),
            ).fetchall()
    except sqlite3.Error:
        return None
    return RegisteredVersion(
        name,
        str(number),
        run_id or None,
        {str(key): str(value) for key, value in tags},
        storage or source or None,
    )


def locate(uri: str, tracking: str | None = None) -> RegisteredVersion:
    """:func:`resolve` with the artifacts' location, read without MLflow from a sqlite store
    (:func:`read_sqlite_version`, a few milliseconds), else by :func:`resolve`. The alias is
    looked up now, every call: nothing is remembered between calls."""
    match = MODELS_URI.match(uri)
    if match is None:
        raise RegistryLookupError(
            f"{uri}: expected models:/<name>@<alias> or models:/<name>/<version>"
        )
    store = existing_store(tracking_uri(tracking))
    found = read_sqlite_version(store, match["name"], match["alias"], match["version"])
    return found if found is not None else resolve(uri, store)


def local_location(location: str | None) -> Path | None:
    """``location`` as a local directory when it is one (a path or ``file:`` URI); None for
    anything MLflow has to download (``mlflow-artifacts:``, ``s3://``, ``runs:/``…)."""
    if not location:
        return None
    parsed = urlparse(location)
    if parsed.scheme == "file":
        path = Path(unquote(parsed.path))
    elif parsed.scheme == "" and location.startswith("/"):
        path = Path(location)
    else:
        return None
    return path if path.is_dir() else None


def run_metrics(run_id: str, tracking: str | None = None) -> dict[str, float]:
    """The latest value of each metric of run ``run_id`` (what MLflow's ``get_run`` gives as
    ``data.metrics``): from a sqlite store's ``latest_metrics`` table, else MLflow's client."""
    store = tracking_uri(tracking)
    database = sqlite_database(store)
    if database is not None and database.is_file():
        try:
            with _read_only(database) as connection:
                rows = connection.execute(
                    "SELECT key, value, is_nan FROM latest_metrics WHERE run_uuid = ?", (run_id,)
                ).fetchall()
            if rows:
                return {
                    str(key): math.nan if is_nan else float(value) for key, value, is_nan in rows
                }
        except sqlite3.Error:
            pass
    return dict(client(store).get_run(run_id).data.metrics)
