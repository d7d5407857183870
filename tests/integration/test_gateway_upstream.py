"""The gateway's side towards the database: authentication methods, TLS per sslmode,
start-up parameters, and the upstream password never reaching the client."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgwarden.devcluster import DevCluster
from tests.support import wire
from tests.support.certs import make_certs
from tests.support.databases import TargetDb, cancel_when_active
from tests.support.fixtures import MakeGateway
from tests.support.gateway import RunningGateway
from tests.support.tcpproxy import TcpProxy


def whoami(gw: RunningGateway, dbname: str) -> tuple[Any, ...] | None:
    with psycopg.connect(gw.dsn("alice", dbname=dbname), autocommit=True) as conn:
        return conn.execute(
            "select current_user, current_database(), "
            "coalesce((select ssl from pg_stat_ssl where pid = pg_backend_pid()), false)"
        ).fetchone()


def login_error(gw: RunningGateway, dbname: str = "shop", **params: str) -> wire.Msg:
    with wire.RawConn.connect(gw.host, gw.port) as conn:
        with pytest.raises(wire.ServerError) as info:
            conn.login("alice", dbname, gw.token("alice"), params)
        assert conn.closed_by_peer(timeout=5)
    return info.value.msg


# ---------------------------------------------------------------------------------------------
# Authentication methods


def test_scram_sha_256_target(gateway: RunningGateway, shop: TargetDb) -> None:
    assert shop.auth == "scram-sha-256"
    assert whoami(gateway, "shop") == ("app", "shop", False)


def test_md5_target(gateway: RunningGateway, shop_md5: TargetDb) -> None:
    # The role's password is stored as an MD5 hash and pg_hba says md5: the real md5 exchange.
    stored = shop_md5.query("select rolpassword from pg_authid where rolname = %s", [shop_md5.user])
    assert stored[0][0].startswith("md5")
    assert whoami(gateway, "shop_md5") == ("app_md5", "shop", False)


def test_trust_target(gateway: RunningGateway, shop_trust: TargetDb) -> None:
    assert whoami(gateway, "shop_trust") == ("app_trust", "shop", False)


def test_wrong_upstream_password_is_refused_without_revealing_it(
    make_gateway: MakeGateway, shop: TargetDb
) -> None:
    wrong = "Wr0ng-upstream-s3cret-4711"
    gw = make_gateway(targets={"shop": shop.target(password=wrong)})
    msg = login_error(gw)
    assert msg.severity == "FATAL"
    assert msg.sqlstate == "28P01"  # the target's own verdict, passed on
    assert "shop" in msg.message
    body = msg.body.decode("utf-8", "replace")
    assert wrong not in body
    assert shop.password is not None and shop.password not in body


def test_unreachable_target(make_gateway: MakeGateway, shop: TargetDb) -> None:
    with TcpProxy("127.0.0.1", shop.cluster.port) as proxy:
        proxy.refuse = True  # accepts and hangs up at once
        gw = make_gateway(targets={"shop": shop.target(port=proxy.port)})
        msg = login_error(gw)
    assert msg.severity == "FATAL"
    assert msg.sqlstate.startswith("08")
    assert "shop" in msg.message


def test_upstream_password_never_reaches_the_client(
    gateway: RunningGateway, shop: TargetDb, shop_md5: TargetDb
) -> None:
    """Everything a client can receive in a varied session is free of the password."""
    secrets = [p for p in (shop.password, shop_md5.password) if p]
    received = b""
    for dbname in ("shop", "shop_md5"):
        with wire.RawConn.connect(gateway.host, gateway.port) as conn:
            for msg in conn.login("alice", dbname, gateway.token("alice")):
                received += msg.type + msg.body
            for sql in (
                "show all",
                "select * from pg_settings",
                "select current_setting('pgwarden.session_id')",
                "select rolname, rolpassword from pg_authid",  # not a superuser: refused
                "select * from pg_stat_activity",
                "select 1/0",
                "select * from pg_hba_file_rules",
                "select version()",
            ):
                for msg in conn.simple(sql):
                    received += msg.type + msg.body
    assert received
    for secret in secrets:
        assert secret.encode() not in received


# ---------------------------------------------------------------------------------------------
# TLS to the target


@pytest.mark.parametrize(
    ("sslmode", "expect_tls"),
    [("disable", False), ("prefer", True), ("require", True)],
)
def test_target_sslmode(
    make_gateway: MakeGateway, tls_shop: TargetDb, sslmode: str, expect_tls: bool
) -> None:
    gw = make_gateway(targets={"shop": tls_shop.target(sslmode=sslmode)})
    assert whoami(gw, "shop") == ("app", "shop", expect_tls)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
@pytest.mark.parametrize("sslmode", ["verify-ca", "verify-full"])
def test_target_verified_tls(
    make_gateway: MakeGateway, tls_shop: TargetDb, host: str, sslmode: str
) -> None:
    ca = tls_shop.cluster.ca_path
    assert ca is not None
    gw = make_gateway(
        targets={"shop": tls_shop.target(host=host, sslmode=sslmode, sslrootcert=str(ca))}
    )
    assert whoami(gw, "shop") == ("app", "shop", True)


@pytest.fixture
def wrong_name_cert(tls_pg: DevCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Serve a certificate for `db.pgwarden.test` only (not 127.0.0.1 nor localhost) for one
    test; yield its CA. The cluster's own certificate is restored afterwards."""
    tls_dir = tls_pg.base_dir / "tls-wrong-name"
    files = make_certs(tls_dir, ["db.pgwarden.test"], ca_name="wrong-name CA")
    if tls_pg._run_as is not None:
        for path in (tls_dir, files.key, files.cert, files.ca_cert):
            os.chown(path, tls_pg._run_as.pw_uid, tls_pg._run_as.pw_gid)
    original = (tls_pg.settings.get("ssl_cert_file"), tls_pg.settings.get("ssl_key_file"))
    tls_pg.settings["ssl_cert_file"] = str(files.cert)
    tls_pg.set_setting("ssl_key_file", str(files.key))
    try:
        yield files.ca_cert
    finally:
        for name, value in zip(("ssl_cert_file", "ssl_key_file"), original, strict=True):
            if value is None:
                tls_pg.settings.pop(name, None)
            else:
                tls_pg.settings[name] = value
        tls_pg.set_setting("ssl", True)


def test_target_verify_full_refuses_a_hostname_mismatch(
    make_gateway: MakeGateway, tls_shop: TargetDb, wrong_name_cert: Path
) -> None:
    target = tls_shop.target(sslrootcert=str(wrong_name_cert))
    gw = make_gateway(
        targets={
            "full": {**target, "sslmode": "verify-full"},
            "ca": {**target, "sslmode": "verify-ca"},
        }
    )
    # The chain is fine (verify-ca connects) ...
    assert whoami(gw, "ca") == ("app", "shop", True)
    # ... but the certificate is not for 127.0.0.1.
    msg = login_error(gw, "full")
    assert msg.severity == "FATAL"
    assert msg.sqlstate.startswith("08")
    assert "TLS" in msg.message or "certificate" in msg.message
    assert "hostname" in msg.message or "127.0.0.1" in msg.message, msg.message
    assert "full" in msg.message


def test_target_verify_full_refuses_an_unknown_ca(
    make_gateway: MakeGateway, tls_shop: TargetDb, tmp_path: Path
) -> None:
    other = make_certs(tmp_path / "other-ca", ["127.0.0.1", "localhost"])
    gw = make_gateway(
        targets={"shop": tls_shop.target(sslmode="verify-full", sslrootcert=str(other.ca_cert))}
    )
    msg = login_error(gw)
    assert msg.sqlstate.startswith("08")
    assert "certificate" in msg.message or "TLS" in msg.message


def test_target_without_tls(make_gateway: MakeGateway, plain_shop: TargetDb) -> None:
    assert not plain_shop.cluster.ssl
    shop = plain_shop
    gw = make_gateway(
        targets={
            "required": shop.target(sslmode="require"),
            "preferred": shop.target(sslmode="prefer"),
        }
    )
    msg = login_error(gw, "required")
    assert msg.sqlstate.startswith("08")
    assert "TLS" in msg.message
    # prefer falls back to plaintext, as libpq does.
    assert whoami(gw, "preferred") == ("app", "shop", False)


# ---------------------------------------------------------------------------------------------
# Start-up parameters


def upstream_activity(shop: TargetDb, application_name: str) -> list[tuple[Any, ...]]:
    return shop.query(
        "select usename, datname, application_name from pg_stat_activity "
        "where application_name = %s and backend_type = 'client backend'",
        [application_name],
    )


def test_application_name_passes_through(gateway: RunningGateway, shop: TargetDb) -> None:
    name = f"gw-test-{time.time_ns()}"
    with psycopg.connect(gateway.dsn("alice", application_name=name)) as conn:
        assert conn.execute("show application_name").fetchone() == (name,)
        assert upstream_activity(shop, name) == [("app", "shop", name)]
        assert conn.info.parameter_status("application_name") == name


def test_allowed_options_are_applied(gateway: RunningGateway) -> None:
    options = "-c statement_timeout=4321 -c search_path=pg_catalog,public --lock_timeout=1234"
    with psycopg.connect(gateway.dsn("alice", options=options)) as conn:
        assert conn.execute("show statement_timeout").fetchone() == ("4321ms",)
        row = conn.execute("show search_path").fetchone()
        assert row is not None and row[0].replace(" ", "") == "pg_catalog,public"
        assert conn.execute("show lock_timeout").fetchone() == ("1234ms",)


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"options": "-c role=postgres"}, "role"),
        ({"options": "-c session_authorization=postgres"}, "session_authorization"),
        ({"options": "-c default_transaction_read_only=off"}, "default_transaction_read_only"),
        ({"options": "--session-authorization=postgres"}, "session_authorization"),
        ({"options": "-crole=postgres"}, "role"),
        ({"role": "postgres"}, "role"),
        ({"session_authorization": "postgres"}, "session_authorization"),
        ({"replication": "database"}, "replication"),
        ({"replication": "true"}, "replication"),
    ],
    ids=lambda v: str(v) if isinstance(v, str) else "-".join(f"{k}={x}" for k, x in v.items()),
)
def test_forbidden_startup_parameters_are_refused(
    make_gateway: MakeGateway, shop: TargetDb, params: dict[str, str], name: str
) -> None:
    with TcpProxy(shop.cluster.host, shop.cluster.port) as proxy:
        gw = make_gateway(targets={"shop": shop.target(port=proxy.port)})
        msg = login_error(gw, **params)
        assert msg.severity == "FATAL"
        assert msg.sqlstate in ("42501", "28000", "08P01")
        assert name in msg.message
        assert proxy.accepted == 0


def test_forbidden_option_through_libpq(gateway: RunningGateway) -> None:
    with pytest.raises(psycopg.OperationalError, match="role"):
        psycopg.connect(gateway.dsn("alice", options="-c role=postgres"))
    with pytest.raises(psycopg.OperationalError, match="replication"):
        psycopg.connect(gateway.dsn("alice", replication="database"))


def test_cancel_reaches_a_tls_target(make_gateway: MakeGateway, tls_shop: TargetDb) -> None:
    """The gateway forwards a cancel to the backend over TLS when the target wants it."""
    ca = tls_shop.cluster.ca_path
    gw = make_gateway(targets={"shop": tls_shop.target(sslmode="verify-full", sslrootcert=str(ca))})
    with psycopg.connect(gw.dsn("alice"), autocommit=True) as conn:
        cancel_when_active(tls_shop.cluster, "select pg_sleep(30)", conn.cancel_safe)
        started = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute("select pg_sleep(30)")
        assert time.monotonic() - started < 5
        assert conn.execute("select 'after'").fetchone() == ("after",)


def test_unresponsive_target_is_reported_as_such(make_gateway: MakeGateway, shop: TargetDb) -> None:
    with socket.socket() as blackhole:  # accepts connections (backlog), never answers
        blackhole.bind(("127.0.0.1", 0))
        blackhole.listen()
        port = blackhole.getsockname()[1]
        gw = make_gateway(
            targets={"shop": shop.target(port=port, connect_timeout=1)}, auth_timeout=4
        )
        started = time.monotonic()
        msg = login_error(gw)
        elapsed = time.monotonic() - started
    assert msg.sqlstate.startswith("08")
    assert "shop" in msg.message  # names the target, not the client's authentication
    assert elapsed < 3
