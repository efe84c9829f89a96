"""One model across worker processes: reloads coordinated through a directory.

With ``leadscore serve --workers N`` every worker is its own process with its own
:class:`~serving.holder.ModelHolder`; an admin reload reaches the one worker that got the
request, and SIGHUP reaches the supervisor. So a reload is published instead: a *generation*
(a number and the pinned URI of exactly one model: ``models:/<name>/<version>``, never an alias
that could move between two workers' lookups) in ``generation.json`` of the run directory
(``LEADSCORE_RUN_DIR``, a fresh temporary directory made by ``leadscore serve``). Every worker
follows it (:class:`Follower`: a few file reads a second), loads that model, and records what it
serves in ``workers/<pid>.json``; the worker that published waits until every live worker has
caught up before it answers. A worker started later (SIGHUP restart, a replacement for one that
died) loads the current generation, not the configured alias. One server process (no run
directory) needs none of this.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.packaging.loading import ModelLoadError

logger = logging.getLogger(__name__)

RUN_DIR_ENV = "LEADSCORE_RUN_DIR"
GENERATION_FILE = "generation.json"
WORKERS_DIR = "workers"


@dataclass(frozen=True)
class Generation:
    number: int
    uri: str
    """The pinned model: a version URI or a directory."""


@dataclass(frozen=True)
class Progress:
    """How far the live workers are with one generation."""

    generation: int
    workers: int
    serving: int
    failed: tuple[str, ...]

    @property
    def complete(self) -> bool:
        return self.serving + len(self.failed) >= self.workers

    def as_dict(self) -> dict[str, Any]:
        return {
            "generation": self.generation,
            "workers": self.workers,
            "serving": self.serving,
            "failed": len(self.failed),
        }


def pinned_uri(kind: str, name: str, version: str, uri: str) -> str:
    """The URI that names exactly the model loaded (an alias resolved to its version)."""
    return f"models:/{name}/{version}" if kind == "registry" else uri


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    return True


def _write_json(path: Path, payload: Mapping[str, Any]) -> None:
    """Readers never see a half-written file: a temporary sibling renamed over it."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w") as out:
            json.dump(payload, out)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


class ReloadBoard:
    """The run directory's record of the model every worker must serve."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        (directory / WORKERS_DIR).mkdir(parents=True, exist_ok=True)

    @classmethod
    def from_env(cls) -> ReloadBoard | None:
        directory = os.environ.get(RUN_DIR_ENV)
        return cls(Path(directory)) if directory else None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with (self.directory / ".lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def current(self) -> Generation | None:
        try:
            payload = json.loads((self.directory / GENERATION_FILE).read_text())
            return Generation(int(payload["number"]), str(payload["uri"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def publish(self, uri: str) -> Generation:
        """A new generation serving ``uri``; numbers only grow, whoever publishes."""
        with self._locked():
            previous = self.current()
            generation = Generation((previous.number if previous else 0) + 1, uri)
            _write_json(
                self.directory / GENERATION_FILE,
                {"number": generation.number, "uri": uri, "by": os.getpid()},
            )
        logger.info("generation %d: every worker serves %s", generation.number, uri)
        return generation

    def acknowledge(
        self, generation: int, model: Mapping[str, str] | None, error: str | None = None
    ) -> None:
        _write_json(
            self.directory / WORKERS_DIR / f"{os.getpid()}.json",
            {"generation": generation, "model": dict(model or {}), "error": error},
        )

    def leave(self) -> None:
        with contextlib.suppress(OSError):
            (self.directory / WORKERS_DIR / f"{os.getpid()}.json").unlink()

    def workers(self) -> dict[int, dict[str, Any]]:
        """What each live worker reports (files of dead workers are removed)."""
        out: dict[int, dict[str, Any]] = {}
        for path in (self.directory / WORKERS_DIR).glob("*.json"):
            try:
                pid = int(path.stem)
            except ValueError:
                continue
            if not _alive(pid):
                with contextlib.suppress(OSError):
                    path.unlink()
                continue
            try:
                out[pid] = json.loads(path.read_text())
            except (OSError, ValueError):
                continue  # being replaced right now
        return out

    def progress(self, generation: int) -> Progress:
        reports = self.workers().values()
        serving = sum(
            1 for r in reports if r.get("generation", 0) >= generation and not r.get("error")
        )
        failed = tuple(
            str(r["error"])
            for r in reports
            if r.get("generation", 0) >= generation and r.get("error")
        )
        return Progress(generation, len(reports), serving, failed)

    async def wait_for(self, generation: int, timeout: float) -> Progress:
        """Until every live worker serves ``generation`` (or failed to), or ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            progress = self.progress(generation)
            if progress.complete or time.monotonic() >= deadline:
                return progress
            await asyncio.sleep(0.05)


class Follower:
    """A worker's side of the board: loads each new generation, then says so."""

    POLL_SECONDS = 0.2

    def __init__(self, board: ReloadBoard) -> None:
        self.board = board
        self.generation = 0
        self.lock = asyncio.Lock()
        """Held from a load to its :meth:`adopt`: a reload of this worker and the following of
        another's never interleave, so the model served is always the newest generation's
        (without it, a slower load of an older generation could finish last and win)."""

    def adopt(self, generation: int, model: Mapping[str, str] | None, error: str | None) -> None:
        """This worker serves ``generation`` now (or failed to load it)."""
        self.generation = max(self.generation, generation)
        self.board.acknowledge(generation, model, error)

    async def follow(self, load: Any) -> None:
        """Forever: ``await load(uri)`` for every generation newer than the one served.
        ``load`` raises :class:`ModelLoadError` on failure (the current model stays)."""
        while True:
            await asyncio.sleep(self.POLL_SECONDS)
            if (published := self.board.current()) is None or published.number <= self.generation:
                continue
            async with self.lock:
                published = self.board.current()  # the newest, now that no load is running
                if published is None or published.number <= self.generation:
                    continue
                try:
                    model = await load(published.uri)
                except ModelLoadError as error:
                    logger.error("generation %d not loaded: %s", published.number, error)
                    self.adopt(published.number, None, "the model could not be loaded")
                    continue
                except Exception:  # the follower must outlive any one bad generation
                    logger.exception("generation %d not loaded", published.number)
                    self.adopt(published.number, None, "the model could not be loaded")
                    continue
                self.adopt(published.number, model.ref, None)
