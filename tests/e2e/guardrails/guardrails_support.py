"""Support for the end-to-end guardrail tests: a demo-shop database behind a gateway running the
built-in default policy, a fingerprint of everything a statement could damage, and one runner
per client protocol.

The tests judge the gateway by what happens to the data, not by error text:

- ``GuardEnv.fingerprint()`` is row counts and an md5 of the ordered contents of every table,
  sequence states, and the catalog objects a statement could create, change or drop (tables,
  columns and defaults, constraints, functions, triggers, rules, policies, schemas, extensions,
  large objects, grants, roles, databases, ALTER SYSTEM settings).
- ``GuardEnv.ensure_pristine()`` puts the database back as loaded when an earlier statement
  (legitimately, or through a hole) changed it: the data is restored in place (the gateway's
  connections, the estimator's side connection included, survive); a changed schema makes it
  rebuild the database.
- A runner sends SQL through one client/protocol and returns an ``Outcome`` (did the client get
  an error, which SQLSTATE, which message). ``Outcome.refused`` says the error is the gateway's
  own refusal (SQLSTATE 42501/42601, message beginning ``pgwarden:``, see CONTRACT.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import psycopg
import yaml
from pglast.parser import parse_sql_json, split

from pgwarden.demo import load_shop
from pgwarden.devcluster import DevCluster
from tests.support.databases import TargetDb
from tests.support.databases import run_psql as psql_program
from tests.support.gateway import RunningGateway, gateway_config

# ---------------------------------------------------------------------------------------------
# The corpus

CORPUS_PATH = Path(__file__).resolve().parents[2] / "data" / "corpus" / "statements.yaml"
SUBJECT = "agent-7"
GROUPS = ("agents",)
TARGET = "shop"
DBNAME = "guardrails_shop"
OWNER = "guardrails_app"
TABLES = ("customers", "products", "orders")

# Statement node types PREPARE accepts (SELECT also covers VALUES and TABLE).
_PREPARABLE = {"SelectStmt", "InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt"}


@dataclass(frozen=True)
class Entry:
    """One corpus entry, with what the runners need to know about its SQL."""

    index: int
    sql: str
    expect: str
    note: str
    check: dict[str, str] | None
    requires: str | None
    tier: str | None
    min_server_version: int | None
    estimate: dict[str, float] | None  # blast-radius entries: the unit tests' row estimate
    statements: tuple[str, ...]  # the statements of the query string (the text if unparseable)
    parses: bool
    preparable: bool  # one statement that PREPARE accepts
    is_copy: bool  # one COPY statement (psycopg and asyncpg need their COPY API)

    @property
    def id(self) -> str:
        slug = re.sub(r"[^A-Za-z0-9]+", "_", self.sql).strip("_")[:48]
        return f"{self.index:03d}-{slug}"

    @property
    def single(self) -> bool:
        return len(self.statements) == 1

    @property
    def destructive(self) -> bool:
        return self.expect != "allow"

    def describe(self) -> str:
        return f"corpus #{self.index} expect={self.expect} ({self.note}): {self.sql!r}"


def _analyse(sql: str) -> tuple[tuple[str, ...], bool, bool, bool]:
    try:
        tree = json.loads(parse_sql_json(sql))
        statements = tuple(s.strip() for s in split(sql, with_parser=True) if s.strip())
    except Exception:
        return (sql,), False, False, sql.lstrip().upper().startswith("COPY")
    stmts = tree.get("stmts", [])
    preparable = False
    is_copy = False
    if len(stmts) == 1:
        node = stmts[0].get("stmt", {})
        (tag,) = node.keys() if len(node) == 1 else ("",)
        body = node.get(tag, {}) if tag else {}
        preparable = tag in _PREPARABLE and not (tag == "SelectStmt" and body.get("intoClause"))
        is_copy = tag == "CopyStmt"
    return statements or (sql,), True, preparable, is_copy


def load_corpus() -> list[Entry]:
    with CORPUS_PATH.open(encoding="utf-8") as f:
        raw: list[dict[str, Any]] = yaml.safe_load(f)
    out = []
    for i, e in enumerate(raw):
        statements, parses, preparable, is_copy = _analyse(e["sql"])
        out.append(
            Entry(
                index=i,
                sql=e["sql"],
                expect=e["expect"],
                note=e.get("note", ""),
                check=e.get("check"),
                requires=e.get("requires"),
                tier=e.get("tier"),
                min_server_version=e.get("min_server_version"),
                estimate=e.get("estimate"),
                statements=statements,
                parses=parses,
                preparable=preparable,
                is_copy=is_copy,
            )
        )
    return out


CORPUS = load_corpus()


# ---------------------------------------------------------------------------------------------
# Outcomes


@dataclass(frozen=True)
class Outcome:
    """What the client saw: success, or the first error (SQLSTATE and message)."""

    ok: bool
    sqlstate: str | None = None
    message: str = ""
    detail: str = ""

    @property
    def refused(self) -> bool:
        """The error is the gateway's refusal (CONTRACT.md: Outcomes)."""
        return (
            not self.ok
            and self.sqlstate in ("42501", "42601")
            and self.message.startswith("pgwarden:")
        )

    def __str__(self) -> str:
        if self.ok:
            return f"succeeded {self.detail}".strip()
        return f"error {self.sqlstate}: {self.message} {self.detail}".strip()


def _from_exception(exc: BaseException, detail: str = "") -> Outcome:
    sqlstate = getattr(exc, "sqlstate", None)
    diag = getattr(exc, "diag", None)
    message = ""
    if diag is not None and getattr(diag, "message_primary", None):
        message = diag.message_primary or ""
    if not message:
        message = getattr(exc, "message", None) or str(exc)
    return Outcome(False, sqlstate, str(message).strip(), detail or type(exc).__name__)


_PSQL_ERROR = re.compile(r"^(?:psql:[^\n]*?)?(?:ERROR|FATAL):\s+([0-9A-Z]{5}):\s+(.*)$", re.M)


def _from_psql(proc: Any) -> Outcome:
    if proc.returncode == 0:
        return Outcome(True, detail=proc.stdout[-200:])
    m = _PSQL_ERROR.search(proc.stderr)
    if m is None:
        return Outcome(False, None, proc.stderr.strip()[-500:], f"psql exit {proc.returncode}")
    return Outcome(False, m.group(1), m.group(2).strip(), f"psql exit {proc.returncode}")


# ---------------------------------------------------------------------------------------------
# The environment


_NOT_SYSTEM = (
    "n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') "
    "AND n.nspname !~ '^pg_(temp|toast_temp)_'"
)

CATALOG_QUERIES: dict[str, str] = {
    "schemas": f"SELECT n.nspname, n.nspowner::regrole::text, coalesce(n.nspacl::text, '') "
    f"FROM pg_namespace n WHERE {_NOT_SYSTEM} ORDER BY 1",
    "relations": "SELECT n.nspname, c.relname, c.relkind, c.relpersistence, "
    "c.relowner::regrole::text, coalesce(c.relacl::text, ''), c.relrowsecurity, "
    "c.relforcerowsecurity, coalesce(array_to_string(c.reloptions, ','), '') "
    f"FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {_NOT_SYSTEM} "
    "ORDER BY 1, 2",
    "columns": "SELECT n.nspname, c.relname, a.attnum, a.attname, "
    "format_type(a.atttypid, a.atttypmod), a.attnotnull, a.attidentity, "
    "coalesce(pg_get_expr(d.adbin, d.adrelid), ''), coalesce(a.attacl::text, '') "
    "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
    "JOIN pg_namespace n ON n.oid = c.relnamespace "
    "LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
    f"WHERE a.attnum > 0 AND NOT a.attisdropped AND {_NOT_SYSTEM} ORDER BY 1, 2, 3",
    "constraints": "SELECT n.nspname, conrelid::regclass::text, conname, "
    "pg_get_constraintdef(co.oid) FROM pg_constraint co "
    f"JOIN pg_namespace n ON n.oid = co.connamespace WHERE {_NOT_SYSTEM} ORDER BY 1, 2, 3",
    "indexes": "SELECT schemaname, tablename, indexname, indexdef FROM pg_indexes "
    "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') "
    "AND schemaname !~ '^pg_(temp|toast_temp)_' ORDER BY 1, 2, 3",
    "functions": "SELECT p.oid::regprocedure::text, md5(coalesce(p.prosrc, '')), p.prosecdef, "
    "p.provolatile, coalesce(p.proacl::text, '') FROM pg_proc p "
    f"JOIN pg_namespace n ON n.oid = p.pronamespace WHERE {_NOT_SYSTEM} ORDER BY 1",
    "triggers": "SELECT tgrelid::regclass::text, tgname, tgenabled FROM pg_trigger "
    "WHERE NOT tgisinternal ORDER BY 1, 2",
    "event_triggers": "SELECT evtname, evtevent, evtenabled FROM pg_event_trigger ORDER BY 1",
    "rules": "SELECT schemaname, tablename, rulename, md5(definition) FROM pg_rules "
    "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') "
    "AND schemaname !~ '^pg_(temp|toast_temp)_' ORDER BY 1, 2, 3",
    "policies": "SELECT schemaname, tablename, policyname, cmd, coalesce(qual, '') "
    "FROM pg_policies ORDER BY 1, 2, 3",
    "types": "SELECT n.nspname, t.typname, t.typtype FROM pg_type t "
    f"JOIN pg_namespace n ON n.oid = t.typnamespace WHERE {_NOT_SYSTEM} "
    "AND t.typtype IN ('d', 'e', 'r', 'm', 'b') ORDER BY 1, 2",
    "extensions": "SELECT extname, extversion FROM pg_extension ORDER BY 1",
    "large_objects": "SELECT oid::text, lomowner::regrole::text FROM pg_largeobject_metadata "
    "ORDER BY 1",
    "default_acls": "SELECT defaclrole::regrole::text, defaclobjtype, "
    "coalesce(defaclacl::text, '') FROM pg_default_acl ORDER BY 1, 2",
    "publications": "SELECT pubname FROM pg_publication ORDER BY 1",
    "database": "SELECT datname, datdba::regrole::text, coalesce(datacl::text, ''), "
    "datallowconn, datconnlimit FROM pg_database WHERE datname = current_database()",
}

CLUSTER_QUERIES: dict[str, str] = {
    "roles": "SELECT rolname, rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin, "
    "rolreplication, rolbypassrls, rolconnlimit, coalesce(rolvaliduntil::text, '') "
    "FROM pg_roles ORDER BY 1",
    "memberships": "SELECT roleid::regrole::text, member::regrole::text, admin_option "
    "FROM pg_auth_members ORDER BY 1, 2",
    "role_settings": "SELECT setdatabase, setrole, array_to_string(setconfig, ',') "
    "FROM pg_db_role_setting ORDER BY 1, 2",
    "databases": "SELECT datname FROM pg_database ORDER BY 1",
    "alter_system": "SELECT name, coalesce(setting, '') FROM pg_file_settings "
    "WHERE sourcefile LIKE '%postgresql.auto.conf' ORDER BY 1",
    "tablespaces": "SELECT spcname FROM pg_tablespace ORDER BY 1",
}


_RELATIONS = (
    "SELECT format('%I.%I', n.nspname, c.relname), c.relkind FROM pg_class c "
    f"JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {_NOT_SYSTEM} "
    "AND c.relkind IN ('r', 'p', 'm', 'S') ORDER BY 1"
)


def _lit(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _same_database(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return all(a[k] == b[k] for k in ("data", "sequences", "catalog"))


def without_sequences(fp: dict[str, Any]) -> dict[str, Any]:
    """The fingerprint without sequence states (see ``GuardEnv.fingerprint``)."""
    return {k: v for k, v in fp.items() if k != "sequences"}


def describe_difference(before: dict[str, Any], after: dict[str, Any]) -> str:
    """Which parts of two fingerprints differ (for assertion messages)."""
    lines = []
    for part in sorted(set(before) | set(after)):
        b, a = before.get(part), after.get(part)
        if isinstance(b, dict) and isinstance(a, dict):
            for key in sorted(set(b) | set(a)):
                if b.get(key) != a.get(key):
                    lines.append(f"{part}.{key}: {b.get(key)!r:.300} -> {a.get(key)!r:.300}")
        elif b != a:
            lines.append(f"{part}: {b!r:.300} -> {a!r:.300}")
    return "\n".join(lines) or "(no difference)"


class GuardEnv:
    """A demo-shop database (``DBNAME``, owned by ``OWNER``) behind a gateway (target
    ``shop``) with ``policy: default``; a superuser connection for fingerprints and restores."""

    def __init__(self, cluster: DevCluster, data_dir: Path) -> None:
        self.cluster = cluster
        self.password = f"gr-{secrets.token_hex(12)}"
        self.data_dir = data_dir
        self._load()
        self.db = TargetDb(cluster, DBNAME, OWNER, self.password, "scram-sha-256")
        self.admin = self._admin_connect()
        self.pristine_data = self._dump()
        self.pristine = self.fingerprint()
        self.baseline = self.pristine
        self.gw = RunningGateway(
            gateway_config(
                data_dir,
                targets={TARGET: self.db.target()},
                policy="default",
                # statements to review are held for approval; nobody approves here, so each
                # is refused (42501) when its short timeout passes
                approvals={"timeout": "100ms"},
            )
        )
        self.gw.start()
        self._token: tuple[str, float] | None = None
        self.server_version = cluster.version[0]
        self.rebuilds = 0
        self.restores = 0

    def _load(self) -> None:
        load_shop(self.cluster, dbname=DBNAME, owner=OWNER, password=self.password)
        self.cluster.execute(f"ANALYZE {', '.join(TABLES)}", dbname=DBNAME)

    def _admin_connect(self) -> psycopg.Connection[Any]:
        conn = psycopg.connect(self.cluster.admin_dsn(DBNAME), autocommit=True)
        # keep the fingerprint queries out of the server log that failing tests report
        conn.execute("SET log_statement = 'none'")
        conn.execute("SET log_min_error_statement = 'panic'")
        return conn

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.gw.stop()
        with contextlib.suppress(Exception):
            self.admin.close()

    # ---- addresses ---------------------------------------------------------------------------

    def token(self) -> str:
        now = time.time()
        if self._token is None or now - self._token[1] > 1800:
            self._token = (self.gw.token(SUBJECT, GROUPS, ttl=3600), now)
        return self._token[0]

    def dsn(self, **extra: Any) -> str:
        return self.gw.dsn(user=SUBJECT, dbname=TARGET, password=self.token(), **extra)

    def asyncpg_kwargs(self) -> dict[str, Any]:
        kw = self.gw.connect_kwargs(user=SUBJECT, dbname=TARGET, password=self.token())
        kw["ssl"] = False
        return kw

    def connect(self, autocommit: bool = True, **extra: Any) -> psycopg.Connection[Any]:
        return psycopg.connect(self.dsn(**extra), autocommit=autocommit)

    # ---- the fingerprint ---------------------------------------------------------------------

    def fingerprint(self, *, sequences: bool = True) -> dict[str, Any]:
        """Data, sequence states, the database's catalog and cluster-wide objects.

        ``sequences=False`` leaves sequence states out: they are not transactional, so a
        statement that ran and was rolled back (in a refused pipeline) advances them."""
        self._recover_admin()
        # one round trip for every catalog query and the list of relations
        names = [*CATALOG_QUERIES, *CLUSTER_QUERIES]
        queries = [*CATALOG_QUERIES.values(), *CLUSTER_QUERIES.values()]
        row = self.admin.execute(
            "SELECT "
            + ", ".join(
                f"(SELECT coalesce(array_agg(q::text ORDER BY q::text), '{{}}') FROM ({q}) q)"
                for q in queries
            )
        ).fetchone()
        assert row is not None
        lists = dict(zip(names, row, strict=True))
        catalog = {k: lists[k] for k in CATALOG_QUERIES}
        cluster = {k: lists[k] for k in CLUSTER_QUERIES}
        parts = []
        for name, kind in self.admin.execute(_RELATIONS).fetchall():
            if kind == "S":
                parts.append(
                    f"SELECT 'sequences', {_lit(name)}, "
                    f"last_value::text || '/' || is_called::text FROM {name}"
                )
            elif kind == "m":
                parts.append(
                    f"SELECT 'data', {_lit(name)}, CASE WHEN c.relispopulated THEN "
                    f"(SELECT count(*)::text || '/' || md5(coalesce(string_agg(t::text, "
                    f"E'\\n' ORDER BY t::text), '')) FROM {name} t) ELSE 'unpopulated' END "
                    f"FROM pg_class c WHERE c.oid = {_lit(name)}::regclass"
                )
            else:
                parts.append(
                    f"SELECT 'data', {_lit(name)}, count(*)::text || '/' || "
                    f"md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) "
                    f"FROM {name} t"
                )
        out: dict[str, Any] = {"data": {}, "sequences": {}, "catalog": catalog, "cluster": cluster}
        if parts:
            for part, name, value in self.admin.execute(" UNION ALL ".join(parts)).fetchall():
                out[part][name] = value
        if not sequences:
            del out["sequences"]
        return out

    def counts(self) -> dict[str, int]:
        return {t: self.admin.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}

    def _recover_admin(self) -> None:
        if self.admin.closed or self.admin.broken:
            self.admin = self._admin_connect()
        elif self.admin.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            self.admin.rollback()

    # ---- restoring ---------------------------------------------------------------------------

    def _dump(self) -> dict[str, bytes]:
        out = {}
        for table in TABLES:
            buf = bytearray()
            with self.admin.cursor().copy(f"COPY public.{table} TO STDOUT") as cp:
                for chunk in cp:
                    buf += chunk
            out[table] = bytes(buf)
        seqs = self.admin.execute(
            "SELECT format('%I.%I', schemaname, sequencename), "
            "coalesce(last_value, 1), last_value IS NOT NULL FROM pg_sequences "
            "WHERE schemaname = 'public'"
        ).fetchall()
        out["__sequences__"] = json.dumps(seqs).encode()
        return out

    def restore_data(self) -> None:
        """Put the pristine rows and sequence states back (as the superuser), then ANALYZE."""
        self.restores += 1
        self._recover_admin()
        with self.admin.transaction():
            self.admin.execute("SET LOCAL lock_timeout = '20s'")
            self.admin.execute("TRUNCATE " + ", ".join(f"public.{t}" for t in TABLES) + " CASCADE")
            for table in TABLES:
                with self.admin.cursor().copy(f"COPY public.{table} FROM STDIN") as cp:
                    cp.write(self.pristine_data[table])
            for name, value, called in json.loads(self.pristine_data["__sequences__"]):
                self.admin.execute("SELECT setval(%s::regclass, %s, %s)", [name, value, called])
        self.admin.execute(f"ANALYZE {', '.join(TABLES)}")

    def rebuild(self) -> None:
        """Drop and reload the whole database (its schema was changed)."""
        self.rebuilds += 1
        with contextlib.suppress(Exception):
            self.admin.close()
        for _ in range(3):
            try:
                self._load()
                break
            except Exception:
                time.sleep(0.5)
        self.admin = self._admin_connect()
        self.restore_data()
        self.warm_estimator()

    def warm_estimator(self) -> None:
        """After a rebuild the gateway's estimator connections are dead (they are replaced
        when next asked); make sure one is up with a statement that changes nothing either
        way, until a statement that needs an estimate is refused again."""
        probe = "UPDATE orders SET amount = amount WHERE id > 0"
        for _ in range(5):
            try:
                with self.connect() as conn:
                    conn.execute(probe)
            except psycopg.errors.InsufficientPrivilege:
                return
            except psycopg.Error:
                pass
            time.sleep(0.1)

    def ensure_pristine(self) -> dict[str, Any]:
        """Restore the database if it differs from the pristine load; return the fingerprint
        (also kept as ``self.baseline``, the "before" of the test about to run)."""
        fp = self.fingerprint()
        if not _same_database(fp, self.pristine):
            if fp["catalog"] != self.pristine["catalog"]:
                self.rebuild()
            else:
                self.restore_data()
            fp = self.fingerprint()
            if not _same_database(fp, self.pristine):
                raise AssertionError(
                    "could not restore the guardrails database:\n"
                    + describe_difference(self.pristine, fp)
                )
        self.baseline = fp
        return fp

    def assert_gateway_alive(self) -> None:
        """The gateway runs and answers a harmless statement (with why not, if it does not)."""
        assert self.gw.alive, "the gateway has stopped"
        try:
            with self.connect() as conn:
                answer = conn.execute("SELECT 41 + 1").fetchone()
        except psycopg.Error as exc:
            raise AssertionError(f"SELECT 41 + 1 through the gateway: {exc!r}") from exc
        assert answer == (42,), answer


# ---------------------------------------------------------------------------------------------
# Runners: SQL through one client and protocol -> Outcome


def _psycopg_run(
    env: GuardEnv,
    body: Callable[[psycopg.Connection[Any]], str],
    *,
    autocommit: bool = True,
) -> Outcome:
    try:
        with env.connect(autocommit=autocommit) as conn:
            detail = body(conn)
    except psycopg.Error as exc:
        return _from_exception(exc)
    return Outcome(True, detail=detail)


def _drain_copy(conn: psycopg.Connection[Any], sql: str) -> str:
    n = 0
    with conn.cursor().copy(sql) as cp:
        for _ in cp:
            n += 1
    return f"COPY ({n} chunks)"


def run_simple(env: GuardEnv, sql: str) -> Outcome:
    """psycopg ``execute`` without parameters in autocommit: one simple-protocol Query."""

    def body(conn: psycopg.Connection[Any]) -> str:
        if sql.lstrip().upper().startswith("COPY") and "STDOUT" in sql.upper():
            return _drain_copy(conn, sql)
        cur = conn.execute(sql)
        while cur.nextset():
            pass
        return str(cur.statusmessage)

    return _psycopg_run(env, body)


def run_multi(env: GuardEnv, sql: str) -> Outcome:
    """A harmless statement first, in the same simple Query: ``SELECT 1; <sql>``."""
    return run_simple(env, "SELECT 1; " + sql)


def run_extended_unnamed(env: GuardEnv, sql: str) -> Outcome:
    """psycopg with binary results: Parse/Bind/Execute of the unnamed statement."""

    def body(conn: psycopg.Connection[Any]) -> str:
        cur = conn.cursor(binary=True)
        cur.execute(sql)
        return str(cur.statusmessage)

    return _psycopg_run(env, body)


def run_extended_named(env: GuardEnv, sql: str) -> Outcome:
    """psycopg ``prepare=True``: Parse of a named statement, then Bind/Execute of it."""

    def body(conn: psycopg.Connection[Any]) -> str:
        cur = conn.execute(sql, prepare=True)
        return str(cur.statusmessage)

    return _psycopg_run(env, body)


def run_sql_prepare(env: GuardEnv, sql: str) -> Outcome:
    """SQL ``PREPARE gr_stmt AS <sql>`` and then ``EXECUTE gr_stmt``, as two Queries."""

    def body(conn: psycopg.Connection[Any]) -> str:
        conn.execute("PREPARE gr_stmt AS " + sql.rstrip().rstrip(";"))
        cur = conn.execute("EXECUTE gr_stmt")
        return str(cur.statusmessage)

    return _psycopg_run(env, body)


PIPELINE_INSERT = (
    "INSERT INTO orders (id, customer_id, amount, status) VALUES (424242, 1, 4.20, 'pending')"
)


def run_pipeline(env: GuardEnv, sql: str, *, first: str = PIPELINE_INSERT) -> Outcome:
    """psycopg pipeline mode in autocommit: a harmless INSERT, then each statement of sql,
    all before one Sync (one implicit transaction)."""
    statements = [s.strip() for s in _split_or_whole(sql)]

    def body(conn: psycopg.Connection[Any]) -> str:
        with conn.pipeline():
            conn.execute(first)
            for st in statements:
                conn.execute(st)
        return "pipeline"

    return _psycopg_run(env, body)


def _split_or_whole(sql: str) -> list[str]:
    try:
        parts = [s for s in split(sql, with_parser=True) if s.strip()]
    except Exception:
        return [sql]
    return parts or [sql]


def run_psql(env: GuardEnv, sql: str) -> Outcome:
    """``psql -X -c SQL``: one simple Query with the whole string."""
    proc = run_psql_raw(env, "-c", sql)
    return _from_psql(proc)


GEXEC_QUOTE = "$gr_gexec$"


def run_gexec(env: GuardEnv, sql: str) -> Outcome:
    """psql ``SELECT $q$<sql>$q$ \\gexec``: the gateway sees a string literal first, then
    psql sends the cell as a Query of its own."""
    assert GEXEC_QUOTE not in sql
    script = f"SELECT {GEXEC_QUOTE}{sql}{GEXEC_QUOTE} \\gexec\n"
    proc = run_psql_raw(env, input=script)
    return _from_psql(proc)


def run_psql_raw(env: GuardEnv, *args: str, input: str | None = None) -> Any:
    """psql -X (no psqlrc) through the gateway, stopping at the first error, with SQLSTATEs."""
    return psql_program(
        env.dsn(),
        "-v",
        "ON_ERROR_STOP=1",
        "-v",
        "VERBOSITY=verbose",
        "-q",
        *args,
        input=input,
        timeout=60,
    )


def _asyncpg(env: GuardEnv, coro: Callable[[asyncpg.Connection], Any]) -> Outcome:
    async def main() -> Outcome:
        try:
            conn = await asyncpg.connect(**env.asyncpg_kwargs(), timeout=15)
        except Exception as exc:
            return _from_exception(exc, "connect")
        try:
            detail = await asyncio.wait_for(coro(conn), 60)
        except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            return _from_exception(exc)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 5)
        return Outcome(True, detail=str(detail)[:200])

    return asyncio.run(main())


def run_asyncpg_execute(env: GuardEnv, sql: str) -> Outcome:
    """asyncpg ``execute(sql)`` without arguments: the simple protocol."""
    return _asyncpg(env, lambda c: c.execute(sql))


def run_asyncpg_fetch(env: GuardEnv, sql: str) -> Outcome:
    """asyncpg ``fetch(sql)``: a named prepared statement, then Bind/Execute."""
    return _asyncpg(env, lambda c: c.fetch(sql))


def run_asyncpg_prepare(env: GuardEnv, sql: str) -> Outcome:
    """asyncpg ``prepare(sql)`` then ``PreparedStatement.fetch()``."""

    async def go(c: asyncpg.Connection) -> Any:
        stmt = await c.prepare(sql)
        return await stmt.fetch()

    return _asyncpg(env, go)


@dataclass(frozen=True)
class Protocol:
    name: str
    run: Callable[[GuardEnv, str], Outcome]
    applies: Callable[[Entry], bool]
    # the server parses (but never runs) a statement before the gateway's final judgement at
    # Execute, so the server's own parse-analysis error may come first
    parses_before_judging: bool = False
    # statements before the refused one run and roll back; sequences are not transactional
    sequences_may_advance: bool = False


def _any(e: Entry) -> bool:
    return True


def _single_query(e: Entry) -> bool:
    return e.single and not e.is_copy


PROTOCOLS: dict[str, Protocol] = {
    p.name: p
    for p in (
        Protocol("simple", run_simple, _any),
        Protocol("psql", run_psql, _any),
        Protocol("multi", run_multi, _any),
        Protocol("gexec", run_gexec, _any),
        Protocol("asyncpg_execute", run_asyncpg_execute, lambda e: not e.is_copy),
        Protocol("extended_unnamed", run_extended_unnamed, _single_query, True),
        Protocol("extended_named", run_extended_named, _single_query, True),
        Protocol("asyncpg_fetch", run_asyncpg_fetch, _single_query, True),
        Protocol("asyncpg_prepare", run_asyncpg_prepare, _single_query, True),
        Protocol("sql_prepare", run_sql_prepare, lambda e: e.preparable),
        Protocol("pipeline", run_pipeline, _any, True, True),
    )
}
