"""LEADSCORE_STORE_URL: the default file, ``off``, any SQLAlchemy URL; bad URLs and
unreachable databases are one clear line without the password."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest

from features.errors import UserError
from models.store import (
    FeedbackRecord,
    NullStore,
    ScoreStore,
    StoreError,
    open_store,
    store_url,
)
from models.store.connection import redact
from tests.models.store.samples import T0, score
from tests.postgres import PostgresCluster, free_port

REPO = Path(__file__).resolve().parents[3]


def test_unset_or_empty_means_scores_db_in_the_project(tmp_path: Path) -> None:
    assert store_url(tmp_path, {}) == f"sqlite:///{tmp_path / 'scores.db'}"
    assert store_url(tmp_path, {"LEADSCORE_STORE_URL": "  "}) == store_url(tmp_path, {})
    store = open_store(tmp_path, environ={})
    try:
        assert isinstance(store, ScoreStore)
        assert (tmp_path / "scores.db").is_file()
        assert store.enabled
    finally:
        store.close()


@pytest.mark.parametrize("value", ["off", "OFF", " Off "])
def test_off_means_a_null_store_that_says_so(tmp_path: Path, value: str) -> None:
    assert store_url(tmp_path, {"LEADSCORE_STORE_URL": value}) is None
    store = open_store(tmp_path, environ={"LEADSCORE_STORE_URL": value})
    assert isinstance(store, NullStore)
    assert not store.enabled
    assert "off" in store.description
    assert store.record([score("L1")]) == 0
    assert store.history("L1") == []
    assert store.latest(["L1"]) == {}
    assert store.trend(["L1"], T0)["L1"].direction == "not enough history"
    assert store.scores_between(T0, T0 + dt.timedelta(days=1)).empty
    assert store.feedback().empty
    assert (
        store.add_feedback(FeedbackRecord(lead_id="L1", verdict="accepted", occurred_at=T0)) is None
    )
    store.close()
    assert not list(tmp_path.iterdir())  # nothing created


def test_a_url_is_used_as_given(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    assert store_url(tmp_path / "project", {"LEADSCORE_STORE_URL": url}) == url
    with open_store(tmp_path / "project", environ={"LEADSCORE_STORE_URL": url}) as store:
        assert isinstance(store, ScoreStore)
    assert (tmp_path / "elsewhere.db").is_file()


def test_postgresql_urls_open(postgres: PostgresCluster, tmp_path: Path) -> None:
    url = postgres.create_database()
    with open_store(tmp_path, environ={"LEADSCORE_STORE_URL": url}) as store:
        assert isinstance(store, ScoreStore)
        assert store.dialect == "postgresql"


def test_a_bare_postgresql_url_means_psycopg(postgres: PostgresCluster, tmp_path: Path) -> None:
    url = postgres.create_database().replace("postgresql+psycopg://", "postgresql://")
    with open_store(tmp_path, environ={"LEADSCORE_STORE_URL": url}) as store:
        assert isinstance(store, ScoreStore)
        assert store.url.startswith("postgresql+psycopg://")


def test_redaction_hides_passwords() -> None:
    assert redact("postgresql+psycopg://ana:s3cret@db:5432/x") == (
        "postgresql+psycopg://ana:***@db:5432/x"
    )
    assert "s3cret" not in redact("weird://ana:s3cret@db/x?y")
    assert "s3cret" not in redact("not a url ana:s3cret@host")


def _one_clear_line(error: StoreError, *, names: str, hides: str | None = None) -> None:
    message = str(error)
    assert isinstance(error, UserError)  # the CLI prints these as one line, exit 2
    assert "\n" not in message
    assert names in message
    assert "Traceback" not in message
    if hides:
        assert hides not in message


@pytest.mark.parametrize(
    ("url", "names"),
    [
        ("definitely not a url", "is not a database URL"),
        ("nosuchdb://host/x", "no driver"),
        ("sqlite://", "in-memory"),
        ("sqlite:///:memory:", "in-memory"),
    ],
)
def test_a_bad_url_is_one_clear_line(tmp_path: Path, url: str, names: str) -> None:
    with pytest.raises(StoreError) as caught:
        open_store(tmp_path, environ={"LEADSCORE_STORE_URL": url})
    _one_clear_line(caught.value, names=names)


def test_an_unreachable_postgresql_is_one_line_without_the_password(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://ana:s3cret@127.0.0.1:{free_port()}/leads"
    with pytest.raises(StoreError) as caught:
        open_store(tmp_path, environ={"LEADSCORE_STORE_URL": url})
    _one_clear_line(caught.value, names="ana:***@127.0.0.1", hides="s3cret")
    assert "cannot open it" in str(caught.value)


def test_a_sqlite_file_in_a_missing_directory_is_one_clear_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'missing' / 'scores.db'}"
    with pytest.raises(StoreError) as caught:
        open_store(tmp_path, environ={"LEADSCORE_STORE_URL": url})
    _one_clear_line(caught.value, names=str(tmp_path / "missing"))


def test_the_cli_shows_a_store_error_as_one_line(tmp_path: Path) -> None:
    """Through the CLI's own error handling (``pipelines.cli._run``), as a command opening
    the store would: one line on stderr, exit 2, no traceback."""
    program = (
        "import sys\n"
        "from pathlib import Path\n"
        "import typer\n"
        "from pipelines.cli import _run\n"
        "from models.store import open_store\n"
        "try:\n"
        "    _run(lambda: open_store(Path(sys.argv[1])))\n"
        "except typer.Exit as done:\n"
        "    sys.exit(done.exit_code)\n"
    )
    env = {"LEADSCORE_STORE_URL": f"postgresql+psycopg://u:pw@127.0.0.1:{free_port()}/x"}
    done = subprocess.run(
        [sys.executable, "-c", program, str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, **env},
        check=False,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: score store postgresql+psycopg://u:***@127.0.0.1")


def test_importing_the_package_creates_nothing(tmp_path: Path) -> None:
    program = "import models.store, sqlalchemy.pool; print('ok')"
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, cwd=tmp_path, check=False
    )
    assert done.returncode == 0, done.stderr
    assert not list(tmp_path.iterdir())
