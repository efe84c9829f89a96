"""``leadscore score``: chunked batch scoring with the API's answers."""

from __future__ import annotations

import weakref
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import models.batch
from features.errors import UserError
from pipelines import score as batch_score
from pipelines.cli import app as cli
from serving.holder import load_model
from serving.model_input import answers
from tests.serving.world import World, request_for

AS_OF = "2025-04-01T00:00:00+00:00"


@pytest.fixture(scope="module")
def inputs(world: World, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("batch-in")
    tables = world.tables
    leads = tables["leads"].iloc[::5].reset_index(drop=True)  # 600 leads
    ids = set(leads["lead_id"])
    leads.to_csv(root / "leads.csv", index=False)
    leads.to_parquet(root / "leads.parquet")
    touches = tables["touches"][tables["touches"]["lead_id"].isin(ids)]
    touches.to_csv(root / "touches.csv", index=False)
    sales = tables["sales_events"][tables["sales_events"]["lead_id"].isin(ids)]
    sales.to_parquet(root / "sales_events.parquet")
    return {
        "csv": root / "leads.csv",
        "parquet": root / "leads.parquet",
        "touches": root / "touches.csv",
        "sales": root / "sales_events.parquet",
    }


def _run(world: World, inputs: dict[str, Path], source: str, out: Path, **kw: object) -> None:
    batch_score.run(
        model=str(world.bundle),
        input=inputs[source],
        output=out,
        touches=inputs["touches"],
        sales_events=inputs["sales"],
        as_of=AS_OF,
        **kw,  # type: ignore[arg-type]
    )


def test_parquet_answers_equal_the_api(
    world: World, inputs: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "scores.parquet"
    _run(world, inputs, "parquet", out, chunk=128)
    scores = pd.read_parquet(out)
    leads = pd.read_parquet(inputs["parquet"])
    assert scores["lead_id"].tolist() == leads["lead_id"].tolist()
    loaded = load_model(str(world.bundle))
    for lead_id in scores["lead_id"].iloc[::37]:
        body = request_for(world.tables, lead_id, pd.Timestamp(AS_OF))
        prepared = loaded.inputs.prepare(
            body["lead"], body["touches"], body["sales_events"], pd.Timestamp(AS_OF)
        )
        api = answers(loaded.scorer, [prepared], loaded.ref)[0]
        row = scores[scores["lead_id"] == lead_id].iloc[0]
        assert row["as_of"] == pd.Timestamp(AS_OF)
        for key in ("p_accepted", "p_converted", "score", "grade", "handoff"):
            assert row[key] == api[key], (lead_id, key)
        assert list(row["reasons_positive"]) == api["reasons_positive"]
        assert list(row["reasons_negative"]) == api["reasons_negative"]


def test_csv_in_csv_out_matches_parquet(
    world: World, inputs: dict[str, Path], tmp_path: Path
) -> None:
    _run(world, inputs, "parquet", tmp_path / "a.parquet", reasons=0, chunk=1000)
    _run(world, inputs, "csv", tmp_path / "b.csv", reasons=2, chunk=77)
    a = pd.read_parquet(tmp_path / "a.parquet")
    b = pd.read_csv(tmp_path / "b.csv")
    assert (a["p_converted"].to_numpy() == b["p_converted"].to_numpy()).all()  # repr round-trip
    assert (a["grade"] == b["grade"]).all()
    # Reasons in CSV are plain text columns, as many each way as --reasons asks for.
    reason_columns = [c for c in b.columns if c.startswith("reason")]
    assert reason_columns == ["reason_1", "reason_2", "reason_negative_1", "reason_negative_2"]
    assert b["reason_1"].notna().any()
    assert a["reasons_positive"].map(len).eq(0).all()
    assert not [c for c in a.columns if c.startswith("reason_")]  # --reasons 0: no text columns


def test_per_row_as_of(world: World, inputs: dict[str, Path], tmp_path: Path) -> None:
    leads = pd.read_parquet(inputs["parquet"]).head(50)
    leads["as_of"] = pd.to_datetime(leads["created_at"], utc=True) + pd.Timedelta(days=10)
    leads.to_parquet(tmp_path / "leads.parquet")
    out = tmp_path / "out.parquet"
    batch_score.run(model=str(world.bundle), input=tmp_path / "leads.parquet", output=out)
    scores = pd.read_parquet(out)
    assert (scores["as_of"] == leads["as_of"]).all()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda f: f.drop(columns=["created_at"]), "column 'created_at' is missing"),
        (lambda f: f.assign(created_at="not a time"), "column 'created_at' is mistyped"),
        (
            lambda f: f.assign(created_at=["not a time"] * 5 + list(f["created_at"][5:])),
            r"5 of 600 rows: unparseable timestamp in created_at \(e\.g\. rows 1, 2, 3, 4, 5\)",
        ),
        (
            lambda f: f.assign(created_at=["9999-01-01T00:00:00Z", *list(f["created_at"][1:])]),
            "1 of 600 rows: future timestamp in created_at",
        ),
        (lambda f: pd.concat([f, f.head(3)]), "6 of 603 rows: duplicate id"),
        # Far past: the validator's rule (the contract's range starts in 1970; pandas'
        # nanoseconds end in 1677, so such a time would crash the feature engine)
        (
            lambda f: f.assign(created_at=["1600-01-01T00:00:00Z", *list(f["created_at"][1:])]),
            r"1 of 600 rows: timestamp before 1970-01-01 in created_at \(e\.g\. rows 1\)",
        ),
        (
            lambda f: f.assign(created_at=["0001-01-01", "1969-12-31", *list(f["created_at"][2:])]),
            r"2 of 600 rows: timestamp before 1970-01-01 in created_at .*\(e\.g\. rows 1, 2\)",
        ),
        (
            lambda f: f.assign(as_of=["9999-01-01T00:00:00Z"] * 2 + [None] * (len(f) - 2)),
            r"2 of 600 rows: timestamp out of range in as_of .*\(e\.g\. rows 1, 2\)",
        ),
        (
            lambda f: f.assign(as_of="1500-06-01"),
            r"600 of 600 rows: timestamp out of range in as_of",
        ),
    ],
)
def test_bad_input_is_one_clear_line(
    world: World, inputs: dict[str, Path], tmp_path: Path, mutate: object, message: str
) -> None:
    leads = mutate(pd.read_csv(inputs["csv"], dtype=str))  # type: ignore[operator]
    path = tmp_path / "leads.csv"
    leads.to_csv(path, index=False)
    out = tmp_path / "out.csv"
    with pytest.raises(UserError, match=message) as error:
        batch_score.run(model=str(world.bundle), input=path, output=out)
    assert str(path) in str(error.value)
    assert not out.exists()  # nothing half-written


@pytest.mark.parametrize("as_of", ["9999-01-01T00:00:00Z", "1600-01-01", "1969-12-31T23:59:59Z"])
def test_an_as_of_out_of_range_is_one_line(
    world: World, inputs: dict[str, Path], tmp_path: Path, as_of: str
) -> None:
    out = tmp_path / "out.parquet"
    with pytest.raises(UserError, match=rf"--as-of '{as_of}': timestamp out of range"):
        batch_score.run(model=str(world.bundle), input=inputs["parquet"], output=out, as_of=as_of)
    assert not out.exists()


def test_the_range_ends_where_the_apis_does(
    world: World, inputs: dict[str, Path], tmp_path: Path
) -> None:
    """The last scorable instants of the range score; one microsecond later does not."""
    leads = pd.read_parquet(inputs["parquet"]).head(3)
    leads["as_of"] = ["2199-12-31T23:59:59.999999Z", "1970-01-01T00:00:00Z", None]
    leads["created_at"] = pd.Timestamp("1970-01-01", tz="UTC")
    path = tmp_path / "edges.parquet"
    leads.to_parquet(path)
    batch_score.run(model=str(world.bundle), input=path, output=tmp_path / "ok.parquet")
    assert len(pd.read_parquet(tmp_path / "ok.parquet")) == 3
    leads["as_of"] = ["2200-01-01T00:00:00Z", None, None]
    leads.to_parquet(path)
    with pytest.raises(UserError, match="1 of 3 rows: timestamp out of range in as_of"):
        batch_score.run(model=str(world.bundle), input=path, output=tmp_path / "no.parquet")


def test_far_past_events_are_one_line(
    world: World, inputs: dict[str, Path], tmp_path: Path
) -> None:
    touches = pd.read_csv(inputs["touches"], dtype=str)
    touches.loc[touches.index[:3], "occurred_at"] = "1600-01-01T00:00:00Z"
    touches.to_csv(tmp_path / "touches.csv", index=False)
    first = touches["lead_id"].iloc[0]
    with pytest.raises(
        UserError,
        match=rf"3 of .* rows: timestamp before 1970-01-01 in occurred_at .*lead_id {first}",
    ) as error:
        batch_score.run(
            model=str(world.bundle),
            input=inputs["parquet"],
            output=tmp_path / "o.parquet",
            touches=tmp_path / "touches.csv",
            as_of=AS_OF,
        )
    assert str(tmp_path / "touches.csv") in str(error.value)


def test_bad_event_rows(world: World, inputs: dict[str, Path], tmp_path: Path) -> None:
    sales = pd.read_parquet(inputs["sales"])
    sales.loc[sales.index[:4], "stage"] = "maybe"
    sales.to_parquet(tmp_path / "sales.parquet")
    with pytest.raises(UserError, match=r"4 of .* rows: unknown stage \(e.g. lead_id"):
        batch_score.run(
            model=str(world.bundle),
            input=inputs["parquet"],
            output=tmp_path / "o.parquet",
            sales_events=tmp_path / "sales.parquet",
        )


def test_cli(world: World, inputs: dict[str, Path], tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "cli.parquet"
    result = runner.invoke(
        cli,
        [
            "score",
            "--model",
            str(world.bundle),
            "--input",
            str(inputs["parquet"]),
            "--touches",
            str(inputs["touches"]),
            "--output",
            str(out),
            "--reasons",
            "0",
        ],
    )
    assert result.exit_code == 0, result.output
    assert len(pd.read_parquet(out)) == 600
    bad = runner.invoke(
        cli, ["score", "--model", str(tmp_path), "--input", str(inputs["csv"]), "--output", "x.txt"]
    )
    assert bad.exit_code == 2
    assert "must be .csv or .parquet" in bad.output


def _write(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


@pytest.mark.parametrize(
    ("name", "make", "message"),
    [
        ("empty.csv", lambda p, leads: _write(p, b""), "empty file"),
        ("header.csv", lambda p, leads: _write(p, b"lead_id,created_at\n"), "header only"),
        (
            "header.parquet",
            lambda p, leads: leads.head(0).to_parquet(p),
            "header only",
        ),
        (
            "truncated.parquet",
            lambda p, leads: _write(p, (leads.to_parquet() or b"")[:2000]),
            "not a readable Parquet file",
        ),
        ("binary.csv", lambda p, leads: _write(p, b"PK\x03\x04\x00\x00binary"), "not CSV text"),
    ],
)
def test_unreadable_inputs_are_one_line(
    world: World, inputs: dict[str, Path], tmp_path: Path, name: str, make: Any, message: str
) -> None:
    leads = pd.read_parquet(inputs["parquet"])
    path = tmp_path / name
    make(path, leads)
    out = tmp_path / "out.parquet"
    with pytest.raises(UserError, match=message) as error:
        batch_score.run(model=str(world.bundle), input=path, output=out)
    assert str(path) in str(error.value)
    assert not out.exists()


def test_a_semicolon_export_is_read_like_validate_reads_it(
    world: World, inputs: dict[str, Path], tmp_path: Path
) -> None:
    leads = pd.read_csv(inputs["csv"], dtype=str)
    path = tmp_path / "leads-semicolon.csv"
    leads.to_csv(path, sep=";", index=False, encoding="cp1252")
    batch_score.run(model=str(world.bundle), input=path, output=tmp_path / "a.parquet", as_of=AS_OF)
    batch_score.run(
        model=str(world.bundle), input=inputs["csv"], output=tmp_path / "b.parquet", as_of=AS_OF
    )
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "a.parquet"), pd.read_parquet(tmp_path / "b.parquet")
    )


def test_duplicate_ids_across_chunks_are_refused(
    world: World, inputs: dict[str, Path], tmp_path: Path
) -> None:
    leads = pd.read_parquet(inputs["parquet"])
    path = tmp_path / "twice.parquet"
    pd.concat([leads, leads.head(5)], ignore_index=True).to_parquet(path)
    out = tmp_path / "out.parquet"
    with pytest.raises(UserError, match=r"ids of rows 501–605 appeared in earlier rows"):
        batch_score.run(model=str(world.bundle), input=path, output=out, chunk=500)
    assert not out.exists()


def _collide(ids: pd.Series) -> np.ndarray:
    """Every lead id the same hash: each id is a hash hit that only the exact check settles."""
    return np.zeros(len(ids), dtype=np.uint64)


@pytest.mark.parametrize("collide", [False, True], ids=["hashes", "colliding-hashes"])
@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_a_duplicate_across_chunks_is_one_exact_line(
    world: World,
    inputs: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    suffix: str,
    collide: bool,
) -> None:
    """The same line as when every earlier id was kept (a set of str): the count, the rows of
    the chunk, the first repeated id and its row, whether or not ids share a hash."""
    if collide:
        monkeypatch.setattr(models.batch, "id_hashes", _collide)
    leads = pd.read_parquet(inputs["parquet"])  # 600 leads
    fresh = leads.iloc[[0]].assign(lead_id="L-new-one")
    twice = pd.concat([leads, fresh, leads.iloc[[3, 10]]], ignore_index=True)  # 603 rows
    path = tmp_path / f"twice{suffix}"
    twice.to_parquet(path) if suffix == ".parquet" else twice.to_csv(path, index=False)
    out = tmp_path / "out.parquet"
    with pytest.raises(UserError) as raised:
        batch_score.run(model=str(world.bundle), input=path, output=out, chunk=500, reasons=0)
    first = leads["lead_id"].iloc[3]
    assert str(raised.value) == (
        f"{path}: column 'lead_id': 2 ids of rows 501–603 appeared in earlier rows "
        f"(e.g. {first!r} in row 602): duplicate id"
    )
    assert not out.exists()


def test_ids_sharing_a_hash_are_scored(
    world: World, inputs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _run(world, inputs, "csv", tmp_path / "a.parquet", reasons=1, chunk=128)
    monkeypatch.setattr(models.batch, "id_hashes", _collide)
    _run(world, inputs, "csv", tmp_path / "b.parquet", reasons=1, chunk=128)
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "a.parquet"), pd.read_parquet(tmp_path / "b.parquet")
    )


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_many_chunks_write_what_one_chunk_writes(
    world: World, inputs: dict[str, Path], tmp_path: Path, suffix: str
) -> None:
    """Every row and value, reasons included, whatever the chunking (600 leads: one chunk,
    or seven of 97 and a last of 18)."""
    whole, parts = tmp_path / f"whole{suffix}", tmp_path / f"parts{suffix}"
    _run(world, inputs, "parquet", whole, reasons=2, chunk=10_000)
    _run(world, inputs, "parquet", parts, reasons=2, chunk=97)
    if suffix == ".csv":
        assert parts.read_bytes() == whole.read_bytes()
        return
    one, many = pd.read_parquet(whole), pd.read_parquet(parts)
    assert len(one) == 600
    pd.testing.assert_frame_equal(one, many)


def test_no_chunk_outlives_its_turn(
    world: World, inputs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When a chunk's leads are checked, the earlier chunks' checked frames (leads and events)
    are gone, but for the last one checked (Great Expectations' current context holds it until
    the next check replaces it). Each check leaves its frames in reference cycles, collected
    after every ``COLLECT_EVERY`` leads; left to CPython's collector they piled up, peak memory
    growing about 1 KB a lead."""
    checked: list[weakref.ref[pd.DataFrame]] = []
    alive: list[list[int]] = []  # per chunk: the earlier frames alive, 1 = the last checked
    real = models.batch.check_table

    def tracked(table: Any, frame: pd.DataFrame, *args: Any, **kwargs: Any) -> pd.DataFrame:
        if table.name == "leads":
            alive.append([len(checked) - i for i, ref in enumerate(checked) if ref() is not None])
        typed = real(table, frame, *args, **kwargs)
        checked.append(weakref.ref(typed))
        return typed

    monkeypatch.setattr(models.batch, "check_table", tracked)
    monkeypatch.setattr(batch_score, "COLLECT_EVERY", 128)  # every chunk, as at the default
    _run(world, inputs, "parquet", tmp_path / "out.parquet", reasons=0, chunk=128)
    assert len(checked) == 5 * 3  # five chunks of leads, touches, sales events
    assert len(alive) == 5
    assert all(set(earlier) <= {1} for earlier in alive), alive


def test_an_unwritable_output_is_one_line(
    world: World, inputs: dict[str, Path], tmp_path: Path
) -> None:
    import os

    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):  # root ignores permissions: use a path that cannot exist
            target = Path("/proc/leadscore-cannot-write/out.parquet")
        else:
            target = locked / "out.parquet"
        with pytest.raises(UserError, match="cannot be written"):
            batch_score.run(model=str(world.bundle), input=inputs["parquet"], output=target)
    finally:
        locked.chmod(0o700)
    assert not list(locked.iterdir())


def test_sigterm_leaves_no_temporary_file(world: World, tmp_path: Path) -> None:
    """SIGTERM while `leadscore score` writes: exit 143, no output, no temporary file."""
    import signal
    import subprocess
    import sys
    import time

    leads = world.tables["leads"]
    big = pd.concat(
        [leads.assign(lead_id=leads["lead_id"] + f"-{i}") for i in range(40)], ignore_index=True
    )
    source = tmp_path / "big.parquet"
    big.to_parquet(source)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    command = [
        str(Path(sys.executable).with_name("leadscore")),
        *("score", "--model", str(world.bundle), "--input", str(source)),
        *("--output", str(out_dir / "scores.parquet"), "--chunk", "2000"),
    ]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not any(out_dir.iterdir()) and time.monotonic() < deadline:  # the temporary file
        time.sleep(0.05)
    assert any(out_dir.iterdir()), "the run never started writing"
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, stderr[-2000:]
    assert "Traceback" not in stderr
    assert list(out_dir.iterdir()) == []
