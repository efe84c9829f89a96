"""A real, throw-away PostgreSQL server for tests and benchmarks.

:func:`start_cluster` finds Debian's ``/usr/lib/postgresql/<version>/bin/initdb``, creates a
cluster in a fresh temporary directory and starts it on a free loopback port (TCP only, trust
authentication, no durability: fsync off, it is thrown away). PostgreSQL refuses to run as
root, so under root every server command runs as the ``postgres`` user (``runuser``) and the
directory is given to it. A missing PostgreSQL is an error, not a skip: CI always installs it
(``apt-get install postgresql``), and a skipped store test would hide a broken PostgreSQL path.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

INITDB_GLOB = "/usr/lib/postgresql/*/bin/initdb"
SERVER_USER = "postgres"
SUPERUSER = "postgres"
TIME_ZONE = "Asia/Kolkata"
"""The server's time zone: +05:30, so that a timestamp returned in the session's zone and not
converted to UTC shows up in every round-trip test."""


class PostgresMissingError(RuntimeError):
    pass


def find_bin_dir() -> Path:
    found = sorted(glob.glob(INITDB_GLOB), key=lambda p: int(Path(p).parts[-3]))
    if not found:
        raise PostgresMissingError(
            f"no PostgreSQL server: {INITDB_GLOB} matches nothing. The score store's tests run "
            "against a real PostgreSQL; install it (Debian/Ubuntu: apt-get install postgresql)"
        )
    return Path(found[-1]).parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PostgresCluster:
    bin_dir: Path
    directory: Path
    port: int
    as_user: list[str] = field(default_factory=list)
    durable: bool = False
    _databases: int = 0

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    def _run(self, *args: str) -> None:
        done = subprocess.run([*self.as_user, *args], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def dsn(self, database: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user={SUPERUSER} dbname={database}"

    def start(self) -> None:
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.directory} "
            f"-c timezone={TIME_ZONE} -c max_connections=100"
        )
        if not self.durable:  # tests throw the cluster away: no need to survive a power cut
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self._run(
            str(self.bin_dir / "pg_ctl"),
            "start",
            "-w",
            "-t",
            "60",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.directory / "server.log"),
            "-o",
            options,
        )

    def stop(self) -> None:
        self._run(
            str(self.bin_dir / "pg_ctl"), "stop", "-w", "-m", "fast", "-D", str(self.data_dir)
        )

    def running(self) -> bool:
        try:
            with psycopg.connect(self.dsn(), connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def create_database(self, prefix: str = "test") -> str:
        """A new empty database; its SQLAlchemy URL."""
        self._databases += 1
        name = f"{prefix}_{os.getpid()}_{self._databases}"
        with psycopg.connect(self.dsn(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def destroy(self) -> None:
        try:
            if self.running():
                self.stop()
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)


def start_cluster(durable: bool = False) -> PostgresCluster:
    """A started cluster in a new temporary directory (:meth:`PostgresCluster.destroy` it);
    ``durable`` keeps PostgreSQL's fsync on (benchmarks), tests turn it off."""
    bin_dir = find_bin_dir()
    # not under pytest's tmp_path: /tmp/pytest-of-root is root's only, the server user could
    # not reach its data directory there
    directory = Path(tempfile.mkdtemp(prefix="leadscore-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam(SERVER_USER)
        except KeyError:
            raise PostgresMissingError(
                f"running as root and there is no {SERVER_USER!r} user to run PostgreSQL as"
            ) from None
        os.chown(directory, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", SERVER_USER, "--"]
    cluster = PostgresCluster(bin_dir, directory, free_port(), as_user, durable)
    try:
        cluster._run(
            str(bin_dir / "initdb"),
            "-D",
            str(cluster.data_dir),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
        )
        for attempt in range(3):
            try:
                cluster.start()
                break
            except RuntimeError:
                if attempt == 2:
                    raise
                cluster.port = free_port()  # the port was taken between probe and start
                time.sleep(0.2)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    return cluster
