"""The reload board of several workers: generations only grow, progress counts live workers
only, and a worker's own reload and its following of another's never interleave."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from serving.coordination import WORKERS_DIR, Follower, ReloadBoard, pinned_uri


def test_generations_only_grow_and_name_one_model(tmp_path: Path) -> None:
    board = ReloadBoard(tmp_path)
    assert board.current() is None
    first = board.publish("models:/lead-scoring/3")
    second = board.publish("/srv/models/train")
    assert (first.number, second.number) == (1, 2)
    assert board.current() == second
    assert pinned_uri("registry", "lead-scoring", "7", "models:/lead-scoring@champion") == (
        "models:/lead-scoring/7"
    )
    assert pinned_uri("bundle", "model", "abc", "/srv/model") == "/srv/model"


def test_progress_counts_live_workers_and_forgets_dead_ones(tmp_path: Path) -> None:
    board = ReloadBoard(tmp_path)
    generation = board.publish("x").number
    board.acknowledge(generation, {"name": "m", "version": "1"})  # this process: alive
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_pid = int(dead.stdout)
    (tmp_path / WORKERS_DIR / f"{dead_pid}.json").write_text(
        json.dumps({"generation": 0, "model": {}, "error": None})
    )
    progress = board.progress(generation)
    assert (progress.workers, progress.serving, progress.complete) == (1, 1, True)
    assert not (tmp_path / WORKERS_DIR / f"{dead_pid}.json").exists()
    board.acknowledge(generation + 1, None, "the model could not be loaded")
    failed = board.progress(generation + 1)
    assert (failed.serving, len(failed.failed), failed.complete) == (0, 1, True)
    board.leave()
    assert board.progress(generation).workers == 0
    assert os.getpid() not in board.workers()


def test_a_slow_older_load_never_wins_over_a_newer_reload(tmp_path: Path) -> None:
    """The worker follows generation 1 (a slow load) while its own admin reload publishes
    generation 2: the reload waits for the follow to finish, so generation 2 is what the
    worker serves and reports (before the lock, the older load finished last and won)."""
    board = ReloadBoard(tmp_path)
    follower = Follower(board)
    follower.POLL_SECONDS = 0.01
    loads: list[str] = []
    served: list[str] = []

    async def load(uri: str) -> Any:
        loads.append(uri)
        await asyncio.sleep(0.3)
        served.append(uri)
        return SimpleNamespace(ref={"name": "m", "version": uri})

    async def scenario() -> None:
        board.publish("older")
        following = asyncio.ensure_future(follower.follow(load))
        await asyncio.sleep(0.1)  # the follower is inside load("older") now
        assert loads == ["older"]
        async with follower.lock:  # what reload_everywhere does
            served.append("newer")
            generation = board.publish("newer")
            follower.adopt(generation.number, {"name": "m", "version": "newer"}, None)
        await asyncio.sleep(0.2)
        following.cancel()

    asyncio.run(scenario())
    assert served == ["older", "newer"]  # the newer one was put in service last
    assert loads == ["older"]  # and not loaded again by the follower
    report = board.workers()[os.getpid()]
    assert report["generation"] == 2
    assert report["model"]["version"] == "newer"
