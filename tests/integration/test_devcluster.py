"""The throwaway PostgreSQL used by the other tests, the demo and the benchmark."""

from __future__ import annotations

import os
import re
import socket
import ssl
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from pgwarden.cli import demo as demo_cli
from pgwarden.cli.main import app
from pgwarden.config import Config
from pgwarden.demo import CUSTOMER_COUNT, ORDER_COUNT, PRODUCT_COUNT, ShopDatabase
from pgwarden.devcluster import DevCluster, DevClusterError, conninfo


def _name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def _luhn_ok(number: str) -> bool:
    digits = [int(c) for c in number if c.isdigit()]
    total = 0
    for i, digit in enumerate(reversed(digits)):
        doubled = digit * 2 if i % 2 == 1 else digit
        total += doubled - 9 if doubled > 9 else doubled
    return total % 10 == 0


def test_started_cluster_accepts_connections(pg: DevCluster) -> None:
    assert pg.running
    assert pg.host == "127.0.0.1"
    assert 0 < pg.port < 65536
    assert (pg.datadir / "PG_VERSION").exists()
    with psycopg.connect(pg.dsn()) as conn:
        row = conn.execute("SELECT current_user, current_setting('listen_addresses')").fetchone()
    assert row == (pg.superuser, "127.0.0.1")
    assert pg.execute("SELECT 40 + 2").strip() == "42"
    assert pg.query("SELECT %s::int + 1", [1]) == [(2,)]


def test_server_runs_unprivileged(pg: DevCluster) -> None:
    pid = int((pg.datadir / "postmaster.pid").read_text().split()[0])
    uid = os.stat(f"/proc/{pid}").st_uid
    assert uid != 0
    if os.geteuid() == 0:
        assert pg.run_as_user == "postgres"


def test_scram_role(pg: DevCluster) -> None:
    name = _name("scram")
    position = pg.log_position()
    pg.create_role(name, "s3cret 'quoted'", auth="scram-sha-256")
    stored = pg.query("SELECT rolpassword FROM pg_authid WHERE rolname = %s", [name])[0][0]
    assert stored.startswith("SCRAM-SHA-256$")
    with psycopg.connect(pg.dsn(user=name, sslmode="disable")) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (name,)
        assert conn.pgconn.used_password
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(pg.dsn(user=name, password="wrong", sslmode="disable"))
    assert re.search(rf"host all {name} 127\.0\.0\.1/32 scram-sha-256", pg.log_text(since=position))


def test_md5_role(pg: DevCluster) -> None:
    name = _name("md5")
    position = pg.log_position()
    pg.create_role(name, "md5-secret", auth="md5")
    stored = pg.query("SELECT rolpassword FROM pg_authid WHERE rolname = %s", [name])[0][0]
    assert re.fullmatch(r"md5[0-9a-f]{32}", stored)
    with psycopg.connect(pg.dsn(user=name, sslmode="disable")) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (name,)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(pg.dsn(user=name, password="nope", sslmode="disable"))
    # The failed attempt was checked against the md5 line.
    assert re.search(rf"host all {name} 127\.0\.0\.1/32 md5", pg.log_text(since=position))


def test_trust_role(pg: DevCluster) -> None:
    name = _name("trusted")
    pg.create_role(name, auth="trust")
    with psycopg.connect(conninfo(host=pg.host, port=pg.port, dbname="postgres", user=name)) as c:
        assert c.execute("SELECT current_user").fetchone() == (name,)
        assert not c.pgconn.used_password


def test_add_hba_line_reject(pg: DevCluster) -> None:
    name = _name("rejected")
    pg.create_role(name, "pw", auth="scram-sha-256", hba=False)
    with psycopg.connect(pg.dsn(user=name, sslmode="disable")):
        pass
    pg.add_hba_line(f"host all {name} 127.0.0.1/32 reject")
    with pytest.raises(psycopg.OperationalError, match="rejects connection"):
        psycopg.connect(pg.dsn(user=name, sslmode="disable"))
    with pytest.raises(DevClusterError, match=r"invalid pg_hba\.conf line"):
        pg.add_hba_line("host all nobody 127.0.0.1/32 not-a-method")
    assert "not-a-method" not in "".join(pg.hba_lines)


def test_log_statement_all(pg: DevCluster) -> None:
    marker = _name("marker")
    position = pg.log_position()
    with psycopg.connect(pg.dsn(sslmode="disable"), autocommit=True) as conn:
        conn.execute(f"SELECT '{marker}'")
    line = pg.wait_for_log(marker, since=position)
    assert "statement:" in line
    assert marker not in pg.log_text(since=pg.log_position())


def test_tls_verify_full(pg: DevCluster) -> None:
    assert pg.ca_path is not None and pg.ca_path.exists()
    dsn = pg.dsn(sslmode="verify-full", sslrootcert=str(pg.ca_path))
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
    assert row == (True,)
    # The certificate is valid for the loopback names, and checked against our CA.
    context = ssl.create_default_context(cafile=str(pg.ca_path))
    with socket.create_connection((pg.host, pg.port), timeout=5) as raw:
        raw.sendall((8).to_bytes(4, "big") + (80877103).to_bytes(4, "big"))  # SSLRequest
        assert raw.recv(1) == b"S"
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            assert tls.version() is not None


def test_demo_shop_data(demo_shop: ShopDatabase) -> None:
    shop = demo_shop
    with psycopg.connect(shop.dsn()) as conn:
        counts = conn.execute(
            "SELECT (SELECT count(*) FROM customers), (SELECT count(*) FROM products), "
            "(SELECT count(*) FROM orders)"
        ).fetchone()
        owners = conn.execute(
            "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'"
        ).fetchall()
        customers = conn.execute("SELECT email, ssn, card_number, phone FROM customers").fetchall()
        orphans = conn.execute(
            "SELECT count(*) FROM orders o LEFT JOIN customers c ON c.id = o.customer_id "
            "WHERE c.id IS NULL"
        ).fetchone()
    assert counts == (CUSTOMER_COUNT, PRODUCT_COUNT, ORDER_COUNT)
    assert owners == [(shop.owner,)]
    assert orphans == (0,)
    for email, ssn, card, phone in customers:
        assert re.fullmatch(r"[a-z.]+@[a-z.]+\.(com|org|net)", email)
        area, group, serial = ssn.split("-")
        assert area not in {"000", "666"} and not area.startswith("9")
        assert group != "00" and serial != "0000"
        assert _luhn_ok(card), card
        assert len(re.sub(r"\D", "", card)) in (15, 16)
        assert phone.startswith("+1-")


def test_stop_removes_everything(pg_factory: Callable[..., DevCluster]) -> None:
    cluster = pg_factory(fsync=True)
    base, port = cluster.base_dir, cluster.port
    assert cluster.query("SHOW fsync") == [("on",)]
    cluster.stop()
    assert not cluster.running
    assert not base.exists()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(conninfo(host="127.0.0.1", port=port, user="postgres", connect_timeout=2))
    cluster.stop()  # idempotent


def test_context_manager_and_fixed_port() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with DevCluster(port=port) as cluster:
        assert cluster.port == port
        assert cluster.query("SHOW fsync") == [("off",)]
        base = Path(cluster.base_dir)
        cluster.restart()
        assert cluster.port == port
        assert cluster.execute("SELECT 1").strip() == "1"
    assert not base.exists()


def test_demo_command_with_a_real_cluster(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`pgwarden demo` starts a cluster whose shop database the generated config reaches
    (the gateway itself is replaced by a stand-in that checks the target, then stops)."""
    seen: dict[str, object] = {}

    async def stand_in(config: Config, *, ready: Callable[[], None] | None = None) -> None:
        target = config.targets["shop"]
        assert target.password is not None
        dsn = conninfo(
            host=target.host,
            port=target.port,
            dbname=target.dbname,
            user=target.user,
            password=target.password.get_secret_value(),
            sslmode="disable",
        )
        with psycopg.connect(dsn) as conn:
            seen["customers"] = conn.execute("SELECT count(*) FROM customers").fetchone()
        seen["data_dir"] = config.data_dir
        if ready is not None:
            ready()

    monkeypatch.setattr(demo_cli, "load_serve", lambda: stand_in)
    monkeypatch.chdir(tmp_path)
    ports = []
    for _ in range(2):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            ports.append(probe.getsockname()[1])
    result = CliRunner().invoke(
        app,
        ["demo", "--listen", f"127.0.0.1:{ports[0]}", "--api-listen", f"127.0.0.1:{ports[1]}"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert seen["customers"] == (CUSTOMER_COUNT,)
    assert f"port={ports[0]} dbname=shop user=agent-7 sslmode=prefer" in result.stdout
    assert isinstance(seen["data_dir"], Path) and not seen["data_dir"].exists()
