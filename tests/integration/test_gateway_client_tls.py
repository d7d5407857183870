"""The client side of the gateway: TLS (self-signed or configured), tls.require,
GSSENCRequest, and bytes smuggled in before the TLS handshake."""

from __future__ import annotations

import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path

import psycopg
import pytest

from tests.support import wire
from tests.support.certs import make_certs
from tests.support.databases import TargetDb, client_env, pg_program, run_psql, wait_for_active
from tests.support.fixtures import MakeGateway
from tests.support.gateway import RunningGateway
from tests.support.tcpproxy import TcpProxy


def tls_in_use(conn: psycopg.Connection) -> bool:
    return bool(conn.pgconn.ssl_in_use)


def test_sslmode_require_with_the_generated_certificate(gateway: RunningGateway) -> None:
    cert = gateway.config.data_dir / "tls" / "gateway.crt"
    with psycopg.connect(gateway.dsn("alice", sslmode="require")) as conn:
        assert tls_in_use(conn)
        assert conn.execute("select current_user").fetchone() == ("app",)
        [session] = [s for s in gateway.sessions() if s.info.tls]
        assert session.info.identity.subject == "alice"
    assert cert.is_file()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_verify_full_against_the_generated_certificate(gateway: RunningGateway, host: str) -> None:
    cert = gateway.config.data_dir / "tls" / "gateway.crt"
    dsn = gateway.dsn("alice", sslmode="verify-full", sslrootcert=str(cert))
    dsn = dsn.replace("host=127.0.0.1", f"host={host}")
    with psycopg.connect(dsn) as conn:
        assert tls_in_use(conn)
        assert conn.execute("select 1").fetchone() == (1,)


def test_configured_certificate(make_gateway: MakeGateway, tmp_path: Path) -> None:
    files = make_certs(tmp_path / "gw-tls", ["localhost", "127.0.0.1"])
    gw = make_gateway(tls={"cert": str(files.cert), "key": str(files.key)})
    dsn = gw.dsn("alice", sslmode="verify-full", sslrootcert=str(files.ca_cert))
    with psycopg.connect(dsn) as conn:
        assert tls_in_use(conn)
        assert conn.execute("select 2").fetchone() == (2,)
    # A client that trusts another CA refuses the gateway.
    other = make_certs(tmp_path / "other", ["localhost"])
    with pytest.raises(psycopg.OperationalError, match="certificate"):
        psycopg.connect(gw.dsn("alice", sslmode="verify-full", sslrootcert=str(other.ca_cert)))


def test_psql_over_tls(gateway: RunningGateway) -> None:
    result = run_psql(
        gateway.dsn("alice", sslmode="require"),
        "-A",
        "-t",
        "-c",
        "select 'tls-ok'",
        "-c",
        "\\conninfo",
    )
    assert result.returncode == 0, result.stderr
    assert "tls-ok" in result.stdout
    assert "SSL connection" in result.stdout


def test_tls_require_true_refuses_plaintext(make_gateway: MakeGateway, shop: TargetDb) -> None:
    with TcpProxy(shop.cluster.host, shop.cluster.port) as proxy:
        gw = make_gateway(targets={"shop": shop.target(port=proxy.port)}, tls={"require": True})
        with wire.RawConn.connect(gw.host, gw.port) as conn:
            with pytest.raises(wire.ServerError) as info:
                conn.login("alice", "shop", gw.token("alice"))
        assert info.value.sqlstate == "28000"
        assert "TLS" in info.value.message
        assert proxy.accepted == 0
        with pytest.raises(psycopg.OperationalError, match="TLS"):
            psycopg.connect(gw.dsn("alice", sslmode="disable"))
        assert proxy.accepted == 0
        # libpq's default (prefer) and require both work.
        for sslmode in ("prefer", "require"):
            with psycopg.connect(gw.dsn("alice", sslmode=sslmode)) as conn:
                assert tls_in_use(conn)
                assert conn.execute("select 3").fetchone() == (3,)
        # the two sessions, and the side connection of the first statement's catalog look-up
        assert proxy.accepted == 3


def test_tls_require_false_and_auto_allow_loopback_plaintext(make_gateway: MakeGateway) -> None:
    for require in (False, "auto"):
        gw = make_gateway(tls={"require": require})
        with psycopg.connect(gw.dsn("alice", sslmode="disable")) as conn:
            assert not tls_in_use(conn)
            assert conn.execute("select 4").fetchone() == (4,)


def test_gssenc_request_is_answered_n_and_the_connection_kept(gateway: RunningGateway) -> None:
    with wire.RawConn.connect(gateway.host, gateway.port) as conn:
        conn.send(wire.gssenc_request())
        assert conn.recv_bytes(1) == b"N"
        conn.login("alice", "shop", gateway.token("alice"))
        assert wire.rows(conn.simple("select 'after gss'")) == [("after gss",)]


def test_gssenc_then_ssl_request(gateway: RunningGateway) -> None:
    """libpq with gssencmode=prefer and no Kerberos ticket: GSSENCRequest, N, SSLRequest."""
    with wire.RawConn.connect(gateway.host, gateway.port) as conn:
        conn.send(wire.gssenc_request())
        assert conn.recv_bytes(1) == b"N"
        assert conn.start_tls()
        assert isinstance(conn.sock, ssl.SSLSocket)
        conn.login("alice", "shop", gateway.token("alice"))
        assert wire.rows(conn.simple("select 'gss then tls'")) == [("gss then tls",)]


def test_libpq_gssencmode_prefer(gateway: RunningGateway) -> None:
    with psycopg.connect(gateway.dsn("alice", gssencmode="prefer", sslmode="prefer")) as conn:
        assert conn.execute("select 5").fetchone() == (5,)
        assert tls_in_use(conn)


def test_bytes_after_ssl_request_close_the_connection(gateway: RunningGateway) -> None:
    """CVE-2021-23214: a startup packet injected right after SSLRequest, before the handshake,
    must never be taken as if it had come through TLS."""
    gateway.wait_for_sessions(0)
    injected = wire.startup_packet({"user": "alice", "database": "shop"})
    with wire.RawConn.connect(gateway.host, gateway.port) as conn:
        conn.send(wire.ssl_request() + injected)
        # The gateway hangs up without starting the handshake ('S') ...
        assert conn.closed_by_peer(timeout=5)
        assert not conn.buf.startswith(b"S")
        # ... saying why, if it says anything.
        if conn.buf:
            reply = conn.recv(timeout=1)
            assert reply is not None and reply.type == b"E"
            assert reply.sqlstate == "08P01"
            assert "TLS" in reply.message
    assert gateway.sessions() == []


def test_repeated_ssl_request_inside_tls_is_refused(gateway: RunningGateway) -> None:
    with wire.RawConn.connect(gateway.host, gateway.port) as conn:
        assert conn.start_tls()
        conn.send(wire.ssl_request())
        assert conn.closed_by_peer(timeout=5)


def test_tls_handshake_garbage(gateway: RunningGateway) -> None:
    """An SSLRequest followed by something that is not a TLS ClientHello."""
    with socket.create_connection((gateway.host, gateway.port), timeout=5) as sock:
        sock.sendall(wire.ssl_request())
        assert sock.recv(1) == b"S"
        sock.sendall(b"\x16\x03\x01\x00\x05hello" + b"\x00" * 64)
        sock.settimeout(5)
        data = b""
        try:
            while chunk := sock.recv(4096):
                data += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    # Still serving.
    with psycopg.connect(gateway.dsn("alice")) as conn:
        assert conn.execute("select 6").fetchone() == (6,)


def test_cancel_from_psql_when_tls_is_required(make_gateway: MakeGateway, shop: TargetDb) -> None:
    """psql 15 sends its CancelRequest in plaintext even on a TLS session (PQcancel): the
    gateway must still honour it when tls.require is true."""
    gw = make_gateway(tls={"require": True})
    proc = subprocess.Popen(
        [pg_program("psql"), "-X", "-d", gw.dsn("alice", sslmode="require"), "-c",
         "select pg_sleep(30)"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=client_env(),
    )  # fmt: skip
    try:
        wait_for_active(shop.cluster, "select pg_sleep(30)")
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert time.monotonic() - started < 5
    assert "canceling statement due to user request" in stderr
