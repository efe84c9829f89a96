"""Atomic writes: a failed stage never leaves half an output, and the last good one survives."""

from __future__ import annotations

import ctypes
import errno
import functools
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features.errors import UserError
from features.partitions import dataset_meta, is_dataset, lead_filter, read_dataset


def _umask() -> int:
    """The process's umask (reading it means setting it: set back at once; the stages that
    write outputs are single-threaded)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _publish_permissions(path: Path, directory: bool) -> None:
    """What ``open``/``mkdir`` would have given (the umask applied), not the owner-only mode
    of ``mkstemp``/``mkdtemp``: outputs are read by other service accounts (the API, a
    scheduler)."""
    mask = _umask()
    if directory:
        for root, _dirs, files in os.walk(path):
            os.chmod(root, 0o777 & ~mask)
            for name in files:
                os.chmod(os.path.join(root, name), 0o666 & ~mask)
    else:
        os.chmod(path, 0o666 & ~mask)


# ------------------------------------------------------------ atomic swaps
_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100

_LEFTOVER = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old)-(?P<pid>\d+)(?:-[^.]*)?$")
"""``.<target name>.tmp-<pid>-<random>`` (staging) and ``.<target name>.old-<pid>`` (the
previous output during the rename fallback): the pid says whether its writer is still alive."""


@functools.cache
def _renameat2() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # libc older than glibc 2.28 / musl 1.2.2
        return None
    path, fd = ctypes.c_char_p, ctypes.c_int
    function.argtypes = [fd, path, fd, path, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one step (``renameat2(RENAME_EXCHANGE)``), so ``b`` is never
    absent, not even for the microseconds between two renames. False where the platform, libc
    or filesystem cannot (the caller falls back to two renames)."""
    function = _renameat2()
    if function is None:
        return False
    if function(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def recover(target: Path | str) -> None:
    """Tidy up after a writer of ``target`` that was killed (``kill -9``, OOM, power loss):
    its staging copies are removed, and if it died between the two renames of the fallback
    swap (``target`` absent, the previous output set aside), the previous output is put back.
    Leftovers of live processes are left alone. Called before every atomic write."""
    target = Path(target)
    try:
        entries = list(target.parent.iterdir())
    except FileNotFoundError:
        return
    for entry in sorted(entries, key=lambda e: e.name):
        match = _LEFTOVER.match(entry.name)
        if match is None or match["name"] != target.name or _alive(int(match["pid"])):
            continue
        if match["kind"] == "old" and not target.exists():
            os.replace(entry, target)  # only a complete previous output is ever set aside
        else:
            _remove(entry)


def _staging_prefix(target: Path) -> str:
    return f".{target.name}.tmp-{os.getpid()}-"


# ------------------------------------------------------------ write errors
FULL_OR_READ_ONLY = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS})
"""Errors only a write can meet, whatever file they name (or none: a ``write()`` that runs out
of space names no file)."""


def _problem(error: OSError) -> str:
    words = os.strerror(error.errno) if error.errno else str(error)
    return words[:1].lower() + words[1:]


def _concerns(path: Path, target: Path) -> bool:
    """``path`` is the output, inside it, one of its staging or set-aside copies, or a folder
    on the way to it (``mkdir``)."""
    if path == target or target in path.parents or path in target.parents:
        return True
    copy = f".{target.name}."
    return any(p.parent == target.parent and p.name.startswith(copy) for p in (path, *path.parents))


class OutputWriteError(UserError):
    """An output that cannot be written, in one line; ``cause`` is the system's error."""

    def __init__(self, message: str, target: Path, cause: OSError) -> None:
        super().__init__(message)
        self.target = target
        self.cause = cause


def write_error(error: OSError, target: Path | str) -> OutputWriteError | None:
    """The one line for an output that cannot be written (full disk, read-only filesystem,
    no permission, quota), naming the output rather than its temporary copy; None for an
    error that is not about writing it (an unreadable input read inside the ``with`` block
    keeps its own error)."""
    target = Path(target)
    name = None if error.filename is None else Path(os.fsdecode(error.filename))
    ours = name is None or _concerns(name, target)
    if error.errno not in FULL_OR_READ_ONLY and (name is None or not ours):
        return None
    problem = _problem(error)
    if name is not None and not ours:  # e.g. a full disk under another path the body wrote
        return OutputWriteError(f"{name}: cannot be written, {problem}", name, error)
    if name is not None and name in target.parents:  # the folder it goes in
        return OutputWriteError(f"{target}: cannot be written, {name}: {problem}", target, error)
    return OutputWriteError(f"{target}: cannot be written, {problem}", target, error)


def _reporting_write_errors(
    writer: Callable[[Path | str], Iterator[Path]],
) -> Callable[[Path | str], Iterator[Path]]:
    """Turn the write errors of an atomic writer (its own and its ``with`` block's) into one
    :class:`OutputWriteError` line, after the writer has removed its temporary copy: the CLI prints
    it; the previous output is untouched. A file written atomically inside a staging directory
    (``write_parquet(staging / "leads.parquet")``) is named by the output it belongs to."""

    @functools.wraps(writer)
    def wrapper(target: Path | str) -> Iterator[Path]:
        try:
            yield from writer(target)
        except OutputWriteError as failure:
            if not _concerns(failure.target, Path(target)):
                raise
            raise write_error(failure.cause, target) or failure from None
        except OSError as error:
            translated = write_error(error, target)
            if translated is None:
                raise
            raise translated from None

    return wrapper


@contextmanager
@_reporting_write_errors
def atomic_directory(target: Path | str) -> Iterator[Path]:
    """Yield a fresh temporary directory beside ``target``; on success it replaces ``target``.

    If the body raises, the temporary directory is removed and ``target`` is left untouched;
    if the process is killed, the next write of ``target`` removes it (:func:`recover`). The
    swap is one atomic exchange on Linux (two renames elsewhere), so readers see the old or
    the new directory, never a mix and never nothing.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    recover(target)
    staging = Path(tempfile.mkdtemp(prefix=_staging_prefix(target), dir=target.parent))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _publish_permissions(staging, directory=True)
    if not target.exists():
        os.replace(staging, target)
    elif _exchange(staging, target):
        shutil.rmtree(staging, ignore_errors=True)  # now the previous output
    else:
        retired = target.parent / f".{target.name}.old-{os.getpid()}"
        os.replace(target, retired)
        os.replace(staging, target)
        shutil.rmtree(retired, ignore_errors=True)


@contextmanager
@_reporting_write_errors
def atomic_file(target: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it is renamed onto ``target``
    (one atomic rename: ``target`` is never absent). A killed writer's temporary is removed by
    the next write of ``target``."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    recover(target)
    handle, name = tempfile.mkstemp(prefix=_staging_prefix(target), dir=target.parent)
    os.close(handle)
    staging = Path(name)
    try:
        yield staging
    except BaseException:
        staging.unlink(missing_ok=True)
        raise
    _publish_permissions(staging, directory=False)
    os.replace(staging, target)


def json_text(payload: Any) -> str:
    """How every JSON output is written (indented, keys in their order)."""
    return json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n"


def write_json(target: Path | str, payload: Any) -> None:
    with atomic_file(target) as staging:
        staging.write_text(json_text(payload))


def write_parquet(target: Path | str, frame: pd.DataFrame | pa.Table) -> None:
    table = (
        frame if isinstance(frame, pa.Table) else pa.Table.from_pandas(frame, preserve_index=False)
    )
    with atomic_file(target) as staging:
        pq.write_table(table, staging, compression="zstd")


# ----------------------------------------------------------- validated tables
MANIFEST = "import.json"
"""A flat import's manifest, kept beside the validated tables."""


def validated_present(directory: Path | str, name: str) -> bool:
    """``name`` is among the validated tables in ``directory``: one Parquet file (the local
    engine's) or a lead-partitioned dataset (``engine.kind: dask``, :mod:`features.partitions`)."""
    directory = Path(directory)
    return (directory / f"{name}.parquet").is_file() or is_dataset(directory / name)


def read_validated(
    directory: Path | str,
    names: Iterable[str] | None = None,
    lead_ids: Sequence[str] | None = None,
    partition: int | None = None,
) -> dict[str, pd.DataFrame]:
    """The validated canonical tables present in ``directory`` (``names``: only those), each
    cut to ``lead_ids`` when given (a filtered Parquet read: only those rows are loaded, and of a
    partitioned table only their partitions' files; campaigns and accounts have no lead id and
    are read whole), or to one lead ``partition`` of partitioned tables. Either layout reads as
    the same frame. The one reader of the validate stage's output."""
    from features import contract
    from features.errors import UserError

    directory = Path(directory)
    if not validated_present(directory, "leads"):
        raise UserError(f"{directory}/leads.parquet: missing; run the validate stage first")
    wanted = list(contract.TABLES) if names is None else [n for n in contract.TABLES if n in names]
    tables = {}
    for name in wanted:
        by_lead = lead_ids is not None and "lead_id" in contract.TABLES[name].column_names
        path = directory / f"{name}.parquet"
        if is_dataset(directory / name):
            tables[name] = read_dataset(
                directory / name,
                lead_ids if by_lead else None,
                partitions=None if partition is None else [partition],
            )
        elif path.exists():
            if partition is not None and "lead_id" in contract.TABLES[name].column_names:
                raise ValueError(f"{path}: one file, not lead partitions")
            filters = lead_filter(lead_ids or ()) if by_lead else None
            tables[name] = pd.read_parquet(path, filters=filters)
    return tables


def validated_horizon(directory: Path | str, fixed: Any = None) -> pd.Timestamp:
    """:func:`contract.data_horizon` of the validated tables, reading no more than it needs:
    a partitioned table's latest time from its dataset's description, a single file's time
    column only."""
    from features import contract

    if fixed is not None:
        return contract.utc(fixed)
    directory = Path(directory)
    latest: dict[str, pd.DataFrame] = {}
    for name, spec in contract.TABLES.items():
        if spec.time_column is None:
            continue
        if is_dataset(directory / name):
            stamp = dataset_meta(directory / name)["latest"]
            values = [] if stamp is None else [pd.Timestamp(stamp)]
            latest[name] = pd.DataFrame({spec.time_column: pd.to_datetime(values, utc=True)})
        elif (directory / f"{name}.parquet").exists():
            latest[name] = pd.read_parquet(
                directory / f"{name}.parquet", columns=[spec.time_column]
            )
    return contract.data_horizon(latest)


def read_manifest(directory: Path | str) -> dict[str, Any] | None:
    """The flat import's manifest beside the validated tables (None: canonical CRM tables)."""
    path = Path(directory) / MANIFEST
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
