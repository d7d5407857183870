"""Row estimates and COPY descriptions resolve table names as the session does: a session
whose search_path points at another schema than the estimator's must not have its writes
estimated against the table of the same name there (a small one), or the blast-radius rules
can be walked around.

The database has ``accounts`` twice: ``public.accounts`` (ids 1..2000, a primary key) and
``tenant.accounts`` (2000 rows, all with id 5, no key; ids 1501..3500 in ``other_id``). Through
the gateway with the default policy, a write to most of ``tenant.accounts`` must be held
(refused here, nobody approves) however the session came to resolve ``accounts`` there.
Likewise ``people`` (three columns in both schemas, the third one ``tenant.people.secret``
under a column rule): a COPY's columns, described on the gateway's side connection, must be
tenant's, or the COPY refused; public's would let the secret through as ``extra``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import psycopg
import pytest

from pgwarden.config import TargetConfig
from pgwarden.guard import estimator as estimator_mod
from pgwarden.guard.estimator import Estimator
from tests.support import wire
from tests.support.databases import TargetDb, fresh_database
from tests.support.fixtures import MakeGateway
from tests.support.gateway import RunningGateway

DBNAME = "search_paths"
ROWS = 2000

SCHEMA = f"""
CREATE TABLE public.accounts (id int PRIMARY KEY, other_id int, v int);
INSERT INTO public.accounts SELECT g, g, 0 FROM generate_series(1, {ROWS}) g;
CREATE SCHEMA tenant;
CREATE TABLE tenant.accounts (id int, other_id int, v int);
INSERT INTO tenant.accounts SELECT 5, 1500 + g, 0 FROM generate_series(1, {ROWS}) g;
CREATE TABLE public.people (id int, note text, extra text);
INSERT INTO public.people VALUES (1, 'nothing to hide', 'plain');
CREATE TABLE tenant.people (id int, note text, secret text);
INSERT INTO tenant.people VALUES (1, 'note', 'SECRET-4711');
ANALYZE;
"""


@pytest.fixture(scope="module")
def db(shop: TargetDb) -> TargetDb:
    return fresh_database(shop, DBNAME, SCHEMA)


@pytest.fixture
def connect(db: TargetDb, make_gateway: MakeGateway) -> Callable[..., psycopg.Connection]:
    gw = make_gateway(
        targets={"paths": db.target()}, policy="default", approvals={"timeout": "100ms"}
    )

    def make(**extra: str) -> psycopg.Connection:
        dsn = gw.dsn(user="alice", dbname="paths", password=gw.token("alice"), **extra)
        return psycopg.connect(dsn, autocommit=True)

    return make


def tenant_rows_changed(db: TargetDb) -> int:
    return int(db.query("SELECT count(*) FROM tenant.accounts WHERE v <> 0")[0][0])


WRITES_TO_MOST_OF_TENANT = [
    "UPDATE accounts SET v = 1 WHERE id = 5",  # a key in public, every row in tenant
    "UPDATE accounts SET v = 1 WHERE other_id > 1500",  # a quarter of public, all of tenant
]


@pytest.mark.parametrize("sql", WRITES_TO_MOST_OF_TENANT)
def test_the_start_up_search_path_is_the_estimators(
    connect: Callable[..., psycopg.Connection], db: TargetDb, sql: str
) -> None:
    with connect(options="-c search_path=tenant") as conn:
        assert conn.execute("SHOW search_path").fetchone() == ("tenant",)
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="pgwarden:"):
            conn.execute(sql)
        # estimated against tenant.accounts, not refused for want of an estimate:
        assert conn.execute("UPDATE accounts SET v = 0 WHERE other_id > 3400").rowcount == 100
    assert tenant_rows_changed(db) == 0


@pytest.mark.parametrize(
    "switch",
    [
        "SET search_path = tenant",
        "SET search_path TO tenant, public",
        "SELECT set_config('search_path', 'tenant', false)",
        "SELECT pg_catalog.set_config(E'search\\x5fpath', 'tenant', false)",
        "BEGIN; SET LOCAL search_path = tenant",
    ],
)
@pytest.mark.parametrize("sql", WRITES_TO_MOST_OF_TENANT)
def test_a_search_path_changed_in_the_session_stops_estimates(
    connect: Callable[..., psycopg.Connection], db: TargetDb, switch: str, sql: str
) -> None:
    with connect() as conn:
        # before the switch the writes are estimated against public.accounts and pass
        assert conn.execute("UPDATE accounts SET v = 0 WHERE id = 5").rowcount == 1
        conn.execute(switch)
        assert conn.execute("SELECT current_schemas(false)").fetchone()[0][0] == "tenant"
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="pgwarden:"):
            conn.execute(sql)
    assert tenant_rows_changed(db) == 0


SWITCHES_IN_THE_SAME_QUERY = [
    "SET search_path = tenant",
    "SELECT set_config('search_path', 'tenant', false)",
    "SET search_path = tenant; SELECT 1",
]


@pytest.mark.parametrize("switch", SWITCHES_IN_THE_SAME_QUERY)
@pytest.mark.parametrize("sql", WRITES_TO_MOST_OF_TENANT)
def test_a_search_path_changed_earlier_in_the_same_query_stops_estimates(
    connect: Callable[..., psycopg.Connection], db: TargetDb, switch: str, sql: str
) -> None:
    """``SET search_path = tenant; UPDATE accounts ...`` in one simple Query: the UPDATE was
    estimated with the start-up search_path (the SET had not been noted yet) and allowed."""
    with connect() as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="pgwarden:"):
            conn.execute(f"{switch}; {sql}")
        # a write after it in the same query still runs when it needs no estimate
        conn.execute("SET search_path = tenant; INSERT INTO accounts VALUES (9, 9, 9)")
    assert tenant_rows_changed(db) == 1
    db.execute("DELETE FROM tenant.accounts WHERE id = 9")


def test_sessions_with_other_search_paths_share_the_estimator(
    connect: Callable[..., psycopg.Connection], db: TargetDb
) -> None:
    """The estimator's connections and what it keeps of the catalog are shared: a session
    with the default search_path, then one with tenant, then the default again, each get
    estimates for their own ``accounts``."""
    for _ in range(2):
        with connect() as conn:
            assert conn.execute("UPDATE accounts SET v = 0 WHERE id = 5").rowcount == 1
            assert conn.execute("UPDATE accounts SET v = 0 WHERE other_id > 1500").rowcount == 500
        with connect(options="-c search_path=tenant") as conn:
            for sql in WRITES_TO_MOST_OF_TENANT:
                with pytest.raises(psycopg.errors.InsufficientPrivilege, match="pgwarden:"):
                    conn.execute(sql)
    assert tenant_rows_changed(db) == 0


SWITCH = (
    "BUG (blast radius): a STABLE function that changes the search_path inside (set_config in "
    "a PL/pgSQL body; PostgreSQL lets a STABLE function call it) is out of the gateway's "
    "sight; the session's names move and the estimator's do not, so a write to most of "
    "tenant.accounts is estimated against public.accounts and allowed"
)

SWITCH = (
    "CREATE OR REPLACE FUNCTION public.switch_tenant() RETURNS text LANGUAGE plpgsql {} AS "
    "$$BEGIN PERFORM set_config('search_path', 'tenant', false); RETURN 'ok'; END$$"
)


def test_a_volatile_function_that_switches_the_search_path_is_held(
    connect: Callable[..., psycopg.Connection], db: TargetDb
) -> None:
    """A user's VOLATILE function may do anything (see the guardrails bypass tests)."""
    db.execute(SWITCH.format("VOLATILE"))
    try:
        with connect() as conn:
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="pgwarden:"):
                conn.execute("SELECT public.switch_tenant()")
            assert conn.execute("SELECT current_schemas(false)").fetchone()[0][0] == "public"
    finally:
        db.execute("DROP FUNCTION public.switch_tenant()")


SWITCHERS = {
    "plpgsql": SWITCH.format("STABLE"),
    "sql": "CREATE OR REPLACE FUNCTION public.switch_tenant() RETURNS text LANGUAGE sql STABLE "
    "AS $$SELECT set_config('search_path', 'tenant', false)$$",
    "sql-standard": "CREATE OR REPLACE FUNCTION public.switch_tenant() RETURNS text "
    "LANGUAGE sql STABLE BEGIN ATOMIC SELECT set_config('search_path', 'tenant', false); END",
}


@pytest.mark.parametrize("prepare", [False, True], ids=["simple", "extended"])
@pytest.mark.parametrize("definition", SWITCHERS.values(), ids=SWITCHERS.keys())
def test_a_stable_function_that_switches_the_search_path_stops_estimates(
    connect: Callable[..., psycopg.Connection], db: TargetDb, definition: str, prepare: bool
) -> None:
    """PostgreSQL lets a STABLE function call set_config. A function of the target's whose
    source names search_path or set_config (or whose SQL-standard body is not kept as text)
    counts as changing the search_path: no estimates after a call of it, so the write to
    most of tenant.accounts is held, not estimated against public.accounts."""
    db.execute(definition)
    try:
        with connect() as conn:
            conn.execute("SELECT public.switch_tenant()", prepare=prepare)
            assert conn.execute("SELECT current_schemas(false)").fetchone()[0][0] == "tenant"
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="pgwarden:"):
                conn.execute("UPDATE accounts SET v = 1 WHERE other_id > 1500")
        assert tenant_rows_changed(db) == 0
    finally:
        db.execute("DROP FUNCTION public.switch_tenant()")


def test_a_function_with_a_search_path_of_its_own_leaves_estimates_alone(
    connect: Callable[..., psycopg.Connection], db: TargetDb
) -> None:
    """A function's own SET clause is undone when it returns: the session's names stay."""
    db.execute(
        "CREATE OR REPLACE FUNCTION public.tenant_count() RETURNS bigint LANGUAGE sql STABLE "
        "SET search_path = tenant AS 'SELECT count(*) FROM accounts'"
    )
    try:
        with connect() as conn:
            assert conn.execute("SELECT public.tenant_count()").fetchone() == (ROWS,)
            assert conn.execute("UPDATE accounts SET v = 0 WHERE other_id > 1990").rowcount == 10
    finally:
        db.execute("DROP FUNCTION public.tenant_count()")


# -- COPY: its source's columns, described for the column rules --------------------------------


@pytest.fixture
def masked_gw(db: TargetDb, make_gateway: MakeGateway) -> RunningGateway:
    return make_gateway(
        targets={"paths": db.target()},
        masking={"columns": ["tenant.people.secret"], "strategy": "redact"},
    )


@pytest.fixture
def masked_connect(masked_gw: RunningGateway) -> Callable[..., psycopg.Connection]:
    def make(**extra: str) -> psycopg.Connection:
        token = masked_gw.token("alice")
        dsn = masked_gw.dsn(user="alice", dbname="paths", password=token, **extra)
        return psycopg.connect(dsn, autocommit=True)

    return make


def copy_out(conn: psycopg.Connection, sql: str) -> bytes:
    with conn.cursor().copy(sql) as cp:
        return b"".join(bytes(b) for b in cp)


def test_a_copy_is_described_with_the_start_up_search_path(
    masked_connect: Callable[..., psycopg.Connection],
) -> None:
    with masked_connect(options="-c search_path=tenant") as conn:
        data = copy_out(conn, "COPY people TO STDOUT")
    assert b"SECRET-4711" not in data
    assert data.startswith(b"1\tnote\t")  # the rest of the row as it is


@pytest.mark.parametrize("switch", SWITCHES_IN_THE_SAME_QUERY)
def test_a_copy_after_a_switch_in_the_same_query_is_refused(
    masked_gw: RunningGateway, switch: str
) -> None:
    """Refused (a guard: the COPY was refused before too, being described in a string that
    also holds the switch)."""
    with wire.RawConn.connect(masked_gw.host, masked_gw.port) as conn:
        conn.login("alice", "paths", masked_gw.token("alice"))
        msgs = conn.simple(f"{switch}; COPY people TO STDOUT")
    data = b"".join(m.body for m in msgs if m.type == b"d")
    assert b"SECRET-4711" not in data
    assert wire.errors(msgs), msgs


@pytest.mark.parametrize(
    "switch",
    [
        "SET search_path = tenant",
        "SELECT set_config('search_path', 'tenant', false)",
    ],
)
def test_a_copy_after_the_search_path_changed_is_refused(
    masked_connect: Callable[..., psycopg.Connection], switch: str
) -> None:
    with masked_connect() as conn:
        assert b"nothing to hide" in copy_out(conn, "COPY people TO STDOUT")  # public's
        conn.execute(switch)
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="search_path"):
            copy_out(conn, "COPY people TO STDOUT")
        rows = conn.execute("SELECT * FROM people").fetchall()  # lineage from the result itself
    assert len(rows) == 1 and rows[0][:2] == (1, "note")
    assert "4711" not in rows[0][2]


def test_a_question_waits_for_a_count_on_its_connection(
    db: TargetDb, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A count runs in a READ ONLY transaction on an estimator connection (BEGIN .. ROLLBACK).
    Another session's question on that connection in between ran inside it; when it failed,
    the connection was closed, and the count went on, on a new connection, outside any
    transaction: what its WHERE does ran for real (here nextval: the sequence moved)."""
    monkeypatch.setattr(estimator_mod, "POOL_SIZE", 1)
    db.execute("CREATE SEQUENCE IF NOT EXISTS count_guard")
    db.execute(f'ALTER SEQUENCE count_guard OWNER TO "{db.user}"')
    est = Estimator({"t": TargetConfig.model_validate(db.target())})
    counted = "UPDATE accounts SET v = 1 WHERE abs(id) > 0 AND nextval('count_guard') > 0"

    async def main() -> tuple[object, object]:
        counting = asyncio.ensure_future(est.estimate("t", counted))
        while not est._pools or not est._pools["t"][0].session_lock.locked():
            await asyncio.sleep(0.001)  # until the count's BEGIN .. ROLLBACK has begun
        failing = await est.estimate("t", "UPDATE no_such_table SET v = 1")
        return failing, await counting

    loop = asyncio.new_event_loop()
    try:
        failing, count = loop.run_until_complete(main())
    finally:
        loop.run_until_complete(est.close())
        loop.close()
    assert failing is None
    assert count is None  # nextval fails in the read-only transaction: no estimate (held)
    assert db.query("SELECT last_value, is_called FROM count_guard") == [(1, False)]
