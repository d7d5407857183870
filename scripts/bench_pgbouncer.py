"""pgbouncer for `make bench` (imported by scripts/bench.py): the pooler the gateway is compared
with, started as a subprocess with a generated configuration.

Session pooling, md5 client authentication against a generated userlist.txt (plain-text
passwords, so pgbouncer can also answer the server's SCRAM exchange), max_client_conn 300 and
default_pool_size 20, TCP on 127.0.0.1 only. pgbouncer refuses to run as root, so when this
process is root it runs as the `postgres` system user (as pgwarden.devcluster does for the
server), from a directory that user owns.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self


def find_pgbouncer() -> str | None:
    """The pgbouncer program: on PATH or in /usr/sbin (Debian's package; not on every PATH)."""
    found = shutil.which("pgbouncer")
    if found:
        return found
    for candidate in ("/usr/sbin/pgbouncer", "/usr/local/sbin/pgbouncer"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _quote(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


class PgBouncer:
    """A pgbouncer in front of one PostgreSQL server, for the given databases."""

    def __init__(
        self,
        exe: str,
        *,
        pg_host: str,
        pg_port: int,
        databases: list[str],
        users: Mapping[str, str],
        max_client_conn: int = 300,
        default_pool_size: int = 20,
    ) -> None:
        self.exe = exe
        self.pg_host = pg_host
        self.pg_port = pg_port
        self.databases = databases
        self.users = dict(users)
        self.max_client_conn = max_client_conn
        self.default_pool_size = default_pool_size
        self.host = "127.0.0.1"
        self.port = 0
        self._dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._run_as: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            try:
                self._run_as = pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError(
                    "pgbouncer refuses to run as root and there is no 'postgres' system user"
                ) from None

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("pgbouncer is not running")
        return self._proc.pid

    @property
    def logfile(self) -> Path:
        if self._dir is None:
            raise RuntimeError("pgbouncer has not been started")
        return self._dir / "pgbouncer.log"

    def _config(self) -> str:
        assert self._dir is not None
        dbs = "".join(
            f"{db} = host={self.pg_host} port={self.pg_port} dbname={db}\n" for db in self.databases
        )
        return (
            "[databases]\n"
            f"{dbs}\n"
            "[pgbouncer]\n"
            f"listen_addr = {self.host}\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "pool_mode = session\n"
            "auth_type = md5\n"
            f"auth_file = {self._dir / 'userlist.txt'}\n"
            f"max_client_conn = {self.max_client_conn}\n"
            f"default_pool_size = {self.default_pool_size}\n"
            "ignore_startup_parameters = extra_float_digits\n"
            f"logfile = {self.logfile}\n"
            "log_connections = 0\n"
            "log_disconnections = 0\n"
        )

    def _write(self, name: str, text: str) -> Path:
        assert self._dir is not None
        path = self._dir / name
        path.write_text(text)
        path.chmod(0o600)
        if self._run_as is not None:
            os.chown(path, self._run_as.pw_uid, self._run_as.pw_gid)
        return path

    def start(self, timeout: float = 15.0) -> Self:
        # /tmp: the directory must be reachable by the postgres user
        self._dir = Path(tempfile.mkdtemp(prefix="pgwarden-bouncer-", dir="/tmp"))
        if self._run_as is not None:
            os.chown(self._dir, self._run_as.pw_uid, self._run_as.pw_gid)
        self.port = _free_port()
        self._write(
            "userlist.txt", "".join(f"{_quote(u)} {_quote(p)}\n" for u, p in self.users.items())
        )
        ini = self._write("pgbouncer.ini", self._config())
        self._write("pgbouncer.log", "")
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        kwargs: dict[str, Any] = {}
        if self._run_as is not None:
            kwargs.update(user=self._run_as.pw_uid, group=self._run_as.pw_gid, extra_groups=[])
            env.update(HOME=self._run_as.pw_dir, USER="postgres", LOGNAME="postgres")
        self._proc = subprocess.Popen(
            [self.exe, str(ini)],
            cwd=self._dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            **kwargs,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                log = self.logfile.read_text(errors="replace")
                self.stop()
                raise RuntimeError(f"pgbouncer exited at start-up:\n{log}")
            with socket.socket() as s:
                if s.connect_ex((self.host, self.port)) == 0:
                    return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"pgbouncer did not listen on {self.host}:{self.port} in {timeout}s")

    def stop(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.terminate()
                try:
                    self._proc.wait(10)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait(10)
            self._proc = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
