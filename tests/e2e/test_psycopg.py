"""psycopg 3 through the gateway: pipeline mode on and off, binary results, COPY, cursors,
prepared statements, LISTEN/NOTIFY, notices, ParameterStatus, cancel."""

from __future__ import annotations

import datetime as dt
import decimal
import time
import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest
from psycopg import errors, sql
from psycopg.pq import TransactionStatus

from tests.support.databases import TargetDb, cancel_when_active
from tests.support.gateway import RunningGateway


@pytest.fixture
def conn(gateway: RunningGateway) -> Iterator[psycopg.Connection]:
    with psycopg.connect(gateway.dsn("alice"), autocommit=True) as c:
        yield c


@pytest.fixture
def table(shop: TargetDb, unique: Callable[[str], str]) -> Iterator[str]:
    name = unique("pcg")
    shop.execute(
        f"create table {name} (id int primary key, name text, qty int default 0);"
        f"alter table {name} owner to app;"
    )
    yield name
    shop.execute(f"set lock_timeout = '10s'; drop table if exists {name}")


def rows(shop: TargetDb, table: str) -> list[tuple]:
    return shop.query(f"select id, name, qty from {table} order by id")


# ---------------------------------------------------------------------------------------------
# Queries, pipeline on and off


@pytest.mark.parametrize("pipeline", [False, True], ids=["no-pipeline", "pipeline"])
def test_inserts_and_selects(
    conn: psycopg.Connection, shop: TargetDb, table: str, pipeline: bool
) -> None:
    def work() -> list:
        cur = conn.cursor()
        cur.executemany(
            f"insert into {table} (id, name) values (%s, %s)", [(i, f"n{i}") for i in range(10)]
        )
        c2 = conn.execute(f"update {table} set qty = id * 2 where id >= %s", [5])
        c3 = conn.execute(
            f"select id, name, qty from {table} where id between %s and %s order by id", [4, 6]
        )
        return [c2, c3]

    if pipeline:
        with conn.pipeline():
            c2, c3 = work()
    else:
        c2, c3 = work()
    assert c2.rowcount == 5
    assert c3.fetchall() == [(4, "n4", 0), (5, "n5", 10), (6, "n6", 12)]
    assert len(rows(shop, table)) == 10


def test_fifty_statement_pipeline(conn: psycopg.Connection, shop: TargetDb, table: str) -> None:
    cursors = []
    with conn.pipeline() as p:
        for i in range(25):
            conn.execute(f"insert into {table} (id, name) values (%s, %s)", [i, f"p{i}"])
            cursors.append(conn.execute(f"select count(*) from {table}"))
        p.sync()
    assert [c.fetchone()[0] for c in cursors] == list(range(1, 26))  # type: ignore[index]
    assert len(rows(shop, table)) == 25


def test_error_inside_a_pipeline(gateway: RunningGateway, shop: TargetDb, table: str) -> None:
    with psycopg.connect(gateway.dsn("alice")) as c:  # not autocommit: one transaction
        with pytest.raises(errors.UniqueViolation):
            with c.pipeline():
                c.execute(f"insert into {table} (id, name) values (1, 'a')")
                c.execute(f"insert into {table} (id, name) values (2, 'b')")
                c.execute(f"insert into {table} (id, name) values (1, 'duplicate')")
                c.execute(f"insert into {table} (id, name) values (3, 'c')")
        assert c.info.transaction_status == TransactionStatus.INERROR
        c.rollback()
        assert c.execute(f"select count(*) from {table}").fetchone() == (0,)
    assert rows(shop, table) == []


def test_error_inside_an_autocommit_pipeline(
    conn: psycopg.Connection, shop: TargetDb, table: str
) -> None:
    with pytest.raises(errors.DivisionByZero):
        with conn.pipeline():
            conn.execute(f"insert into {table} (id, name) values (1, 'a')")
            conn.execute("select 1 / (select count(*) from pg_class where false)::int")
            conn.execute(f"insert into {table} (id, name) values (2, 'b')")
    # The implicit transaction of the pipeline did not commit.
    assert rows(shop, table) == []
    assert conn.execute("select 'usable'").fetchone() == ("usable",)


# ---------------------------------------------------------------------------------------------
# Types, binary results


VALUES_SQL = (
    "select 42::int4, 9000000000::int8, 1.5::float8, 12.345::numeric(10,3), 'tëxt'::text, "
    "'\\xdeadbeef'::bytea, true, '2024-02-29 12:34:56+00'::timestamptz, '2024-02-29'::date, "
    "array[1,2,3]::int[], '{\"a\": [1, null]}'::jsonb, "
    "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid, null::text"
)
EXPECTED = (
    42,
    9000000000,
    1.5,
    decimal.Decimal("12.345"),
    "tëxt",
    b"\xde\xad\xbe\xef",
    True,
    dt.datetime(2024, 2, 29, 12, 34, 56, tzinfo=dt.UTC),
    dt.date(2024, 2, 29),
    [1, 2, 3],
    {"a": [1, None]},
    uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
    None,
)


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
def test_result_types(conn: psycopg.Connection, binary: bool) -> None:
    conn.execute("set timezone = 'UTC'")
    cur = conn.cursor(binary=binary)
    row = cur.execute(VALUES_SQL).fetchone()
    assert row is not None
    assert row[:7] == EXPECTED[:7]
    assert row[7] == EXPECTED[7]
    assert row[8:] == EXPECTED[8:]
    assert cur.pgresult is not None
    assert cur.pgresult.fformat(0) == (1 if binary else 0)


def test_binary_parameters(conn: psycopg.Connection) -> None:
    cur = conn.cursor(binary=True)
    row = cur.execute(
        "select %b::int8 * 2, %b::bytea, %b::text[]",
        [21, b"\x00\x01\xff", ["x", "y"]],
    ).fetchone()
    assert row == (42, b"\x00\x01\xff", ["x", "y"])


# ---------------------------------------------------------------------------------------------
# COPY


def test_copy_in_and_out(conn: psycopg.Connection, shop: TargetDb, table: str) -> None:
    data = [(i, f"name {i}", i * 3) for i in range(1, 1001)]
    with conn.cursor().copy(f"copy {table} (id, name, qty) from stdin") as copy:
        for row in data:
            copy.write_row(row)
    assert shop.query(f"select count(*), sum(qty) from {table}") == [(1000, 3 * 500500)]
    with conn.cursor().copy(
        f"copy (select id, name, qty from {table} order by id) to stdout"
    ) as copy:
        out = list(copy.rows())
    assert [(int(a), b, int(c)) for a, b, c in out] == data


def test_binary_copy(conn: psycopg.Connection, shop: TargetDb, table: str) -> None:
    with conn.cursor().copy(f"copy {table} (id, name, qty) from stdin (format binary)") as copy:
        copy.set_types(["int4", "text", "int4"])
        copy.write_row((1, "bin", 7))
        copy.write_row((2, None, 8))
    with conn.cursor().copy(
        f"copy (select * from {table} order by id) to stdout (format binary)"
    ) as copy:
        copy.set_types(["int4", "text", "int4"])
        assert list(copy.rows()) == [(1, "bin", 7), (2, None, 8)]
    assert rows(shop, table) == [(1, "bin", 7), (2, None, 8)]


def test_copy_error_rolls_back(conn: psycopg.Connection, shop: TargetDb, table: str) -> None:
    with pytest.raises(errors.InvalidTextRepresentation):
        with conn.cursor().copy(f"copy {table} (id, name) from stdin") as copy:
            copy.write(b"1\tok\nnot-a-number\tbad\n")
    assert rows(shop, table) == []
    assert conn.execute("select 1").fetchone() == (1,)


# ---------------------------------------------------------------------------------------------
# Cursors and prepared statements


def test_server_side_cursor(gateway: RunningGateway) -> None:
    with psycopg.connect(gateway.dsn("alice")) as c:
        with c.cursor(name="big") as cur:
            cur.itersize = 7
            cur.execute("select g, repeat('x', g % 5) from generate_series(1, 100) g")
            first = cur.fetchmany(10)
            assert [r[0] for r in first] == list(range(1, 11))
            rest = list(cur)
            assert [r[0] for r in rest] == list(range(11, 101))
        c.commit()


def test_prepared_statements(conn: psycopg.Connection, shop: TargetDb, table: str) -> None:
    for i in range(10):
        conn.execute(f"insert into {table} (id, name) values (%s, %s)", [i, f"p{i}"], prepare=True)
    assert conn.execute(
        f"select count(*) from {table} where id < %s", [5], prepare=True
    ).fetchone() == (5,)
    prepared = conn.execute(
        "select name from pg_prepared_statements where statement like %s", [f"%{table}%"]
    ).fetchall()
    assert len(prepared) >= 2  # really prepared on the server, by name
    assert len(rows(shop, table)) == 10


def test_sql_prepare_and_execute(conn: psycopg.Connection) -> None:
    conn.execute("prepare twice(int) as select $1 * 2")
    assert conn.execute("execute twice(21)").fetchone() == (42,)
    conn.execute("deallocate twice")


# ---------------------------------------------------------------------------------------------
# Asynchronous messages


def test_listen_notify_across_two_sessions(gateway: RunningGateway) -> None:
    with (
        psycopg.connect(gateway.dsn("alice"), autocommit=True) as listener,
        psycopg.connect(gateway.dsn("bob"), autocommit=True) as notifier,
    ):
        listener.execute("listen gw_channel")
        notifier.execute("notify gw_channel, 'hello through the gateway'")
        notifier.execute("select pg_notify('gw_channel', %s)", ["second"])
        received = list(listener.notifies(timeout=5, stop_after=2))
    assert [(n.channel, n.payload) for n in received] == [
        ("gw_channel", "hello through the gateway"),
        ("gw_channel", "second"),
    ]


def test_own_notification_carries_own_backend_pid(conn: psycopg.Connection) -> None:
    conn.execute("listen self_channel")
    conn.execute("notify self_channel, 'me'")
    [n] = list(conn.notifies(timeout=5, stop_after=1))
    assert n.pid == conn.info.backend_pid


def test_notice_from_a_do_block(conn: psycopg.Connection) -> None:
    notices: list[tuple[str | None, ...]] = []
    # A Diagnostic is only valid inside the handler: copy its fields.
    conn.add_notice_handler(
        lambda d: notices.append(
            (d.severity_nonlocalized, d.sqlstate, d.message_primary, d.message_hint)
        )
    )
    conn.execute(
        "do $$ begin raise notice 'hello %', 42; "
        "raise warning 'careful' using hint = 'a hint'; end $$"
    )
    assert notices == [
        ("NOTICE", "00000", "hello 42", None),
        ("WARNING", "01000", "careful", "a hint"),
    ]


def test_parameter_status_changes(conn: psycopg.Connection) -> None:
    conn.execute("set application_name = 'renamed-by-set'")
    assert conn.info.parameter_status("application_name") == "renamed-by-set"
    conn.execute("set timezone = 'Asia/Tokyo'")
    assert conn.info.parameter_status("TimeZone") == "Asia/Tokyo"
    conn.execute("set datestyle = 'German'")
    assert conn.info.parameter_status("DateStyle") == "German, DMY"
    conn.execute("reset datestyle")


def test_client_encoding_change(conn: psycopg.Connection, shop: TargetDb, table: str) -> None:
    conn.execute("set client_encoding to 'LATIN1'")
    assert conn.info.parameter_status("client_encoding") == "LATIN1"
    assert conn.info.encoding == "iso8859-1"
    conn.execute(f"insert into {table} (id, name) values (%s, %s)", [1, "crème brûlée"])
    assert conn.execute(f"select name, length(name) from {table}").fetchone() == (
        "crème brûlée",
        12,
    )
    # A query whose text is LATIN1-encoded (not UTF-8) is understood by the gateway too.
    assert conn.execute("select 'ÅÉÎ' || %s", ["ø"]).fetchone() == ("ÅÉÎø",)
    conn.execute("set client_encoding to 'UTF8'")
    assert conn.info.encoding == "utf-8"
    assert conn.execute(f"select name from {table}").fetchone() == ("crème brûlée",)
    assert shop.query(f"select name from {table}") == [("crème brûlée",)]


# ---------------------------------------------------------------------------------------------
# Cancel


# psycopg's legacy conn.cancel() calls PQcancel without releasing the GIL: with the gateway on
# a thread of this very process, it would wait forever for a gateway that cannot run. The
# psql test in test_psql.py covers PQcancel from another process.


def test_cancel_safe(gateway: RunningGateway, shop: TargetDb) -> None:
    with psycopg.connect(gateway.dsn("alice"), autocommit=True) as c:
        cancel_when_active(shop.cluster, "select pg_sleep(30)", c.cancel_safe)
        started = time.monotonic()
        with pytest.raises(errors.QueryCanceled):
            c.execute("select pg_sleep(30)")
        assert time.monotonic() - started < 5


def test_cancel_over_tls(gateway: RunningGateway, shop: TargetDb) -> None:
    with psycopg.connect(gateway.dsn("alice", sslmode="require"), autocommit=True) as c:
        assert c.pgconn.ssl_in_use
        cancel_when_active(shop.cluster, "select pg_sleep(30)", c.cancel_safe)
        started = time.monotonic()
        with pytest.raises(errors.QueryCanceled):
            c.execute("select pg_sleep(30)")
        assert time.monotonic() - started < 5


def test_statement_timeout(conn: psycopg.Connection) -> None:
    conn.execute("set statement_timeout = '300ms'")
    with pytest.raises(errors.QueryCanceled):
        conn.execute("select pg_sleep(5)")
    conn.execute("reset statement_timeout")


def test_identifiers_and_composed_sql(conn: psycopg.Connection, table: str) -> None:
    q = sql.SQL("insert into {} ({}) values ({}) returning id").format(
        sql.Identifier(table), sql.Identifier("id"), sql.Placeholder()
    )
    assert conn.execute(q, [77]).fetchone() == (77,)
