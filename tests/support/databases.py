"""Target databases on a DevCluster, and running psql / pgbench against any DSN."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from pgwarden.devcluster import DevCluster, find_bindir, quote_ident

__all__ = [
    "TargetDb",
    "cancel_when_active",
    "client_env",
    "create_scratch_table",
    "ensure_database",
    "ensure_role",
    "fresh_database",
    "pg_program",
    "run_pgbench",
    "run_psql",
    "table_columns",
    "wait_for_active",
]


@dataclass(frozen=True)
class TargetDb:
    """A database and role on a cluster, as a gateway target."""

    cluster: DevCluster
    dbname: str
    user: str
    password: str | None
    auth: str

    def target(self, **overrides: Any) -> dict[str, Any]:
        """A `targets:` entry for the gateway (plaintext to the database unless overridden)."""
        entry: dict[str, Any] = {
            "host": self.cluster.host,
            "port": self.cluster.port,
            "dbname": self.dbname,
            "user": self.user,
            "sslmode": "disable",
        }
        if self.password is not None:
            entry["password"] = self.password
        entry.update(overrides)
        return entry

    def dsn(self, **params: str | int | None) -> str:
        """A direct libpq connection string (bypassing the gateway)."""
        params.setdefault("sslmode", "disable")
        return self.cluster.dsn(self.dbname, self.user, password=self.password, **params)

    def url(self) -> str:
        return self.cluster.url(self.dbname, self.user, password=self.password)

    def admin_dsn(self) -> str:
        """Superuser over the Unix socket, for checking what really happened in the database."""
        return self.cluster.admin_dsn(self.dbname)

    def query(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        """Run one statement as the superuser (directly) and return its rows."""
        return self.cluster.query(sql, params, dbname=self.dbname)

    def execute(self, sql: str) -> str:
        return self.cluster.execute(sql, dbname=self.dbname)


def ensure_role(
    cluster: DevCluster, name: str, *, auth: str, password: str | None = None
) -> tuple[str, str | None]:
    """Create the role (or reuse it as it is if it already exists with this auth method).

    Returns (name, password)."""
    existing = cluster.roles.get(name)
    if existing is not None and existing.auth == auth:
        return name, existing.password
    if password is None and auth in ("scram-sha-256", "md5", "password"):
        password = f"{name}-pw-{secrets.token_hex(8)}"
    cluster.create_role(name, password, auth=auth)  # type: ignore[arg-type]
    return name, password


def ensure_database(cluster: DevCluster, name: str, owner: str) -> None:
    if name not in cluster.databases():
        cluster.create_database(name, owner=owner)


def fresh_database(like: TargetDb, name: str, schema: str) -> TargetDb:
    """Database ``name`` on ``like``'s cluster, made anew and owned by ``like``'s role, with
    ``schema`` (SQL) run in it as that role; a target reached as ``like`` is."""
    cluster = like.cluster
    if name in cluster.databases():
        cluster.execute(f"DROP DATABASE {quote_ident(name)} WITH (FORCE)")
    ensure_database(cluster, name, owner=like.user)
    target = TargetDb(cluster, name, like.user, like.password, like.auth)
    with psycopg.connect(target.dsn(), autocommit=True) as conn:
        conn.execute(schema)
    return target


def side_backends(db: TargetDb) -> int:
    """The gateway's side connections (row estimates, catalog look-ups) to ``db``'s
    database."""
    rows = db.cluster.query(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = %s AND application_name = 'pgwarden-estimator'",
        (db.dbname,),
    )
    return int(rows[0][0])


def grant_usage(cluster: DevCluster, dbname: str, roles: Sequence[str]) -> None:
    idents = ", ".join(quote_ident(r) for r in roles)
    cluster.execute(
        f"GRANT CONNECT ON DATABASE {quote_ident(dbname)} TO {idents};\n"
        f"GRANT USAGE, CREATE ON SCHEMA public TO {idents};\n",
        dbname=dbname,
    )


# ---------------------------------------------------------------------------------------------
# Client programs


def create_scratch_table(admin_dsn: str, owner: str) -> str:
    """A new empty table ``scratch_<hex> (id int)`` owned by ``owner``; its name."""
    name = f"scratch_{secrets.token_hex(4)}"
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {name} (id int)")
        conn.execute(f"ALTER TABLE {name} OWNER TO {quote_ident(owner)}")
    return name


def table_columns(admin_dsn: str, table: str) -> list[str]:
    """The table's live columns, in order."""
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
            "AND NOT attisdropped ORDER BY attnum",
            (table,),
        ).fetchall()
    return [r[0] for r in rows]


def pg_program(name: str) -> str:
    """Path of a PostgreSQL client program (psql, pgbench): the server's bindir, then PATH."""
    try:
        candidate = find_bindir() / name
        if candidate.is_file():
            return str(candidate)
    except Exception:
        pass
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} not found")
    return found


def client_env(**extra: str) -> dict[str, str]:
    """The environment for client programs: no PG* variables from outside, C messages."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(LC_ALL="C", LANG="C", PGCONNECT_TIMEOUT="10", PSQLRC="/dev/null")
    env.pop("LANGUAGE", None)
    env.update(extra)
    return env


def run_psql(
    dsn: str,
    *args: str,
    input: str | None = None,
    timeout: float = 60,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """`psql -X -d DSN ARGS...` (no psqlrc); never raises on a non-zero exit."""
    return subprocess.run(
        [pg_program("psql"), "-X", "-d", dsn, *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=client_env(**(env or {})),
        cwd=cwd,
        check=False,
    )


def run_pgbench(dsn: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`pgbench ARGS... DSN`; never raises on a non-zero exit."""
    return subprocess.run(
        [pg_program("pgbench"), *args, dsn],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=client_env(),
        check=False,
    )


def wait_for_active(cluster: DevCluster, query: str, timeout: float = 10) -> None:
    """Wait until a backend is running exactly `query` (so a cancel has something to hit)."""
    deadline = time.monotonic() + timeout
    while True:
        found = cluster.query(
            "select count(*) from pg_stat_activity where state = 'active' and query = %s",
            [query],
        )
        if found and found[0][0]:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"no backend is running {query!r}")
        time.sleep(0.02)


def cancel_when_active(cluster: DevCluster, query: str, cancel: Any) -> threading.Thread:
    """In a thread: wait until `query` runs, then call `cancel()`. Returns the started thread."""

    def run() -> None:
        wait_for_active(cluster, query)
        cancel()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread
