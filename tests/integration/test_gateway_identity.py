"""Identity at the gateway: the token is the password, and refused logins reach nothing.

Every refusal is checked three ways: the SQLSTATE, a message that says what was wrong, and a
counting TCP proxy in front of the database that must not have seen a single connection.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import jwt
import psycopg
import pytest

from pgwarden.auth.local_issuer import LocalIssuer
from tests.support import wire
from tests.support.databases import TargetDb, run_psql
from tests.support.fixtures import MakeGateway
from tests.support.gateway import RunningGateway, token_claims
from tests.support.tcpproxy import TcpProxy


@pytest.fixture
def proxy(shop: TargetDb) -> Iterator[TcpProxy]:
    with TcpProxy(shop.cluster.host, shop.cluster.port) as p:
        yield p


@pytest.fixture
def gw(make_gateway: MakeGateway, shop: TargetDb, proxy: TcpProxy) -> RunningGateway:
    """A gateway whose only target ("shop") is reached through the counting proxy."""
    return make_gateway(
        targets={"shop": shop.target(port=proxy.port)},
        identity={"max_token_ttl": "1h"},
    )


def refused(gw: RunningGateway, user: str, password: str, database: str = "shop") -> wire.Msg:
    """Log in with the raw client and return the ErrorResponse that refused it."""
    with wire.RawConn.connect(gw.host, gw.port) as conn:
        with pytest.raises(wire.ServerError) as info:
            conn.login(user=user, database=database, password=password)
        # The connection is closed after the refusal: nothing more is read from it.
        assert conn.closed_by_peer(timeout=5)
    msg = info.value.msg
    assert msg.severity == "FATAL", msg
    if password:
        assert password not in msg.body.decode("utf-8", "replace")
    return msg


def test_valid_token_logs_in_as_the_target_role(gw: RunningGateway, proxy: TcpProxy) -> None:
    with wire.RawConn.connect(gw.host, gw.port) as conn:
        startup = conn.login(user="alice", database="shop", password=gw.token("alice"))
        # The gateway asked for the token in clear text (AuthenticationCleartextPassword).
        assert startup[0].type == b"R" and startup[0].auth_kind == 3
        assert conn.parameters["server_version"]
        assert wire.rows(conn.simple("select current_user, current_catalog")) == [("app", "shop")]
    # the session, and the side connection of the statement's catalog look-up (the casts
    # over a user's function it could run)
    assert proxy.accepted == 2


def test_wrong_subject(gw: RunningGateway, proxy: TcpProxy) -> None:
    msg = refused(gw, "alice", gw.token("bob"))
    assert msg.sqlstate == "28000"
    assert "subject" in msg.message and "bob" in msg.message and "alice" in msg.message
    assert proxy.accepted == 0


@pytest.mark.parametrize(
    "garbage",
    ["not-a-token", "a.b.c", "eyJhbGciOiJFZERTQSJ9.e30.AAAA", "x" * 5000, "ünïcödé"],
    ids=["word", "dots", "bad-signature", "long", "non-ascii"],
)
def test_garbage_password(gw: RunningGateway, proxy: TcpProxy, garbage: str) -> None:
    msg = refused(gw, "alice", garbage)
    assert msg.sqlstate == "28P01"
    assert "token" in msg.message
    assert proxy.accepted == 0


def test_empty_password(gw: RunningGateway, proxy: TcpProxy) -> None:
    msg = refused(gw, "alice", "")
    assert msg.sqlstate in ("28P01", "28000")
    assert "token" in msg.message
    assert proxy.accepted == 0


def test_expired_token(gw: RunningGateway, proxy: TcpProxy) -> None:
    # Signed with the gateway's own key, but issued two hours ago for one hour.
    past = LocalIssuer.load_or_create(gw.config.data_dir, clock=lambda: time.time() - 7200)
    token = past.issue("alice", ttl_seconds=3600)
    msg = refused(gw, "alice", token)
    assert msg.sqlstate == "28P01"
    assert "expired" in msg.message
    assert proxy.accepted == 0


def test_token_from_another_issuer_key(gw: RunningGateway, proxy: TcpProxy, tmp_path: Path) -> None:
    other = LocalIssuer.load_or_create(tmp_path / "other-gateway")
    msg = refused(gw, "alice", other.issue("alice"))
    assert msg.sqlstate == "28P01"
    assert "key" in msg.message
    assert proxy.accepted == 0


def test_token_signed_by_another_key_claiming_our_kid(
    gw: RunningGateway, proxy: TcpProxy, tmp_path: Path
) -> None:
    other = LocalIssuer.load_or_create(tmp_path / "other-gateway")
    claims = token_claims(gw.token("alice"))
    forged = jwt.encode(
        claims,
        other._private_key,
        algorithm="EdDSA",
        headers={"kid": gw.issuer.kid, "typ": "JWT"},
    )
    msg = refused(gw, "alice", forged)
    assert msg.sqlstate == "28P01"
    assert "signature" in msg.message
    assert proxy.accepted == 0


def test_upstream_password_is_not_a_token(
    gw: RunningGateway, proxy: TcpProxy, shop: TargetDb
) -> None:
    assert shop.password
    # Both as the gateway user and as the database role itself.
    for user in ("alice", shop.user):
        msg = refused(gw, user, shop.password)
        assert msg.sqlstate == "28P01"
        assert "token" in msg.message
    assert proxy.accepted == 0


def test_unknown_target(gw: RunningGateway, proxy: TcpProxy) -> None:
    msg = refused(gw, "alice", gw.token("alice"), database="nosuchdb")
    # PostgreSQL says 3D000 for a database that does not exist; 28000 would do as well.
    assert msg.sqlstate in ("3D000", "28000")
    assert "nosuchdb" in msg.message
    assert proxy.accepted == 0


def test_token_lifetime_over_max_token_ttl(gw: RunningGateway, proxy: TcpProxy) -> None:
    msg = refused(gw, "alice", gw.token("alice", ttl=2 * 3600))
    assert msg.sqlstate == "28P01"
    assert "max_token_ttl" in msg.message
    assert proxy.accepted == 0
    # Just under the limit is fine.
    with psycopg.connect(gw.dsn("alice", ttl=3500)) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
    assert proxy.accepted == 2  # the session and the catalog look-up's side connection


def test_no_user_name(gw: RunningGateway, proxy: TcpProxy) -> None:
    with wire.RawConn.connect(gw.host, gw.port) as conn:
        conn.startup({"database": "shop"})
        reply = conn.recv()
        assert reply is not None and reply.type == b"E"
        assert reply.sqlstate == "28000"
        assert "user" in reply.message
    assert proxy.accepted == 0


def test_psql_shows_why_the_login_was_refused(gw: RunningGateway, proxy: TcpProxy) -> None:
    result = run_psql(gw.dsn("alice", password=gw.token("mallory")), "-c", "select 1")
    assert result.returncode == 2
    assert "does not match user" in result.stderr
    assert "mallory" in result.stderr
    assert proxy.accepted == 0


def test_psycopg_refused_login_raises_with_the_reason(gw: RunningGateway, proxy: TcpProxy) -> None:
    with pytest.raises(psycopg.OperationalError, match="token"):
        psycopg.connect(gw.dsn("alice", password="garbage"))
    assert proxy.accepted == 0


# ---------------------------------------------------------------------------------------------
# Expiry during a session


def _wait_until(deadline: float) -> None:
    delay = deadline - time.time()
    if delay > 0:
        time.sleep(delay)


@contextlib.contextmanager
def _session_expiring_in_3s(gw: RunningGateway) -> Iterator[tuple[wire.RawConn, float]]:
    """A raw session whose token expires in 3 s, and that expiry (unix time)."""
    token = gw.token("alice", ttl=3)
    exp = token_claims(token)["exp"]
    assert exp - time.time() > 1.3, "token issued too close to expiry"
    with wire.RawConn.connect(gw.host, gw.port) as conn:
        conn.login(user="alice", database="shop", password=token)
        yield conn, exp


def test_expiry_mid_session_simple_protocol(gw: RunningGateway) -> None:
    with _session_expiring_in_3s(gw) as (conn, exp):
        assert wire.rows(conn.simple("select 1")) == [("1",)]
        _wait_until(exp - 1.0)
        # Issued before expiry, finishes after it: the statement runs to completion.
        reply = conn.simple("select 42 from pg_sleep(2)", timeout=10)
        assert time.time() > exp
        assert wire.rows(reply) == [("42",)]
        assert wire.types(reply)[-2:] == [b"C", b"Z"]
        # The next statement ends the session.
        conn.send(wire.query("select 1"))
        rest = conn.recv_all(timeout=5)
        assert [m.type for m in rest] == [b"E"], rest
        assert rest[0].severity == "FATAL"
        assert rest[0].sqlstate in ("28000", "28P01")
        assert "expired" in rest[0].message
    gw.wait_for_sessions(0)


def test_expiry_while_a_statement_runs_lets_its_reply_through_first(gw: RunningGateway) -> None:
    # The next Query arrives after expiry while the one before it still runs: the relay waits
    # for that reply to reach the client, then ends the session.
    with _session_expiring_in_3s(gw) as (conn, exp):
        _wait_until(exp - 1.0)
        conn.send(wire.query("select 42 from pg_sleep(2)"))
        _wait_until(exp + 0.3)
        conn.send(wire.query("select 1"))
        reply = conn.until_ready(timeout=10)
        assert wire.rows(reply) == [("42",)]
        rest = conn.recv_all(timeout=5)
        assert [m.type for m in rest] == [b"E"], rest
        assert rest[0].severity == "FATAL" and "expired" in rest[0].message
    gw.wait_for_sessions(0)


def test_expiry_mid_session_extended_protocol(gw: RunningGateway) -> None:
    token = gw.token("alice", ttl=3)
    exp = token_claims(token)["exp"]
    with psycopg.connect(gw.dsn("alice", password=token), autocommit=True) as conn:
        assert conn.execute("select %s::int", [7]).fetchone() == (7,)
        _wait_until(exp - 1.0)
        assert conn.execute("select %s::int from pg_sleep(2)", [42]).fetchone() == (42,)
        with pytest.raises(psycopg.OperationalError) as info:
            conn.execute("select %s::int", [1])
        assert "expired" in str(info.value)
        assert info.value.sqlstate in ("28000", "28P01")
        assert conn.closed
