"""The wire protocol through the gateway, message by message, with a raw client."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator

import psycopg
import pytest
from psycopg.pq import TransactionStatus

from tests.support import wire
from tests.support.databases import TargetDb, wait_for_active
from tests.support.gateway import RunningGateway

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@pytest.fixture
def conn(gateway: RunningGateway) -> Iterator[wire.RawConn]:
    with wire.RawConn.connect(gateway.host, gateway.port) as c:
        c.login("alice", "shop", gateway.token("alice"))
        yield c
        c.terminate()


@pytest.fixture
def table(shop: TargetDb, unique: Callable[[str], str]) -> Iterator[str]:
    name = unique("proto")
    shop.execute(
        f"create table {name} (id int primary key, note text); alter table {name} owner to app;"
    )
    yield name
    shop.execute(f"set lock_timeout = '10s'; drop table if exists {name}")


def count(shop: TargetDb, table: str) -> int:
    return int(shop.query(f"select count(*) from {table}")[0][0])


def session_of(gateway: RunningGateway, conn: wire.RawConn):
    for s in gateway.sessions():
        if s.pid == conn.pid:
            return s
    raise AssertionError("no such session")


# ---------------------------------------------------------------------------------------------
# Extended protocol, pipelines and errors


def test_error_in_pipeline_skips_to_sync(conn: wire.RawConn, shop: TargetDb, table: str) -> None:
    conn.send(
        wire.extended(f"insert into {table} values (1, 'a')"),
        wire.extended(f"insert into {table} values (2, 'b')"),
        wire.extended("select 1/g from generate_series(0, 0) g"),
        wire.extended(f"insert into {table} values (3, 'c')"),
        wire.sync(),
    )
    reply = conn.until_ready()
    assert wire.types(reply) == [
        b"1", b"2", b"n", b"C",
        b"1", b"2", b"n", b"C",
        b"1", b"2", b"T", b"E",
        b"Z",
    ]  # fmt: skip
    assert reply[-2].sqlstate == "22012"
    assert reply[-1].status == b"I"
    # Nothing more arrives (exactly one ReadyForQuery) ...
    with pytest.raises(TimeoutError):
        conn.recv(timeout=0.5)
    # ... and the implicit transaction did not commit the first two inserts.
    assert count(shop, table) == 0
    assert wire.rows(conn.simple(f"select count(*) from {table}")) == [("0",)]


def test_error_in_pipeline_with_several_syncs(
    conn: wire.RawConn, shop: TargetDb, table: str
) -> None:
    conn.send(
        wire.extended(f"insert into {table} values (1, 'kept')"),
        wire.sync(),
        wire.extended(f"insert into {table} values (2, 'lost')"),
        wire.extended("select nosuchcolumn"),
        wire.extended(f"insert into {table} values (3, 'skipped')"),
        wire.sync(),
        wire.extended(f"insert into {table} values (4, 'kept')"),
        wire.sync(),
    )
    first, second, third = conn.until_ready(), conn.until_ready(), conn.until_ready()
    assert wire.types(first) == [b"1", b"2", b"n", b"C", b"Z"]
    assert wire.types(second) == [b"1", b"2", b"n", b"C", b"E", b"Z"]
    assert second[-2].sqlstate == "42703"
    assert wire.types(third) == [b"1", b"2", b"n", b"C", b"Z"]
    assert shop.query(f"select id, note from {table} order by id") == [(1, "kept"), (4, "kept")]


def test_bind_of_a_statement_parsed_before_a_sync_waits_for_its_parse(
    conn: wire.RawConn,
) -> None:
    # The Bind is in the next Sync segment: the relay waits for ParseComplete before it
    # knows what "s1" means (its confirmation wakes the wait), in one packet with the Parse.
    conn.send(
        wire.parse("s1", "select 41 + 1"),
        wire.sync(),
        wire.bind("", "s1"),
        wire.execute(),
        wire.sync(),
    )
    first, second = conn.until_ready(), conn.until_ready()
    assert wire.types(first) == [b"1", b"Z"]
    assert wire.types(second) == [b"2", b"D", b"C", b"Z"]
    assert wire.rows(second) == [("42",)]


def test_fifty_statement_pipeline(conn: wire.RawConn, shop: TargetDb, table: str) -> None:
    chunks = [wire.parse("ins", f"insert into {table} values ($1, $2)")]
    for i in range(50):
        chunks += [wire.bind("", "ins", [str(i), f"row {i}"]), wire.execute()]
    chunks.append(wire.sync())
    conn.send(*chunks)
    reply = conn.until_ready()
    assert wire.types(reply) == [b"1"] + [b"2", b"C"] * 50 + [b"Z"]
    assert all(m.tag == "INSERT 0 1" for m in reply if m.type == b"C")
    assert count(shop, table) == 50


def test_portal_suspended_with_row_limits(conn: wire.RawConn) -> None:
    conn.send(
        wire.parse("s10", "select g from generate_series(1, 10) g"),
        wire.bind("p", "s10"),
        wire.execute("p", 3),
        wire.execute("p", 3),
        wire.execute("p", 0),
        wire.sync(),
    )
    reply = conn.until_ready()
    assert wire.types(reply) == [b"1", b"2"] + [b"D"] * 3 + [b"s"] + [b"D"] * 3 + [b"s"] + [
        b"D"
    ] * 4 + [b"C", b"Z"]
    assert [r[0] for r in wire.rows(reply)] == [str(i) for i in range(1, 11)]
    assert reply[-2].tag == "SELECT 4"


def test_portal_suspended_inside_transaction_across_syncs(conn: wire.RawConn) -> None:
    assert wire.types(conn.simple("begin"))[-1] == b"Z"
    conn.send(wire.parse("", "select g from generate_series(1, 5) g"), wire.bind("cur", ""))
    conn.send(wire.execute("cur", 2), wire.sync())
    first = conn.until_ready()
    assert wire.types(first) == [b"1", b"2", b"D", b"D", b"s", b"Z"]
    assert first[-1].status == b"T"
    conn.send(wire.execute("cur", 2), wire.sync())
    assert wire.types(conn.until_ready()) == [b"D", b"D", b"s", b"Z"]
    conn.send(wire.execute("cur", 0), wire.sync())
    last = conn.until_ready()
    assert wire.rows(last) == [("5",)]
    assert last[-2].tag == "SELECT 1"
    assert conn.simple("commit")[-1].status == b"I"


def test_describe_statement_and_portal(conn: wire.RawConn) -> None:
    conn.send(
        wire.parse("d1", "select $1::int + 1 as plus, 'x'::text as t"),
        wire.describe(b"S", "d1"),
        wire.bind("dp", "d1", ["41"]),
        wire.describe(b"P", "dp"),
        wire.execute("dp"),
        wire.close(b"P", "dp"),
        wire.close(b"S", "d1"),
        wire.sync(),
    )
    reply = conn.until_ready()
    assert wire.types(reply) == [b"1", b"t", b"T", b"2", b"T", b"D", b"C", b"3", b"3", b"Z"]
    assert reply[2].columns == (("plus", 23), ("t", 25))
    assert wire.rows(reply) == [("42", "x")]


def test_flush_delivers_results_before_sync(conn: wire.RawConn) -> None:
    conn.send(wire.extended("select 'flushed'"), wire.flush())
    reply = conn.recv_until([b"C"])
    assert wire.rows(reply) == [("flushed",)]
    conn.send(wire.sync())
    assert wire.types(conn.until_ready()) == [b"Z"]


def test_empty_query(conn: wire.RawConn) -> None:
    assert wire.types(conn.simple("")) == [b"I", b"Z"]
    assert wire.types(conn.simple(" ; ")) == [b"I", b"Z"]


def test_copy_through_extended_protocol(conn: wire.RawConn, shop: TargetDb, table: str) -> None:
    # A Sync pipelined after the Execute would be ignored by the server in COPY IN mode:
    # as libpq does, send it after CopyDone.
    conn.send(wire.extended(f"copy {table} from stdin"), wire.flush())
    head = conn.recv_until([b"G"])
    assert wire.types(head) == [b"1", b"2", b"n", b"G"]
    conn.send(
        wire.copy_data(b"1\tone\n2\ttwo\n"),
        wire.copy_data(b"3\tthree\n"),
        wire.copy_done(),
        wire.sync(),
    )
    tail = conn.until_ready()
    assert wire.types(tail) == [b"C", b"Z"]
    assert tail[0].tag == "COPY 3"
    conn.send(wire.extended(f"copy (select * from {table} order by id) to stdout"), wire.sync())
    out = conn.until_ready()
    assert wire.types(out) == [b"1", b"2", b"n", b"H", b"d", b"d", b"d", b"c", b"C", b"Z"]
    assert b"".join(m.body for m in out if m.type == b"d") == b"1\tone\n2\ttwo\n3\tthree\n"


def test_copy_fail(conn: wire.RawConn, shop: TargetDb, table: str) -> None:
    conn.send(wire.query(f"copy {table} from stdin"))
    assert wire.types(conn.recv_until([b"G"])) == [b"G"]
    conn.send(wire.copy_data(b"1\tone\n"), wire.copy_fail("client changed its mind"))
    reply = conn.until_ready()
    assert wire.types(reply) == [b"E", b"Z"]
    assert reply[0].sqlstate == "57014"
    assert "client changed its mind" in reply[0].message
    assert count(shop, table) == 0


# ---------------------------------------------------------------------------------------------
# Transaction status


def test_transaction_status_tracking(gateway: RunningGateway, conn: wire.RawConn) -> None:
    session = session_of(gateway, conn)
    assert conn.simple("select 1")[-1].status == b"I"
    assert session.info.tx_status == b"I"
    assert conn.simple("begin")[-1].status == b"T"
    assert session.info.tx_status == b"T"
    failed = conn.simple("select 1/0")
    assert failed[-1].status == b"E"
    assert session.info.tx_status == b"E"
    blocked = conn.simple("select 1")
    assert wire.errors(blocked)[0].sqlstate == "25P02"
    assert conn.simple("rollback")[-1].status == b"I"
    assert session.info.tx_status == b"I"
    # Extended protocol: BEGIN through Parse/Bind/Execute, status from ReadyForQuery.
    conn.send(wire.extended("begin"), wire.sync())
    assert conn.until_ready()[-1].status == b"T"
    assert session.info.tx_status == b"T"
    conn.send(wire.extended("commit"), wire.sync())
    assert conn.until_ready()[-1].status == b"I"
    assert session.info.tx_status == b"I"


def test_psycopg_transaction_status(gateway: RunningGateway) -> None:
    with psycopg.connect(gateway.dsn("alice")) as c:
        assert c.info.transaction_status == TransactionStatus.IDLE
        c.execute("select 1")
        assert c.info.transaction_status == TransactionStatus.INTRANS
        with pytest.raises(psycopg.errors.DivisionByZero):
            c.execute("select 1/0")
        assert c.info.transaction_status == TransactionStatus.INERROR
        c.rollback()
        assert c.info.transaction_status == TransactionStatus.IDLE


# ---------------------------------------------------------------------------------------------
# FunctionCall


def test_function_call_message_is_refused(
    conn: wire.RawConn, shop: TargetDb, unique: Callable[[str], str]
) -> None:
    seq = unique("seq")
    shop.execute(f"create sequence {seq}; alter sequence {seq} owner to app;")
    try:
        nextval_oid = int(shop.query("select 'nextval(regclass)'::regprocedure::oid")[0][0])
        conn.send(wire.function_call(nextval_oid, [seq.encode()]))
        reply = conn.until_ready()
        assert wire.types(reply) == [b"E", b"Z"]
        assert reply[0].sqlstate == "42501"
        assert reply[0].message.startswith("pgwarden:")
        assert "FunctionCall" in reply[0].message
        # The function never ran, and the session goes on.
        assert shop.query(f"select is_called from {seq}") == [(False,)]
        assert wire.rows(conn.simple("select 'still here'")) == [("still here",)]
    finally:
        shop.execute(f"drop sequence if exists {seq}")


# ---------------------------------------------------------------------------------------------
# SHOW pgwarden.session_id


def _session_id(conn: wire.RawConn, sql: str = "show pgwarden.session_id") -> str:
    values = [r[0] for r in wire.rows(conn.simple(sql))]
    assert len(values) == 1, values
    assert values[0] is not None
    return values[0]


@pytest.mark.parametrize(
    "sql",
    [
        "show pgwarden.session_id",
        "SHOW pgwarden.session_id;",
        '  show "pgwarden.session_id"  ',
        "select current_setting('pgwarden.session_id')",
    ],
)
def test_show_session_id(gateway: RunningGateway, conn: wire.RawConn, sql: str) -> None:
    sid = _session_id(conn, sql)
    assert UUID.match(sid), sid
    assert sid == session_of(gateway, conn).info.id


def test_show_session_id_within_a_multi_statement_query(conn: wire.RawConn) -> None:
    alone = _session_id(conn)
    reply = conn.simple("select 1 as one; show pgwarden.session_id; select 2 as two")
    assert wire.rows(reply) == [("1",), (alone,), ("2",)]
    assert [m.tag for m in reply if m.type == b"C"] == ["SELECT 1", "SHOW", "SELECT 1"]


def test_show_session_id_extended_protocol(conn: wire.RawConn) -> None:
    alone = _session_id(conn)
    conn.send(wire.extended("show pgwarden.session_id"), wire.sync())
    assert wire.rows(conn.until_ready()) == [(alone,)]


def test_session_ids_differ_between_sessions(gateway: RunningGateway) -> None:
    ids = []
    for _ in range(2):
        with psycopg.connect(gateway.dsn("alice"), autocommit=True) as c:
            row = c.execute("show pgwarden.session_id").fetchone()
            assert row is not None
            ids.append(row[0])
    assert all(UUID.match(i) for i in ids)
    assert ids[0] != ids[1]


def test_session_id_cannot_be_changed_by_the_client(conn: wire.RawConn) -> None:
    sid = _session_id(conn)
    conn.simple("set pgwarden.session_id = 'forged'")
    assert _session_id(conn) == sid
    assert _session_id(conn, "select current_setting('pgwarden.session_id')") == sid
    reply = conn.simple("select 1; show pgwarden.session_id")
    assert wire.rows(reply) == [("1",), (sid,)]


# ---------------------------------------------------------------------------------------------
# Cancel


def _run_in_thread(fn: Callable[[], object]) -> tuple[threading.Thread, list[object]]:
    box: list[object] = []

    def run() -> None:
        try:
            box.append(fn())
        except BaseException as exc:
            box.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, box


def test_cancel_request_with_the_right_key(
    gateway: RunningGateway, conn: wire.RawConn, shop: TargetDb
) -> None:
    started = time.monotonic()
    conn.send(wire.query("select pg_sleep(30)"))
    wait_for_active(shop.cluster, "select pg_sleep(30)")
    with wire.RawConn.connect(gateway.host, gateway.port) as canceller:
        canceller.send(wire.cancel_request(conn.pid, conn.secret))
        assert canceller.closed_by_peer(timeout=5)
        assert canceller.buf == b""
    reply = conn.until_ready(timeout=10)
    assert time.monotonic() - started < 5
    assert wire.errors(reply)[0].sqlstate == "57014"
    assert wire.rows(conn.simple("select 'after cancel'")) == [("after cancel",)]


def test_cancel_request_with_a_wrong_key_is_dropped_silently(
    gateway: RunningGateway, conn: wire.RawConn, shop: TargetDb
) -> None:
    conn.send(wire.query("select 'slept' from pg_sleep(1)"))
    wait_for_active(shop.cluster, "select 'slept' from pg_sleep(1)")
    wrong_secret = bytes(b ^ 0xFF for b in conn.secret)
    for pid, secret in ((conn.pid, wrong_secret), (conn.pid ^ 0x5A5A, conn.secret)):
        with wire.RawConn.connect(gateway.host, gateway.port) as canceller:
            canceller.send(wire.cancel_request(pid, secret))
            assert canceller.closed_by_peer(timeout=5)
            assert canceller.buf == b""  # nothing said
    reply = conn.until_ready(timeout=10)
    assert wire.errors(reply) == []
    assert wire.rows(reply) == [("slept",)]


# ---------------------------------------------------------------------------------------------
# Protocol version negotiation


def test_protocol_3_2_is_negotiated_down(gateway: RunningGateway) -> None:
    with wire.RawConn.connect(gateway.host, gateway.port) as c:
        c.startup(
            {"user": "alice", "database": "shop", "_pq_.unknown_ext": "x"}, version=(3 << 16) | 2
        )
        # As PostgreSQL does: NegotiateProtocolVersion first, carrying the whole version 3.0.
        negotiate = c.recv()
        assert negotiate is not None and negotiate.type == b"v"
        assert negotiate.body[:4] == (196608).to_bytes(4, "big")
        assert b"_pq_.unknown_ext" in negotiate.body
        auth = c.recv()
        assert auth is not None and auth.type == b"R" and auth.auth_kind == 3
        c.send(wire.frame(b"p", wire.cstr(gateway.token("alice"))))
        startup = c.until_ready()
        assert not [m for m in startup if m.type == b"v"]
        key = [m for m in startup if m.type == b"K"]
        assert len(key) == 1 and len(key[0].body) == 8  # a 3.0 key: pid + 4-byte secret
        assert wire.rows(c.simple("select 'v3.0'")) == [("v3.0",)]


# ---------------------------------------------------------------------------------------------
# Large messages from the client


def test_large_query_text(conn: wire.RawConn) -> None:
    big = "x" * 20_000
    assert wire.rows(conn.simple(f"select length('{big}')")) == [("20000",)]


def test_large_bind_parameter(gateway: RunningGateway, shop: TargetDb, table: str) -> None:
    payload = "y" * 100_000
    with psycopg.connect(gateway.dsn("alice"), autocommit=True) as c:
        c.execute(f"insert into {table} values (%s, %s)", [1, payload])
        assert c.execute(f"select length(note) from {table}").fetchone() == (100_000,)
    assert shop.query(f"select length(note) from {table}") == [(100_000,)]


def test_large_copy_data_and_results(gateway: RunningGateway, shop: TargetDb, table: str) -> None:
    """CopyData (streamed by the gateway) and big DataRows are not limited."""
    with psycopg.connect(gateway.dsn("alice"), autocommit=True) as c:
        with c.cursor().copy(f"copy {table} from stdin") as copy:
            copy.write_row((1, "z" * 300_000))
        row = c.execute(f"select note from {table}").fetchone()
        assert row is not None and row[0] == "z" * 300_000
        big = c.execute("select repeat('q', 2000000)").fetchone()
        assert big is not None and len(big[0]) == 2_000_000


# ---------------------------------------------------------------------------------------------
# Encodings


@pytest.mark.parametrize("encoding", ["SJIS", "EUC_JP"])
def test_unsupported_client_encoding_is_refused_with_a_message(
    gateway: RunningGateway, encoding: str
) -> None:
    with wire.RawConn.connect(gateway.host, gateway.port) as c:
        c.login("alice", "shop", gateway.token("alice"))
        # Refused before it reaches the server (so nothing can be sent in the new encoding
        # before the gateway knows of it); the session goes on in UTF-8.
        c.send(wire.query(f"set client_encoding to '{encoding}'"))
        replies = c.until_ready()
        errs = wire.errors(replies)
        assert errs, replies
        assert errs[0].sqlstate in ("22023", "0A000", "42501")
        assert "client_encoding" in errs[0].message or encoding in errs[0].message
        assert wire.rows(c.simple("show client_encoding")) == [("UTF8",)]


def test_unsupported_client_encoding_at_startup_is_refused(gateway: RunningGateway) -> None:
    with wire.RawConn.connect(gateway.host, gateway.port) as c:
        with pytest.raises(wire.ServerError) as info:
            c.login("alice", "shop", gateway.token("alice"), {"client_encoding": "SJIS"})
    assert info.value.sqlstate == "22023"
    assert "SJIS" in info.value.message


def test_supported_client_encoding_at_startup(gateway: RunningGateway) -> None:
    with wire.RawConn.connect(gateway.host, gateway.port) as c:
        c.login("alice", "shop", gateway.token("alice"), {"client_encoding": "LATIN1"})
        assert c.parameters["client_encoding"] == "LATIN1"
        c.send(wire.frame(b"Q", "select 'é' || chr(233)".encode("latin-1") + b"\0"))
        reply = c.until_ready()
        assert [m.values for m in reply if m.type == b"D"] == [("éé".encode("latin-1"),)]


# ---------------------------------------------------------------------------------------------
# Connection limit


def test_max_connections(make_gateway) -> None:
    gw = make_gateway(max_connections=3, auth_timeout=10)
    held = [wire.RawConn.connect(gw.host, gw.port) for _ in range(3)]
    try:
        deadline = time.monotonic() + 5
        while gw.open_connections() < 3:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        with wire.RawConn.connect(gw.host, gw.port) as extra:
            with pytest.raises(wire.ServerError) as info:
                extra.login("alice", "shop", gw.token("alice"))
        assert info.value.sqlstate == "53300"
        assert "too many connections" in info.value.message
    finally:
        for c in held:
            c.close()
    deadline = time.monotonic() + 5
    while gw.open_connections() > 0:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    with psycopg.connect(gw.dsn("alice")) as c:
        assert c.execute("select 1").fetchone() == (1,)


def test_rows_of_an_extended_execute_are_checked_as_a_run(gateway: RunningGateway) -> None:
    # libpq's extended protocol (Parse, Bind, Describe portal, Execute, Sync): the columns
    # come from the Describe, so the rows are pre-checked as one run, as in a simple query,
    # rather than decoded and masked one message at a time.
    # Counted by the session's reader of the server's bytes: the relay, the guard, the masking
    # and the reader are compiled and call each other directly, so patches are not seen.
    def statements(c: psycopg.Connection[tuple[object, ...]]) -> tuple[object, object]:
        rows = c.execute(
            "select g, 'note ' || g from generate_series(1, %s) g", (3,), prepare=False
        ).fetchall()
        masked = c.execute("select %s::text || '@example.com'", ("someone",)).fetchone()
        return rows, masked

    with psycopg.connect(gateway.dsn("alice"), autocommit=True) as c:
        row = c.execute("show pgwarden.session_id").fetchone()
        assert row is not None
        server = gateway.server
        assert server is not None
        reader = server.gateway.sessions[row[0]].upstream.parser
        before = reader.run_messages
        rows, masked = statements(c)
        in_runs = reader.run_messages - before
    assert isinstance(masked, tuple)
    assert rows == [(1, "note 1"), (2, "note 2"), (3, "note 3")]
    assert masked is not None and "someone@example.com" not in masked[0]  # still masked
    assert in_runs == 4  # every row of both results: none went one message at a time
