"""Hostile input: whatever arrives on the gateway's port, the gateway refuses it cleanly,
closes the connection, and goes on serving everyone else."""

from __future__ import annotations

import random
import socket
import struct
import time
from collections.abc import Iterator

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pgwarden.guard.sideconn import IDLE_CLOSE
from tests.support import wire
from tests.support.databases import TargetDb, run_psql
from tests.support.fixtures import MakeGateway
from tests.support.gateway import RunningGateway, gateway_config

AUTH_TIMEOUT = 1.0


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, shop: TargetDb) -> Iterator[RunningGateway]:
    """One gateway for the whole module, with a short authentication timeout."""
    cfg = gateway_config(
        tmp_path_factory.mktemp("hostile-gw"),
        targets={"shop": shop.target()},
        auth_timeout=AUTH_TIMEOUT,
    )
    with RunningGateway(cfg) as g:
        g.started_at = shop.query("select now()")[0][0]  # type: ignore[attr-defined]
        yield g


def assert_serving(gw: RunningGateway) -> None:
    with psycopg.connect(gw.dsn("alice"), autocommit=True) as conn:
        assert conn.execute("select 'serving', 6 * 7").fetchone() == ("serving", 42)


def assert_no_leaks(gw: RunningGateway, baseline: int = 0, timeout: float = 10) -> None:
    """Every connection the gateway accepted has been let go."""
    deadline = time.monotonic() + timeout
    while gw.open_connections() > baseline:
        if time.monotonic() > deadline:
            raise AssertionError(f"{gw.open_connections()} connections still open")
        time.sleep(0.05)


def raw(gw: RunningGateway, timeout: float = 5) -> wire.RawConn:
    return wire.RawConn.connect(gw.host, gw.port, timeout=timeout)


def logged_in(gw: RunningGateway) -> wire.RawConn:
    conn = raw(gw)
    conn.login("alice", "shop", gw.token("alice"))
    return conn


def refusal(conn: wire.RawConn, within: float) -> wire.Msg | None:
    """Wait (at most `within` seconds) for the gateway to hang up; return the ErrorResponse
    it sent first, if any. Fails if the connection is still open after `within`."""
    started = time.monotonic()
    assert conn.closed_by_peer(timeout=within), f"still open after {within}s"
    elapsed = time.monotonic() - started
    assert elapsed <= within
    if not conn.buf:
        return None
    msg = conn.recv(timeout=0.1)
    assert msg is not None and msg.type == b"E", conn.buf[:100]
    return msg


# ---------------------------------------------------------------------------------------------
# Before authentication


@pytest.mark.parametrize("seed", range(12))
def test_random_bytes(gw: RunningGateway, seed: int) -> None:
    rnd = random.Random(seed)
    data = rnd.randbytes(rnd.choice([1, 3, 7, 8, 16, 64, 512, 4096, 20000]))
    with raw(gw) as conn:
        try:
            conn.send(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        msg = refusal(conn, within=AUTH_TIMEOUT + 3)
        if msg is not None:
            assert msg.sqlstate in ("08P01", "08006", "28000", "28P01", "3D000")
            assert msg.message.startswith("pgwarden:")


@pytest.mark.parametrize("length", [0x7FFFFFFF, 0x10000, 10_001, 7, 4, 0, -1, -0x80000000], ids=hex)
def test_absurd_startup_lengths(gw: RunningGateway, length: int) -> None:
    with raw(gw) as conn:
        started = time.monotonic()
        conn.send(struct.pack("!ii", length, 196608) + b"user\0alice\0\0")
        msg = refusal(conn, within=AUTH_TIMEOUT + 2)
        # Refused on sight: no waiting for 2 GB that will never come.
        assert time.monotonic() - started < AUTH_TIMEOUT
        assert msg is not None and msg.sqlstate == "08P01"
        assert "length" in msg.message


@pytest.mark.parametrize(
    "version",
    [(2 << 16), (1 << 16), (4 << 16), (1234 << 16) | 5681, (1234 << 16) | 5670, 0],
    ids=lambda v: f"{v >> 16}.{v & 0xFFFF}",
)
def test_unknown_protocol_versions_and_codes(gw: RunningGateway, version: int) -> None:
    with raw(gw) as conn:
        conn.send(wire.startup_packet({"user": "alice", "database": "shop"}, version))
        msg = refusal(conn, within=AUTH_TIMEOUT + 2)
        assert msg is not None and msg.sqlstate == "08P01"
        assert msg.severity == "FATAL"


def test_cancel_request_with_a_bad_key_length(gw: RunningGateway) -> None:
    with raw(gw) as conn:
        conn.send(struct.pack("!iii", 12, 80877102, 1234))  # no secret at all
        refusal(conn, within=AUTH_TIMEOUT + 2)
    assert_serving(gw)


def test_truncated_startup_packet_then_close(gw: RunningGateway) -> None:
    assert_no_leaks(gw)
    packet = wire.startup_packet({"user": "alice", "database": "shop"})
    for cut in (1, 3, 4, 7, len(packet) - 1):
        with raw(gw) as conn:
            conn.send(packet[:cut])
        # Half a password message after a full startup packet, too.
    with raw(gw) as conn:
        conn.send(packet)
        conn.recv()
        conn.send(b"p\x00\x00\x01\x00abc")
    assert_no_leaks(gw)
    assert_serving(gw)


def test_startup_packet_over_10000_bytes(gw: RunningGateway) -> None:
    with raw(gw) as conn:
        try:
            conn.send(
                wire.startup_packet(
                    {"user": "alice", "database": "shop", "application_name": "a" * 20_000}
                )
            )
        except (BrokenPipeError, ConnectionResetError):
            pass
        msg = refusal(conn, within=AUTH_TIMEOUT + 2)
        assert msg is not None and msg.sqlstate == "08P01"


def test_startup_packet_with_many_parameters(gw: RunningGateway) -> None:
    params = {"user": "alice", "database": "shop"} | {f"x{i}": "y" for i in range(2000)}
    with raw(gw) as conn:
        conn.send(wire.startup_packet(params))
        msg = refusal(conn, within=AUTH_TIMEOUT + 2)
        assert msg is not None and msg.sqlstate == "08P01"


def test_malformed_startup_packets(gw: RunningGateway) -> None:
    bodies = [
        b"user\0alice",  # no terminator
        b"user\0alice\0database\0",  # key without value
        b"user\0alice\0user\0bob\0\0",  # duplicate key
        b"\xff\xfe\0\xff\0\0",  # not UTF-8
    ]
    for body in bodies:
        packet = struct.pack("!ii", 8 + len(body), 196608) + body
        with raw(gw) as conn:
            conn.send(packet)
            refusal(conn, within=AUTH_TIMEOUT + 2)
    assert_serving(gw)


def test_password_message_that_is_not_a_password(gw: RunningGateway) -> None:
    with raw(gw) as conn:
        conn.startup({"user": "alice", "database": "shop"})
        auth = conn.recv()
        assert auth is not None and auth.type == b"R"
        conn.send(wire.query("select 1"))  # a Query instead of the password
        msg = refusal(conn, within=AUTH_TIMEOUT + 2)
        assert msg is not None and msg.sqlstate in ("08P01", "28P01")
    with raw(gw) as conn:
        conn.startup({"user": "alice", "database": "shop"})
        conn.recv()
        conn.send(wire.frame(b"p", b"\xff" * 100))  # no NUL, not UTF-8
        msg = refusal(conn, within=AUTH_TIMEOUT + 2)
        assert msg is not None and msg.sqlstate in ("08P01", "28P01")


@pytest.mark.parametrize("value", ["database", "true", "on", "1", "yes"])
def test_replication_connections_are_refused(gw: RunningGateway, value: str) -> None:
    with raw(gw) as conn:
        conn.startup({"user": "alice", "database": "shop", "replication": value})
        msg = refusal(conn, within=AUTH_TIMEOUT + 2)
        assert msg is not None and msg.sqlstate == "42501"
        assert "replication" in msg.message


def test_replication_commands_in_a_normal_session_are_just_sql(gw: RunningGateway) -> None:
    with logged_in(gw) as conn:
        for command in ("IDENTIFY_SYSTEM", "START_REPLICATION 0/0", "BASE_BACKUP"):
            reply = conn.simple(command)
            assert wire.types(reply) == [b"E", b"Z"]
            assert reply[0].sqlstate == "42601"


# ---------------------------------------------------------------------------------------------
# Timeouts and many connections


def test_silent_connection_is_closed_after_the_auth_timeout(gw: RunningGateway) -> None:
    with raw(gw) as conn:
        started = time.monotonic()
        msg = refusal(conn, within=AUTH_TIMEOUT + 3)
        elapsed = time.monotonic() - started
        assert AUTH_TIMEOUT * 0.8 <= elapsed
        if msg is not None:
            assert msg.sqlstate == "08006"
            assert "timed out" in msg.message


def test_connection_silent_after_the_startup_packet(gw: RunningGateway) -> None:
    with raw(gw) as conn:
        conn.startup({"user": "alice", "database": "shop"})
        auth = conn.recv()
        assert auth is not None and auth.type == b"R"
        msg = refusal(conn, within=AUTH_TIMEOUT + 3)
        assert msg is None or msg.sqlstate == "08006"


def test_connection_silent_after_the_tls_handshake(gw: RunningGateway) -> None:
    with raw(gw) as conn:
        assert conn.start_tls()
        assert conn.closed_by_peer(timeout=AUTH_TIMEOUT + 3)


def test_trickling_client_is_cut_off_at_the_auth_timeout(gw: RunningGateway) -> None:
    """The timeout bounds the whole start-up, not each read: one byte every 0.1 s does not
    keep a connection alive."""
    packet = wire.startup_packet(
        {"user": "alice", "database": "shop", "application_name": "x" * 200}
    )
    with raw(gw) as conn:
        started = time.monotonic()
        closed = False
        for byte in packet:
            try:
                conn.send(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            if conn.closed_by_peer(timeout=0.1):
                closed = True
                break
        assert closed
        assert time.monotonic() - started < AUTH_TIMEOUT + 2


def test_200_silent_sockets_do_not_block_a_real_client(make_gateway: MakeGateway) -> None:
    gw = make_gateway(auth_timeout=20)
    socks: list[socket.socket] = []
    try:
        for i in range(200):
            s = socket.create_connection((gw.host, gw.port), timeout=5)
            if i % 2:
                s.sendall(wire.startup_packet({"user": "alice", "database": "shop"})[:5])
            socks.append(s)
        deadline = time.monotonic() + 10
        while gw.open_connections() < 200:
            assert time.monotonic() < deadline, gw.open_connections()
            time.sleep(0.05)
        started = time.monotonic()
        with psycopg.connect(gw.dsn("alice"), autocommit=True) as conn:
            assert conn.execute("select count(*) from generate_series(1, 1000)").fetchone() == (
                1000,
            )
            with conn.pipeline():
                curs = [conn.execute("select %s::int", [i]) for i in range(20)]
            assert [c.fetchone()[0] for c in curs] == list(range(20))  # type: ignore[index]
        result = run_psql(gw.dsn("alice"), "-A", "-t", "-c", "select 'psql too'")
        assert result.returncode == 0 and result.stdout == "psql too\n"
        assert time.monotonic() - started < 10
        # The silent ones are all still there (nothing was dropped to make room).
        assert gw.open_connections() >= 200
    finally:
        for s in socks:
            s.close()
    assert_no_leaks(gw)
    assert_serving(gw)


# ---------------------------------------------------------------------------------------------
# After authentication


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("length 0x7fffffff", b"Q" + struct.pack("!i", 0x7FFFFFFF) + b"select 1"),
        ("bind 0x7fffffff", b"B" + struct.pack("!i", 0x7FFFFFFF)),
        ("length 3", b"Q" + struct.pack("!i", 3)),
        ("negative length", b"Q" + struct.pack("!i", -5)),
        ("unknown type z", wire.frame(b"z", b"whatever")),
        ("unknown type NUL", wire.frame(b"\0")),
        ("server-only RowDescription", wire.frame(b"T", b"\0\0")),
        ("password after login", wire.frame(b"p", wire.cstr("again"))),
        ("startup packet after login", wire.startup_packet({"user": "alice"})),
        ("ssl request after login", wire.ssl_request()),
        ("query without NUL", wire.frame(b"Q", b"select 1")),
        ("query with trailing bytes", wire.frame(b"Q", b"select 1\0junk")),
        ("parse with bad count", wire.frame(b"P", b"\0select 1\0" + struct.pack("!h", 5))),
        ("bind with negative count", wire.frame(b"B", b"\0\0" + struct.pack("!h", -1))),
        ("execute too short", wire.frame(b"E", b"\0\0")),
        ("describe bad kind", wire.frame(b"D", b"X\0")),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_bad_messages_after_login(gw: RunningGateway, name: str, data: bytes) -> None:
    with logged_in(gw) as conn:
        started = time.monotonic()
        try:
            # The padding completes any message whose declared length runs past `data` (the
            # gateway, unlike PostgreSQL, reads a whole message before judging its type).
            conn.send(data + wire.sync() * 8 + b"\0" * 6000)
        except (BrokenPipeError, ConnectionResetError):
            pass
        # Refused (FATAL 08P01) and closed at once, or answered with an error and kept: never
        # forwarded as something else, never a hang.
        assert conn.closed_by_peer(timeout=3) or conn.buf, f"{name}: no reaction"
        assert time.monotonic() - started < 3
        reply = []
        while (msg := conn.recv(timeout=0.5) if conn.buf else None) is not None:
            reply.append(msg)
        errors = wire.errors(reply)
        assert errors, reply
        assert errors[0].sqlstate == "08P01", errors
        assert errors[0].severity == "FATAL"
    assert_serving(gw)


def test_copy_data_of_absurd_length_outside_copy(gw: RunningGateway) -> None:
    with logged_in(gw) as conn:
        conn.send(b"d" + struct.pack("!i", 0x7FFFFFFF) + b"x" * 1000)
        assert conn.closed_by_peer(timeout=10)
    assert_no_leaks(gw)
    assert_serving(gw)


def test_terminate_then_more_bytes(gw: RunningGateway) -> None:
    with logged_in(gw) as conn:
        conn.send(wire.terminate() + wire.query("select 'after terminate'"))
        assert conn.closed_by_peer(timeout=5)
        assert b"after terminate" not in conn.buf


message_part = st.one_of(
    st.binary(max_size=64),
    st.sampled_from(
        [
            wire.query("select 1"),
            wire.parse("", "select $1::int"),
            wire.bind("", "", ["1"]),
            wire.execute(),
            wire.sync(),
            wire.flush(),
            wire.describe(b"P"),
            wire.close(b"S", "x"),
            wire.copy_data(b"x\n"),
            wire.copy_done(),
            wire.copy_fail("f"),
        ]
    ),
    st.tuples(st.sampled_from(b"QPBEDCSHXdcfFpz\0"), st.binary(max_size=32)).map(
        lambda t: wire.frame(bytes([t[0]]), t[1])
    ),
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(parts=st.lists(message_part, min_size=1, max_size=8))
def test_fuzzed_message_streams_after_login(gw: RunningGateway, parts: list[bytes]) -> None:
    with logged_in(gw) as conn:
        try:
            conn.send(b"".join(parts) + wire.sync())
        except (BrokenPipeError, ConnectionResetError):
            return
        # Whatever it makes of the stream, the gateway answers, refuses or hangs up; a FATAL
        # error it raises itself is its own, worded for the client.
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            try:
                msg = conn.recv(timeout=max(0.05, deadline - time.monotonic()))
            except TimeoutError:
                break  # waiting for the rest of a partial message, or for CopyDone
            if msg is None:
                break
            if msg.type == b"E" and msg.severity == "FATAL":
                assert msg.message.startswith("pgwarden:") or msg.sqlstate.startswith("08")
    assert gw.alive


def test_gateway_alive_and_serving_after_all_that(gw: RunningGateway, shop: TargetDb) -> None:
    assert gw.alive
    assert_no_leaks(gw)
    assert gw.sessions() == []
    for _ in range(3):
        assert_serving(gw)
    # No upstream connection opened during this module was left behind. The gateway's side
    # connection (catalog look-ups: `6 * 7` names an operator) closes once unused for
    # IDLE_CLOSE seconds, so it may still be there at first.
    deadline = time.monotonic() + IDLE_CLOSE + 5
    while True:
        leftover = shop.query(
            "select count(*) from pg_stat_activity where usename = %s and backend_start >= %s",
            [shop.user, gw.started_at],  # type: ignore[attr-defined]
        )
        if leftover == [(0,)] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert leftover == [(0,)]
