"""``leadscore score``'s output for a CRM import: the as_of-past-the-horizon warning, ``--keep``
columns carried through, reasons as plain text columns."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from features.errors import UserError
from models.batch import data_horizon
from pipelines import score as batch_score
from pipelines.cli import app as cli
from tests.serving.world import World

LOGGER = "pipelines.score"


@pytest.fixture(scope="module")
def leads(world: World) -> pd.DataFrame:
    """300 leads with the columns a CRM export has beside the canonical ones: text that must
    stay text (leading zeros, commas), and a nullable integer."""
    frame = world.tables["leads"].iloc[::10].reset_index(drop=True)
    n = len(frame)
    frame["name"] = [f"Lead, Number {i}" for i in range(n)]
    frame["email"] = [f"lead{i}@example.com" if i % 7 else None for i in range(n)]
    frame["owner"] = [f"{i % 13:05d}" for i in range(n)]  # 00003: a CSV reader must not make 3
    frame["deals"] = pd.array([i if i % 5 else None for i in range(n)], dtype="Int64")
    return frame


@pytest.fixture(scope="module")
def files(leads: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("crm-in")
    leads.to_csv(root / "leads.csv", index=False)
    leads.to_parquet(root / "leads.parquet")
    return {"csv": root / "leads.csv", "parquet": root / "leads.parquet"}


def _horizon(world: World) -> pd.Timestamp:
    horizon = data_horizon(world.scorer)
    assert horizon is not None
    return horizon


def _iso(when: pd.Timestamp) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING
    ]


# ------------------------------------------------------------------- horizon
def test_an_as_of_far_past_the_horizon_is_warned_once(
    world: World, files: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    horizon = _horizon(world)
    window = world.scorer.definition.window_days
    late = horizon + pd.Timedelta(days=window + 40)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        batch_score.run(
            model=str(world.bundle),
            input=files["parquet"],
            output=tmp_path / "out.parquet",
            as_of=_iso(late),
            reasons=0,
            chunk=64,  # five chunks: still one warning
        )
    [message] = _warnings(caplog)
    days = (late.floor("s") - horizon) / pd.Timedelta(days=1)
    assert f"--as-of '{_iso(late)}' is {days:,.0f} days after" in message
    assert f"data horizon {horizon.date()}" in message
    assert f"{window}-day quality-lead window" in message
    assert f"--as-of {_iso(horizon)}" in message  # how to score the data as of its own time
    assert (tmp_path / "out.parquet").exists()  # a warning, not an error


def test_the_default_now_is_named_when_it_is_past_the_horizon(
    world: World, files: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The simulated world ends years before today's clock, like an old export scored today.
    assert pd.Timestamp.now(tz="UTC") > _horizon(world) + pd.Timedelta(days=365)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        batch_score.run(
            model=str(world.bundle), input=files["csv"], output=tmp_path / "o.csv", reasons=0
        )
    [message] = _warnings(caplog)
    assert "(now, as no --as-of was given)" in message


def test_no_warning_within_the_horizon_window(
    world: World, files: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    horizon = _horizon(world)
    window = world.scorer.definition.window_days
    for when in (horizon - pd.Timedelta(days=30), horizon + pd.Timedelta(days=window - 1)):
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            batch_score.run(
                model=str(world.bundle),
                input=files["parquet"],
                output=tmp_path / "out.parquet",
                as_of=_iso(when),
                reasons=0,
            )
    assert _warnings(caplog) == []


def test_an_as_of_column_past_the_horizon_names_its_rows(
    world: World, leads: pd.DataFrame, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    horizon = _horizon(world)
    frame = leads.head(100).copy()
    frame["as_of"] = _iso(horizon)
    frame.loc[[70, 75], "as_of"] = _iso(horizon + pd.Timedelta(days=400))
    frame.to_csv(tmp_path / "leads.csv", index=False)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        batch_score.run(
            model=str(world.bundle),
            input=tmp_path / "leads.csv",
            output=tmp_path / "o.parquet",
            reasons=0,
            chunk=30,  # the late rows are in the third chunk: rows numbered in the file
        )
    [message] = _warnings(caplog)
    assert f"{tmp_path / 'leads.csv'}: column 'as_of' (e.g. rows 71, 76)" in message
    assert "is 400 days after the model's data horizon" in message


# ------------------------------------------------------------------- --keep
KEEP = ("name", "email", "owner", "deals")


@pytest.mark.parametrize(
    ("source", "suffix"),
    [("csv", "csv"), ("csv", "parquet"), ("parquet", "parquet"), ("parquet", "csv")],
)
def test_kept_columns_round_trip_through_chunks(
    world: World,
    leads: pd.DataFrame,
    files: dict[str, Path],
    tmp_path: Path,
    source: str,
    suffix: str,
) -> None:
    out = tmp_path / f"out.{suffix}"
    batch_score.run(
        model=str(world.bundle),
        input=files[source],
        output=out,
        as_of=_iso(_horizon(world)),
        reasons=0,
        chunk=70,  # chunks of uneven size, the last one short
        keep=KEEP,
    )
    if suffix == "csv":
        got = pd.read_csv(out, dtype=str, keep_default_na=False)
    else:
        got = pd.read_parquet(out)
    assert got.columns.tolist()[:6] == ["lead_id", *KEEP, "as_of"]  # next to lead_id
    assert got["lead_id"].tolist() == leads["lead_id"].tolist()
    if suffix == "csv":  # the text as in the input file: zeros kept, empty where null
        assert got["owner"].tolist() == leads["owner"].tolist()
        assert got["name"].tolist() == leads["name"].tolist()
        assert got["email"].tolist() == leads["email"].fillna("").tolist()
        assert got["deals"].tolist() == leads["deals"].astype("string").fillna("").tolist()
    elif source == "parquet":  # Parquet to Parquet: the same Arrow columns, types and values
        written = pq.read_table(out, columns=list(KEEP))
        read = pq.read_table(files["parquet"], columns=list(KEEP))
        assert written.schema.types == read.schema.types
        assert written.equals(read.replace_schema_metadata())
    else:  # CSV to Parquet: the CSV's text as strings, nulls where empty
        assert got["owner"].tolist() == leads["owner"].tolist()
        assert got["email"].isna().tolist() == leads["email"].isna().tolist()
        assert got["deals"].dropna().tolist() == leads["deals"].dropna().astype(str).tolist()


def test_keep_on_the_command_line(world: World, files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "cli.parquet"
    result = CliRunner().invoke(
        cli,
        [
            *("score", "--model", str(world.bundle), "--input", str(files["csv"])),
            *("--output", str(out), "--reasons", "0", "--as-of", _iso(_horizon(world))),
            *("--keep", "name, email", "--keep", "owner,name"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert pd.read_parquet(out).columns.tolist()[:5] == [
        "lead_id",
        "name",
        "email",
        "owner",
        "as_of",
    ]


def test_an_unknown_kept_column_is_one_line(
    world: World, files: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "out.csv"
    result = CliRunner().invoke(
        cli,
        [
            *("score", "--model", str(world.bundle), "--input", str(files["parquet"])),
            *("--output", str(out), "--keep", "name,emial"),
        ],
    )
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert f"{files['parquet']}: --keep column 'emial' is not in the file" in result.output
    assert "(columns: lead_id, created_at" in result.output
    assert "email" in result.output  # the available names show the misspelling
    assert not out.exists()


@pytest.mark.parametrize(
    ("column", "reasons"), [("score", 0), ("lead_id", 0), ("reason_2", 3), ("reasons_positive", 0)]
)
def test_a_kept_column_named_like_an_output_column_is_one_line(
    world: World, leads: pd.DataFrame, tmp_path: Path, column: str, reasons: int
) -> None:
    path = tmp_path / "leads.parquet"
    leads.head(20).assign(**{column: "x"} if column != "lead_id" else {}).to_parquet(path)
    out = tmp_path / "out.parquet"
    with pytest.raises(UserError, match=rf"--keep column '{column}' has the name of an output"):
        batch_score.run(
            model=str(world.bundle), input=path, output=out, reasons=reasons, keep=(column,)
        )
    assert not out.exists()


def test_a_reason_column_name_is_free_when_no_reasons_are_written(
    world: World, leads: pd.DataFrame, tmp_path: Path
) -> None:
    path = tmp_path / "leads.csv"
    leads.head(20).assign(reason_1="campaign note").to_csv(path, index=False)
    batch_score.run(
        model=str(world.bundle),
        input=path,
        output=tmp_path / "out.csv",
        reasons=0,
        keep=("reason_1",),
    )
    assert set(pd.read_csv(tmp_path / "out.csv")["reason_1"]) == {"campaign note"}


# ------------------------------------------------------------------- reasons
def test_csv_reason_columns_are_the_parquet_reasons_texts(
    world: World, files: dict[str, Path], tmp_path: Path
) -> None:
    """Per lead, ``reason_k`` in CSV is the text of the k-th reason of the Parquet list (the
    API's reasons), empty beyond the lead's last one; Parquet's own text columns agree."""
    count = 3
    for suffix in ("parquet", "csv"):
        batch_score.run(
            model=str(world.bundle),
            input=files["parquet"],
            output=tmp_path / f"out.{suffix}",
            as_of=_iso(_horizon(world)),
            reasons=count,
            chunk=110,
        )
    a = pd.read_parquet(tmp_path / "out.parquet")
    b = pd.read_csv(tmp_path / "out.csv", dtype=str, keep_default_na=False)
    assert "reasons_positive" not in b.columns  # no JSON in the CSV
    # the same columns in the same order in both formats, the model used among them
    lists = ("reasons_positive", "reasons_negative")
    assert b.columns.tolist() == [c for c in a.columns if c not in lists]
    assert set(a["segment"]) == {"pooled"}
    assert set(b["segment"]) == {"pooled"}
    assert b["lead_id"].tolist() == a["lead_id"].tolist()
    for side, prefix in (("reasons_positive", "reason_"), ("reasons_negative", "reason_negative_")):
        texts = [[r["text"] for r in reasons] for reasons in a[side]]
        for k in range(count):
            expected = [t[k] if k < len(t) else "" for t in texts]
            assert b[f"{prefix}{k + 1}"].tolist() == expected
            assert a[f"{prefix}{k + 1}"].fillna("").tolist() == expected
        lengths = np.array([len(t) for t in texts])
        assert lengths.max() == count
    # Both sides have leads with fewer reasons than asked for, so the empties are exercised.
    assert (a["reasons_negative"].map(len) < count).any() or (
        a["reasons_positive"].map(len) < count
    ).any()
